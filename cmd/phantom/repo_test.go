package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/phantom-perimeter/phantom/internal/testenv"
)

// repoRoot is the repository's root, two directories above this package.
const repoRoot = "../.."

// copyRepo copies the repository's files, as a clone has them, into a new temporary
// directory and returns it: the tracked files with their current content, and, with
// untracked, the files git does not ignore but does not track yet either (a test of the
// README's commands wants them; a test of what a clone holds does not). ../shared is not
// beside the copy.
func copyRepo(t *testing.T, untracked bool) string {
	t.Helper()
	git := testenv.LookPath(t, "git")
	args := []string{"-C", repoRoot, "ls-files", "-z", "--cached"}
	if untracked {
		args = append(args, "--others", "--exclude-standard")
	}
	out, err := exec.Command(git, args...).Output()
	if err != nil {
		t.Fatalf("git ls-files: %v (the test needs the repository's git metadata)", err)
	}
	dst := filepath.Join(t.TempDir(), "phantom")
	n := 0
	for _, name := range strings.Split(strings.TrimRight(string(out), "\x00"), "\x00") {
		src := filepath.Join(repoRoot, name)
		st, err := os.Lstat(src)
		if err != nil {
			continue // deleted in the working tree
		}
		to := filepath.Join(dst, name)
		if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
			t.Fatal(err)
		}
		if st.Mode()&os.ModeSymlink != 0 {
			target, err := os.Readlink(src)
			if err == nil {
				err = os.Symlink(target, to)
			}
			if err != nil {
				t.Fatal(err)
			}
			continue
		}
		data, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(to, data, st.Mode().Perm()); err != nil {
			t.Fatal(err)
		}
		n++
	}
	if n == 0 {
		t.Fatal("git ls-files listed no files")
	}
	return dst
}

// readmeBlock is one fenced code block of README.md.
type readmeBlock struct {
	lang, text string
	line       int // of the opening fence
}

// readmeBlocks returns README.md's fenced code blocks in order.
func readmeBlocks(t *testing.T) []readmeBlock {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repoRoot, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	var blocks []readmeBlock
	var cur *readmeBlock
	for i, line := range strings.Split(string(data), "\n") {
		switch {
		case cur == nil && strings.HasPrefix(line, "```"):
			cur = &readmeBlock{lang: strings.TrimSpace(strings.TrimPrefix(line, "```")), line: i + 1}
		case cur != nil && line == "```":
			blocks = append(blocks, *cur)
			cur = nil
		case cur != nil:
			cur.text += line + "\n"
		}
	}
	if cur != nil {
		t.Fatalf("README.md: the code block at line %d is not closed", cur.line)
	}
	return blocks
}

// shellEnv is the environment of a user's shell for the README's commands: PATH with bin
// first, a HOME of its own (no ~/.aws), Go's caches kept (they would follow HOME), and
// nothing of this process's AWS or Phantom settings.
func shellEnv(t *testing.T, bin string) []string {
	t.Helper()
	var env []string
	for _, kv := range os.Environ() {
		k, v, _ := strings.Cut(kv, "=")
		switch {
		case strings.HasPrefix(k, "AWS_"), strings.HasPrefix(k, "PHANTOM_"), k == "HOME", k == "PATH":
		default:
			env = append(env, kv)
		}
		if k == "PATH" {
			env = append(env, "PATH="+filepath.Dir(bin)+string(os.PathListSeparator)+v)
		}
	}
	out, err := exec.Command("go", "env", "GOCACHE", "GOMODCACHE", "GOPATH").Output()
	if err != nil {
		t.Fatalf("go env: %v", err)
	}
	vals := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(vals) != 3 {
		t.Fatalf("go env printed %q", out)
	}
	return append(env, "HOME="+t.TempDir(), "GOCACHE="+vals[0], "GOMODCACHE="+vals[1], "GOPATH="+vals[2])
}

// matchAll returns the patterns of want that out does not match.
func matchAll(out []byte, want []string) []string {
	var missing []string
	for _, w := range want {
		if !regexp.MustCompile(w).Match(out) {
			missing = append(missing, w)
		}
	}
	return missing
}
