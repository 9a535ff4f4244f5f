package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/phantom-perimeter/phantom/internal/config"
)

func newConfigCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "config", Short: "Perimeter spec tools: validate"}
	cmd.AddCommand(newConfigValidateCmd())
	return cmd
}

func newConfigValidateCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "validate FILE",
		Short: "Check a perimeter spec, printing every problem as file:line:col",
		Long: `Validate loads a perimeter spec exactly as a running perimeter would: every value,
every reference and every IAM policy. Each problem is printed on its own line as
file:line:col: where: what is wrong; what to do. The exit status is 1 when there is any.
A valid spec prints one line counting what it defines. docs/spec.md describes every field.`,
		Example: `  phantom config validate perimeter.yaml
  phantom config validate examples/multi-team.yaml`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := config.Load(args[0])
			var cerr *config.Error
			if errors.As(err, &cerr) {
				for _, p := range cerr.Problems {
					fmt.Fprintln(cmd.ErrOrStderr(), p)
				}
				return &exitError{code: 1, err: fmt.Errorf("%s: %d problem(s)", args[0], len(cerr.Problems))}
			}
			if err != nil {
				return &exitError{code: 1, err: err}
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: valid: account %s in %s, %d users, %d groups, %d roles, %d OIDC providers, %d APIs, %d endpoints, %d nodes\n",
				args[0], s.Account, s.Region, len(s.Users), len(s.Groups), len(s.Roles), len(s.OIDCProviders), len(s.APIs), len(s.Endpoints), len(s.Nodes))
			return nil
		},
	}
}
