package main

import (
	"fmt"

	"github.com/spf13/cobra"
)

// newUpCmd is the one-machine perimeter. Until the gateway and endpoint land it says so
// and lists the tools that work today, rather than pretending to serve.
func newUpCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "up",
		Short: "Run the whole perimeter on one machine with embedded defaults",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			out := cmd.OutOrStdout()
			fmt.Fprintln(out, "phantom up: the gateway and endpoint (the data path) are not built yet; these subcommands work today:")
			for _, c := range cmd.Root().Commands() {
				if c.IsAvailableCommand() && c != cmd {
					fmt.Fprintf(out, "  phantom %-10s %s\n", c.Name(), c.Short)
				}
			}
			return nil
		},
	}
}
