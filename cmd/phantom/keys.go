package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/phantom-perimeter/phantom/internal/admin"
	"github.com/phantom-perimeter/phantom/internal/keys"
)

func newKeysCmd() *cobra.Command {
	f := new(adminFlags)
	cmd := &cobra.Command{
		Use:   "keys",
		Short: "Session-token sealing keys and storage keys: rotate, retire, list; component key files: export; backends' assertion keys: backend",
		Long: `Session tokens are sealed (AES-256-GCM) under a ring of keys stored encrypted in the
data directory. The newest current key seals; older keys only open the tokens they sealed.

Stored secrets (users' secret keys, the token keys, MFA seeds, the CA's keys) are sealed
under storage keys derived from the master key, one per purpose, each in generations:
every sealed value names the generation that sealed it. "keys rotate --purpose P" makes
P's next generation current and re-seals every value under it; "keys retire --purpose P"
ends the older ones after the overlap. Component key files carry every generation not
retired: export them again after a rotation (docs/threat-model.md, "Rotation").` + adminFlagsHelp,
	}
	f.register(cmd)
	cmd.AddCommand(
		newKeysExportCmd(f),
		newKeysBackendCmd(f),
		newKeysRotateCmd(f),
		newKeysRetireCmd(f),
		&cobra.Command{
			Use:   "list",
			Short: "List sealing keys and storage key generations (never key material)",
			Long: `List the session-token sealing keys as {"SealingKeys": [{"KeyId", "Status",
"CreateDate", "RetireAfter"}]}, newest first, and the storage keys' generations as
"StorageKeys": [{"Purpose", "Generation", "Status", "ChangeDate"}]; key material is never
printed. Status is Current (seals and opens), Retiring (opens what it sealed: until
RetireAfter for a sealing key, until "keys retire" for a storage key) or Retired (opens
nothing).`,
			Example: `  phantom keys list
  phantom keys list | jq -r '.SealingKeys[] | select(.Status != "Retired") | .KeyId'
  phantom keys list | jq '.StorageKeys[] | select(.Status == "Current")'`,
			Args: cobra.NoArgs,
			RunE: f.run("ListKeys", func(cmd *cobra.Command, a *admin.Admin) (admin.Output, error) {
				return a.ListKeys(cmd.Context())
			}),
		},
	)
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

func newKeysRotateCmd(f *adminFlags) *cobra.Command {
	var purpose string
	var resealOnly, stage bool
	cmd := &cobra.Command{
		Use:   "rotate [--purpose PURPOSE [--stage | --reseal-only]]",
		Short: "Add a new sealing key, or rotate one storage key (--purpose)",
		Long: fmt.Sprintf(`Without --purpose: add a new current session-token sealing key (creating the first
one on a new perimeter). The keys it replaces keep opening the tokens they sealed until
the longest possible session has expired (36 hours, GetSessionToken's maximum), then open
nothing. Prints the new key's id and every key (ids and times, never key material).

With --purpose (one of %v): make that storage key's next generation current and re-seal
every value of that purpose under it. Where components run with key files (--keys), stage
it first: "--stage" adds the next generation, which key files exported from then on carry
and which seals nothing yet; export the components' files again (they take a new file
within a poll, without a restart); then rotate, which makes the staged generation current. Each row is re-sealed only if it still holds what
was read, and values already under the current generation are left alone, so it is safe
while replicas read and write, and running it again (or with --reseal-only, which only
re-seals) finishes an interrupted one. Processes holding the master key seal under the new
generation within a poll; processes with a component key file open what the generations
their file carries sealed. Old sessions are untouched: the
token keys themselves do not change, only what seals them at rest. Needs the master key.`, keys.StoragePurposes()),
		Example: `  phantom keys rotate --data-dir /var/lib/phantom
  phantom keys rotate --purpose store-access-keys
  # with components on key files:
  phantom keys rotate --purpose store-access-keys --stage
  phantom keys export --component gateway --out /etc/phantom/gateway.keys   # on each host
  phantom keys rotate --purpose store-access-keys
  phantom keys rotate --purpose store-access-keys --reseal-only`,
		Args: cobra.NoArgs,
		RunE: f.run("RotateKeys", func(cmd *cobra.Command, a *admin.Admin) (admin.Output, error) {
			switch {
			case purpose == "" && (resealOnly || stage):
				return nil, &admin.Error{Code: admin.CodeValidationError, Message: "--stage and --reseal-only need --purpose"}
			case resealOnly && stage:
				return nil, &admin.Error{Code: admin.CodeValidationError, Message: "--stage and --reseal-only exclude each other"}
			case purpose == "":
				return a.RotateKeys(cmd.Context())
			case stage:
				return a.StageStorageKey(cmd.Context(), purpose)
			case resealOnly:
				return a.ResealStorageKey(cmd.Context(), purpose)
			}
			return a.RotateStorageKey(cmd.Context(), purpose)
		}),
	}
	cmd.Flags().StringVar(&purpose, "purpose", "", "storage purpose to rotate")
	cmd.Flags().BoolVar(&resealOnly, "reseal-only", false, "only re-seal the purpose's values under its current generation")
	cmd.Flags().BoolVar(&stage, "stage", false, "only add the purpose's next generation, for key files, sealing nothing yet")
	return cmd
}

func newKeysRetireCmd(f *adminFlags) *cobra.Command {
	var purpose string
	var overlap time.Duration
	cmd := &cobra.Command{
		Use:   "retire --purpose PURPOSE [--overlap DURATION]",
		Short: "Retire a storage key's older generations after the overlap",
		Long: `Retire the generations of a storage key that stopped being current at least --overlap
ago (default 10m: every process has polled the rotation by then). Every value is re-sealed
under the current generation first, and again after, for what a process that had not yet
polled sealed meanwhile. From then on no process opens a value under a retired generation,
whatever keys it holds, and key files exported again no longer carry it. A generation
within the overlap is not retired: the command says so and exits non-zero. Needs the
master key.`,
		Example: `  phantom keys retire --purpose store-access-keys
  phantom keys retire --purpose store-mfa --overlap 0s`,
		Args: cobra.NoArgs,
		RunE: f.run("RetireStorageKeys", func(cmd *cobra.Command, a *admin.Admin) (admin.Output, error) {
			return a.RetireStorageKeys(cmd.Context(), purpose, overlap)
		}),
	}
	cmd.Flags().StringVar(&purpose, "purpose", "", "storage purpose to retire generations of")
	cmd.Flags().DurationVar(&overlap, "overlap", 10*time.Minute, "retire only generations superseded at least this long ago")
	cmd.MarkFlagRequired("purpose")
	return cmd
}
