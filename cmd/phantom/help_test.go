package main

import (
	"regexp"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// sentenceEnd is the end of a sentence: a full stop, question or exclamation mark, or a
// colon that introduces a list or an example, followed by a space, a line break or the
// end of the text.
var sentenceEnd = regexp.MustCompile(`[.!?:](\s|$)`)

// minLongSentences and minLongChars say what "a few sentences" is: a Long that explains
// what the command does, what it reads and writes, and how it fails.
const (
	minLongSentences = 3
	minLongChars     = 200
)

// TestHelpTexts walks the command tree as main builds it and holds every runnable
// command to a complete --help: a Short, a Long of a few sentences and an Example; and
// every flag any command defines to a usage string. cobra's own commands (help,
// completion) are not ours and are skipped.
func TestHelpTexts(t *testing.T) {
	root := newRootCmd()
	root.InitDefaultHelpCmd()
	root.InitDefaultCompletionCmd()
	var walk func(c *cobra.Command)
	n := 0
	walk = func(c *cobra.Command) {
		for _, sub := range c.Commands() {
			walk(sub)
		}
		if isCobraOwn(c) {
			return
		}
		path := c.CommandPath()
		// Every flag a command defines, persistent ones (the root's, a group's --data-dir)
		// included, whether or not the command runs by itself.
		c.LocalFlags().VisitAll(func(f *pflag.Flag) {
			if f.Name != "help" && strings.TrimSpace(f.Usage) == "" {
				t.Errorf("%s: flag --%s has no usage string", path, f.Name)
			}
		})
		if !c.Runnable() {
			return
		}
		n++
		if strings.TrimSpace(c.Short) == "" {
			t.Errorf("%s: no Short", path)
		}
		long := strings.TrimSpace(c.Long)
		if s := len(sentenceEnd.FindAllString(long, -1)); s < minLongSentences || len(long) < minLongChars {
			t.Errorf("%s: Long has %d sentences and %d characters; want at least %d and %d (what it does, what it reads and writes, how it fails)",
				path, s, len(long), minLongSentences, minLongChars)
		}
		if strings.TrimSpace(c.Example) == "" {
			t.Errorf("%s: no Example", path)
		}
	}
	walk(root)
	if n < 20 {
		t.Fatalf("walked %d runnable commands; the tree has more", n)
	}
}

func isCobraOwn(c *cobra.Command) bool {
	for p := c; p != nil; p = p.Parent() {
		if p.Name() == "help" || p.Name() == "completion" || p.Name() == cobra.ShellCompRequestCmd || p.Name() == cobra.ShellCompNoDescRequestCmd {
			return true
		}
	}
	return false
}
