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
		newKeysRotateCmd(f),
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

func newKeysRotateCmd(f *adminFlags) *cobra.Command {
	var tok pkcs11Flags
	cmd := &cobra.Command{
		Use:   "rotate",
		Short: "Add a new sealing key; older keys stay valid until the longest session expires",
		Long: `Add a new current sealing key (creating the first one on a new perimeter). The keys it
replaces keep opening the tokens they sealed until the longest possible session has
expired (36 hours, GetSessionToken's maximum), then open nothing. Prints the new key's
id and every key (ids and times, never key material).

With --pkcs11-module, --pkcs11-token and --pkcs11-pin-file the new key's signing key is
made in that PKCS#11 token and never leaves it; STS must then run with the same token and
--pkcs11-keys token-signing. While the current key signs in a token, rotating without the
token is refused (a key in the store would take the token out of use).`,
		Example: `  phantom keys rotate --data-dir /var/lib/phantom
  phantom keys rotate --output text
  phantom keys rotate --pkcs11-module /usr/lib/softhsm/libsofthsm2.so --pkcs11-token phantom --pkcs11-pin-file pin`,
		Args: cobra.NoArgs,
		RunE: f.run("RotateKeys", func(cmd *cobra.Command, a *admin.Admin) (admin.Output, error) {
			t, err := tok.open()
			if err != nil {
				return nil, err
			}
			if t == nil {
				return a.RotateKeys(cmd.Context(), nil)
			}
			defer t.Close()
			return a.RotateKeys(cmd.Context(), t)
		}),
	}
	tok.register(cmd.Flags(), "the new key's signing key")
	return cmd
}
