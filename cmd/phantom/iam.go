package main

import (
	"github.com/spf13/cobra"

	"github.com/phantom-perimeter/phantom/internal/admin"
)

func newIAMCmd() *cobra.Command {
	f := new(adminFlags)
	cmd := &cobra.Command{
		Use:   "iam",
		Short: "Users' access keys and MFA devices, and role session revocation, as aws iam does them",
		Long: `Manage users' long-term access keys and virtual MFA devices, and revoke role sessions.
Inputs, outputs and error codes follow the AWS CLI's aws iam commands.` + adminFlagsHelp,
	}
	f.register(cmd)
	cmd.AddCommand(
		newIAMCreateAccessKeyCmd(f),
		newIAMListAccessKeysCmd(f),
		newIAMUpdateAccessKeyCmd(f),
		newIAMDeleteAccessKeyCmd(f),
		newIAMRevokeSessionsCmd(f),
		newIAMCreateVirtualMFADeviceCmd(f),
		newIAMEnableMFADeviceCmd(f),
		newIAMResyncMFADeviceCmd(f),
		newIAMDeactivateMFADeviceCmd(f),
		newIAMDeleteVirtualMFADeviceCmd(f),
		newIAMListMFADevicesCmd(f),
	)
	return cmd
}

func newIAMCreateAccessKeyCmd(f *adminFlags) *cobra.Command {
	var user string
	cmd := &cobra.Command{
		Use:   "create-access-key --user NAME",
		Short: "Create an access key for a user of the spec; the secret is shown only now",
		Long: `Create an Active long-term access key (AKIA...) for a user of the perimeter spec and
print it as {"AccessKey": {"UserName", "AccessKeyId", "Status", "SecretAccessKey",
"CreateDate"}}. The secret is stored only encrypted and is never shown again. A user
has at most 2 keys (LimitExceeded), as in IAM; a user not in the spec is NoSuchEntity.`,
		Example: `  phantom iam create-access-key --user alice --config perimeter.yaml
  # straight into a profile of the shared credentials file, never through shell history
  phantom iam create-access-key --user alice |
    jq -r '.AccessKey | "[alice]\naws_access_key_id = \(.AccessKeyId)\naws_secret_access_key = \(.SecretAccessKey)"' >> ~/.aws/credentials`,
		Args: cobra.NoArgs,
		RunE: f.run("CreateAccessKey", func(cmd *cobra.Command, a *admin.Admin) (admin.Output, error) {
			return a.CreateAccessKey(cmd.Context(), user)
		}),
	}
	cmd.Flags().StringVar(&user, "user", "", "user name (in the spec)")
	cmd.MarkFlagRequired("user")
	return cmd
}

func newIAMListAccessKeysCmd(f *adminFlags) *cobra.Command {
	var user string
	cmd := &cobra.Command{
		Use:   "list-access-keys --user NAME",
		Short: "List a user's access keys (never their secrets)",
		Long: `List a user's access keys as {"AccessKeyMetadata": [{"UserName", "AccessKeyId",
"Status", "CreateDate"}]}, the shape aws iam list-access-keys prints; secrets are never
shown. A user removed from the spec whose keys are still stored is listed too, so the keys
can be found and deleted. A user with no keys prints an empty list.`,
		Example: `  phantom iam list-access-keys --user alice
  phantom iam list-access-keys --user alice | jq -r '.AccessKeyMetadata[] | select(.Status == "Active") | .AccessKeyId'`,
		Args: cobra.NoArgs,
		RunE: f.run("ListAccessKeys", func(cmd *cobra.Command, a *admin.Admin) (admin.Output, error) {
			return a.ListAccessKeys(cmd.Context(), user)
		}),
	}
	cmd.Flags().StringVar(&user, "user", "", "user name")
	cmd.MarkFlagRequired("user")
	return cmd
}

