package main

import (
	"github.com/spf13/cobra"

	"github.com/phantom-perimeter/phantom/internal/admin"
)

func newKeysCmd() *cobra.Command {
	f := new(adminFlags)
	cmd := &cobra.Command{
		Use:   "keys",
		Short: "Session-token sealing keys: rotate, list; component key files: export; backends' assertion keys: backend",
		Long: `Session tokens are sealed (AES-256-GCM) under a ring of keys stored encrypted in the
data directory. The newest current key seals; older keys only open the tokens they sealed.` + adminFlagsHelp,
	}
	f.register(cmd)
	cmd.AddCommand(
		newKeysExportCmd(f),
		newKeysRotateCmd(f),
		newKeysBackendCmd(f),
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

func newKeysBackendCmd(f *adminFlags) *cobra.Command {
	var api, out string
	cmd := &cobra.Command{
		Use:   "backend --api ID --out FILE",
		Short: "Write an API's assertion key file for its backends (HS256): they verify X-Phantom-Identity with it",
		Long: `Write the key file of API --api to --out (0600): the HS256 key the gateway MACs that API's
identity assertions (X-Phantom-Identity) with, as a JWK {"kty":"oct","kid":"API:CHECK",
"alg":"HS256","use":"sig","k":…}. Give it to the API's backends (gateway.NewAssertionVerifier's
Key, or any JOSE library: docs/backends.md). It is derived from the gateway's assertion key
with the API id: its holder can check, and make, assertions for this API only, not for
another API. The same file comes out every time until the master key changes. An API with
assertion: eddsa has no key file (its backends use the gateway's JWKS). Prints the API, the
kid and the file, never the key. Audited in the chain "admin".`,
		Example: `  phantom keys backend --api a1b2c3d4e5 --out /etc/orders/phantom-assertion.jwk
  phantom keys backend --api a1b2c3d4e5 --out orders.jwk --output text`,
		Args: cobra.NoArgs,
		RunE: f.run("ExportBackendKey", func(cmd *cobra.Command, a *admin.Admin) (admin.Output, error) {
			return a.ExportBackendKey(cmd.Context(), api, out)
		}),
	}
	cmd.Flags().StringVar(&api, "api", "", "the API id (apis[].id in the spec)")
	cmd.Flags().StringVar(&out, "out", "", "key file to write (0600)")
	cmd.MarkFlagRequired("api")
	cmd.MarkFlagRequired("out")
	return cmd
}
