package main

import (
	"github.com/spf13/cobra"

	"github.com/phantom-perimeter/phantom/internal/admin"
)

func newKeysCmd() *cobra.Command {
	f := new(adminFlags)
	cmd := &cobra.Command{
		Use:   "keys",
		Short: "Session-token sealing keys: rotate, list; component key files: export",
		Long: `Session tokens are sealed (AES-256-GCM) under a ring of keys stored encrypted in the
data directory. The newest current key seals; older keys only open the tokens they sealed.` + adminFlagsHelp,
	}
	f.register(cmd)
	cmd.AddCommand(
		newKeysExportCmd(f),
		&cobra.Command{
			Use:   "rotate",
			Short: "Add a new sealing key; older keys stay valid until the longest session expires",
			Long: `Add a new current sealing key (creating the first one on a new perimeter). The keys it
replaces keep opening the tokens they sealed until the longest possible session has
expired (36 hours, GetSessionToken's maximum), then open nothing. Prints the new key's
id and every key (ids and times, never key material).`,
			Example: `  phantom keys rotate --data-dir /var/lib/phantom
  phantom keys rotate --output text`,
			Args: cobra.NoArgs,
			RunE: f.run("RotateKeys", func(cmd *cobra.Command, a *admin.Admin) (admin.Output, error) {
				return a.RotateKeys(cmd.Context())
			}),
		},
		&cobra.Command{
			Use:   "list",
			Short: "List sealing keys: id, status, created, retire-after (never key material)",
			Long: `List the session-token sealing keys as {"SealingKeys": [{"KeyId", "Status",
"CreateDate", "RetireAfter"}]}, newest first; key material is never printed. Status is
Current (seals and opens), Retiring (opens the tokens it sealed until RetireAfter) or
Retired (opens nothing).`,
			Example: `  phantom keys list
  phantom keys list | jq -r '.SealingKeys[] | select(.Status != "Retired") | .KeyId'`,
			Args: cobra.NoArgs,
			RunE: f.run("ListKeys", func(cmd *cobra.Command, a *admin.Admin) (admin.Output, error) {
				return a.ListKeys(cmd.Context())
			}),
		},
	)
	return cmd
}