func newIAMUpdateAccessKeyCmd(f *adminFlags) *cobra.Command {
	var user, id, status string
	cmd := &cobra.Command{
		Use:   "update-access-key --user NAME --access-key-id ID --status Active|Inactive",
		Short: "Enable or disable a user's access key",
		Long: `Set a key Active or Inactive (prints nothing, as aws iam update-access-key). Inactive
takes effect at once: every running Phantom process sharing this data directory's store
polls its change counter and refuses the key within 2 seconds (the identity service's
refresh interval); the key can be made Active again. Disabling works for a user removed
from the spec; enabling needs the user in it.`,
		Example: `  phantom iam update-access-key --user alice --access-key-id AKIAIOSFODNN7EXAMPLE --status Inactive
  phantom iam update-access-key --user alice --access-key-id AKIAIOSFODNN7EXAMPLE --status Active`,
		Args: cobra.NoArgs,
		RunE: f.run("UpdateAccessKey", func(cmd *cobra.Command, a *admin.Admin) (admin.Output, error) {
			return nil, a.UpdateAccessKey(cmd.Context(), user, id, status)
		}),
	}
	cmd.Flags().StringVar(&user, "user", "", "user name")
	cmd.Flags().StringVar(&id, "access-key-id", "", "access key id (AKIA...)")
	cmd.Flags().StringVar(&status, "status", "", "Active or Inactive")
	cmd.MarkFlagRequired("user")
	cmd.MarkFlagRequired("access-key-id")
	cmd.MarkFlagRequired("status")
	return cmd
}

func newIAMDeleteAccessKeyCmd(f *adminFlags) *cobra.Command {
	var user, id string
	cmd := &cobra.Command{
		Use:   "delete-access-key --user NAME --access-key-id ID",
		Short: "Delete a user's access key",
		Long: `Delete a key for good (prints nothing, as aws iam delete-access-key). Running processes
that share this store refuse it within 2 seconds, and it cannot be brought back: disable a
key first (update-access-key --status Inactive) when unsure whether something still uses
it. A key id under another user's name is NoSuchEntity.`,
		Example: `  # rotate alice's key: create the new one, move clients to it, then disable and delete the old one
  phantom iam create-access-key --user alice
  phantom iam update-access-key --user alice --access-key-id AKIAIOSFODNN7EXAMPLE --status Inactive
  phantom iam delete-access-key --user alice --access-key-id AKIAIOSFODNN7EXAMPLE`,
		Args: cobra.NoArgs,
		RunE: f.run("DeleteAccessKey", func(cmd *cobra.Command, a *admin.Admin) (admin.Output, error) {
			return nil, a.DeleteAccessKey(cmd.Context(), user, id)
		}),
	}
	cmd.Flags().StringVar(&user, "user", "", "user name")
	cmd.Flags().StringVar(&id, "access-key-id", "", "access key id (AKIA...)")
	cmd.MarkFlagRequired("user")
	cmd.MarkFlagRequired("access-key-id")
	return cmd
}

func newIAMRevokeSessionsCmd(f *adminFlags) *cobra.Command {
	var role string
	cmd := &cobra.Command{
		Use:   "revoke-sessions --role NAME",
		Short: "Deny every session of a role issued before now (AWS's revoke active sessions)",
		Long: `Revoke every active session of a role of the spec: sessions whose aws:TokenIssueTime is
before now are refused, as AWS's "Revoke active sessions" does with a deny on
aws:TokenIssueTime. Sessions issued afterwards work, so workloads that refresh their
credentials recover by themselves. Running processes apply it within 2 seconds. Prints
{"RoleName", "RoleArn", "TokenIssueTimeBefore"}.`,
		Example: `  phantom iam revoke-sessions --role app --config perimeter.yaml --data-dir /var/lib/phantom
  PHANTOM_STORE=postgres://... phantom iam revoke-sessions --role app   # every replica, from any host`,
		Args: cobra.NoArgs,
		RunE: f.run("RevokeSessions", func(cmd *cobra.Command, a *admin.Admin) (admin.Output, error) {
			return a.RevokeSessions(cmd.Context(), role)
		}),
	}
	cmd.Flags().StringVar(&role, "role", "", "role name (in the spec)")
	cmd.MarkFlagRequired("role")
	return cmd
}
