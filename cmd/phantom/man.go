package main

import (
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"
)

// newManCmd writes man pages generated from the command tree: the flags, usage and
// examples every --help shows, one page per command (phantom.1, phantom-import-aws-iam.1).
func newManCmd() *cobra.Command {
	var dir string
	cmd := &cobra.Command{
		Use:   "man --dir DIR",
		Short: "Write man pages for every phantom command into a directory",
		Long: `man writes one man page (section 1, roff) per command, generated from the same
command tree as --help: phantom.1, phantom-gateway.1, phantom-import-aws-iam.1 and so on.
The Debian package installs them in /usr/share/man/man1.`,
		Example: `  phantom man --dir ./man && man ./man/phantom-import-aws-iam.1`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return &exitError{code: 1, err: err}
			}
			root := cmd.Root()
			// Generated pages carry a date; SOURCE_DATE_EPOCH (reproducible-builds.org)
			// pins it so the package's pages are the same for the same commit.
			date := time.Now()
			if epoch := os.Getenv("SOURCE_DATE_EPOCH"); epoch != "" {
				var sec int64
				if _, err := fmt.Sscan(epoch, &sec); err != nil {
					return &exitError{code: 2, err: fmt.Errorf("SOURCE_DATE_EPOCH %q is not seconds since 1970", epoch)}
				}
				date = time.Unix(sec, 0).UTC()
			}
			header := &doc.GenManHeader{Title: "PHANTOM", Section: "1", Source: "Phantom " + versionOf(), Manual: "Phantom Manual", Date: &date}
			root.DisableAutoGenTag = true
			if err := doc.GenManTree(root, header, dir); err != nil {
				return &exitError{code: 1, err: fmt.Errorf("write man pages to %s: %w", dir, err)}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "", "the directory to write the pages to (created if missing)")
	_ = cmd.MarkFlagRequired("dir")
	return cmd
}
