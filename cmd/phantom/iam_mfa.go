package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/phantom-perimeter/phantom/internal/admin"
	"github.com/phantom-perimeter/phantom/internal/atomicfile"
	"github.com/phantom-perimeter/phantom/internal/mfa"
)

// Bootstrap methods of create-virtual-mfa-device: AWS's Base32StringSeed, and the otpauth
// URI a QR code holds (pipe it to a QR encoder such as qrencode). AWS's QRCodePNG needs a
// QR encoder, which Phantom does not carry.
const (
	bootstrapSeed = "Base32StringSeed"
	bootstrapURI  = "OtpauthURI"
	bootstrapQR   = "QRCodePNG"
)

// userNameFlag registers --user-name (AWS's spelling in the MFA commands) and takes
// --user, the spelling of phantom iam's access-key commands, as the same flag.
func userNameFlag(cmd *cobra.Command, user *string) {
	cmd.Flags().StringVar(user, "user-name", "", "user name (in the spec); --user works too")
	cmd.Flags().SetNormalizeFunc(func(_ *pflag.FlagSet, name string) pflag.NormalizedName {
		if name == "user" {
			name = "user-name"
		}
		return pflag.NormalizedName(name)
	})
	cmd.MarkFlagRequired("user-name")
}

func newIAMCreateVirtualMFADeviceCmd(f *adminFlags) *cobra.Command {
	var name, path, outfile, method string
	cmd := &cobra.Command{
		Use:   "create-virtual-mfa-device --virtual-mfa-device-name NAME --outfile FILE --bootstrap-method Base32StringSeed",
		Short: "Create a virtual MFA device; its seed goes to --outfile only",
		Long: `Create a virtual MFA device (TOTP, RFC 6238: 6 digits every 30 seconds, as authenticator apps
compute them) and print {"VirtualMFADevice": {"SerialNumber": "arn:aws:iam::ACCOUNT:mfa/NAME"}}.
The seed is written to --outfile (0600, which must not exist) and kept only sealed in the
store: --bootstrap-method Base32StringSeed writes the base32 seed to type into the app,
OtpauthURI the otpauth:// URI an app reads from a QR code (qrencode -t ansiutf8 < FILE
draws one). AWS's QRCodePNG is not supported. Then enable the device for a user with two
consecutive codes (enable-mfa-device) and delete the file.`,
		Example: `  phantom iam create-virtual-mfa-device --virtual-mfa-device-name alice-phone --outfile alice.seed --bootstrap-method Base32StringSeed
  phantom iam enable-mfa-device --user-name alice --serial-number arn:aws:iam::123456789012:mfa/alice-phone \
      --authentication-code1 123456 --authentication-code2 654321
  shred -u alice.seed`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			switch method {
			case bootstrapSeed, bootstrapURI:
			case bootstrapQR:
				return &exitError{code: 2, err: errors.New("--bootstrap-method QRCodePNG is not supported: use Base32StringSeed, or OtpauthURI and a QR encoder")}
			default:
				return &exitError{code: 2, err: fmt.Errorf("--bootstrap-method %q: want Base32StringSeed or OtpauthURI", method)}
			}
			// Check the file can be written before the device exists: a seed that reaches
			// no file is a device nobody can enable.
			if _, err := os.Lstat(outfile); err == nil {
				return &exitError{code: 2, err: fmt.Errorf("--outfile %s exists: the seed is a secret and is not written over another file", outfile)}
			}
			if st, err := os.Stat(filepath.Dir(outfile)); err != nil || !st.IsDir() {
				return &exitError{code: 2, err: fmt.Errorf("--outfile %s: its directory does not exist", outfile)}
			}
			return f.run("CreateVirtualMFADevice", func(cmd *cobra.Command, a *admin.Admin) (admin.Output, error) {
				out, err := a.CreateVirtualMFADevice(cmd.Context(), path, name)
				if err != nil {
					return nil, err
				}
				content := mfa.EncodeSeed(out.Seed)
				if method == bootstrapURI {
					content = mfa.URI("Phantom", name, out.Seed)
				}
				if err := atomicfile.Write(outfile, []byte(content+"\n"), 0o600); err != nil {
					if derr := a.DeleteVirtualMFADevice(cmd.Context(), out.VirtualMFADevice.SerialNumber); derr != nil {
						err = errors.Join(err, fmt.Errorf("and the device %s could not be deleted: %w", out.VirtualMFADevice.SerialNumber, derr))
					}
					return nil, err
				}
				return out, nil
			})(cmd, args)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&name, "virtual-mfa-device-name", "", "device name, unique under its path")
	fl.StringVar(&path, "path", "/", "IAM path of the device")
	fl.StringVar(&outfile, "outfile", "", "file to write the seed to (created 0600; must not exist)")
	fl.StringVar(&method, "bootstrap-method", "", "Base32StringSeed or OtpauthURI")
	for _, n := range []string{"virtual-mfa-device-name", "outfile", "bootstrap-method"} {
		cmd.MarkFlagRequired(n)
	}
	return cmd
}

func newIAMEnableMFADeviceCmd(f *adminFlags) *cobra.Command {
	var user, serial, code1, code2 string
	cmd := &cobra.Command{
		Use:   "enable-mfa-device --user-name NAME --serial-number ARN --authentication-code1 CODE --authentication-code2 CODE",
		Short: "Enable a virtual MFA device for a user with two consecutive codes",
		Long: `Assign a virtual MFA device to a user of the spec (prints nothing, as aws iam
enable-mfa-device). The two codes are consecutive codes the app shows (wait for the second);
a device is enabled for one user at a time and a user has at most 8. From then on the user
passes --serial-number and --token-code to GetSessionToken or AssumeRole to get sessions
with aws:MultiFactorAuthPresent true; each code is accepted once.`,
		Example: `  phantom iam enable-mfa-device --user-name alice --serial-number arn:aws:iam::123456789012:mfa/alice-phone \
      --authentication-code1 123456 --authentication-code2 654321
  aws sts get-session-token --serial-number arn:aws:iam::123456789012:mfa/alice-phone --token-code 246810`,
		Args: cobra.NoArgs,
		RunE: f.run("EnableMFADevice", func(cmd *cobra.Command, a *admin.Admin) (admin.Output, error) {
			return nil, a.EnableMFADevice(cmd.Context(), user, serial, code1, code2)
		}),
	}
	userNameFlag(cmd, &user)
	serialFlags(cmd, &serial, &code1, &code2)
	return cmd
}

func newIAMResyncMFADeviceCmd(f *adminFlags) *cobra.Command {
	var user, serial, code1, code2 string
	cmd := &cobra.Command{
		Use:   "resync-mfa-device --user-name NAME --serial-number ARN --authentication-code1 CODE --authentication-code2 CODE",
		Short: "Resynchronise a user's MFA device (after clock drift, or 10 failed codes locked it)",
		Long: `Resynchronise a user's enabled MFA device with two consecutive fresh codes (prints
nothing). A device refuses every code after 10 failed attempts without an accepted one
(the count is shared by every replica); this clears the count. Codes older than the last
one accepted stay refused. Wrong codes are InvalidAuthenticationCode.`,
		Example: `  phantom iam resync-mfa-device --user-name alice --serial-number arn:aws:iam::123456789012:mfa/alice-phone \
      --authentication-code1 123456 --authentication-code2 654321`,
		Args: cobra.NoArgs,
		RunE: f.run("ResyncMFADevice", func(cmd *cobra.Command, a *admin.Admin) (admin.Output, error) {
			return nil, a.ResyncMFADevice(cmd.Context(), user, serial, code1, code2)
		}),
	}
	userNameFlag(cmd, &user)
	serialFlags(cmd, &serial, &code1, &code2)
	return cmd
}

func serialFlags(cmd *cobra.Command, serial, code1, code2 *string) {
	fl := cmd.Flags()
	fl.StringVar(serial, "serial-number", "", "the device's serial number, arn:aws:iam::ACCOUNT:mfa/NAME")
	fl.StringVar(code1, "authentication-code1", "", "a code the device shows")
	fl.StringVar(code2, "authentication-code2", "", "the code it shows next")
	for _, n := range []string{"serial-number", "authentication-code1", "authentication-code2"} {
		cmd.MarkFlagRequired(n)
	}
}

func newIAMDeactivateMFADeviceCmd(f *adminFlags) *cobra.Command {
	var user, serial string
	cmd := &cobra.Command{
		Use:   "deactivate-mfa-device --user-name NAME --serial-number ARN",
		Short: "Take an MFA device from its user",
		Long: `Deactivate a user's MFA device (prints nothing). Sessions already issued with it keep
aws:MultiFactorAuthPresent until they expire; revoke them (revoke-sessions) when the device
was lost. The device can be enabled again or deleted.`,
		Example: `  phantom iam deactivate-mfa-device --user-name alice --serial-number arn:aws:iam::123456789012:mfa/alice-phone
  phantom iam delete-virtual-mfa-device --serial-number arn:aws:iam::123456789012:mfa/alice-phone`,
		Args: cobra.NoArgs,
		RunE: f.run("DeactivateMFADevice", func(cmd *cobra.Command, a *admin.Admin) (admin.Output, error) {
			return nil, a.DeactivateMFADevice(cmd.Context(), user, serial)
		}),
	}
	userNameFlag(cmd, &user)
	cmd.Flags().StringVar(&serial, "serial-number", "", "the device's serial number")
	cmd.MarkFlagRequired("serial-number")
	return cmd
}

func newIAMDeleteVirtualMFADeviceCmd(f *adminFlags) *cobra.Command {
	var serial string
	cmd := &cobra.Command{
		Use:   "delete-virtual-mfa-device --serial-number ARN",
		Short: "Delete a virtual MFA device that is not enabled",
		Long: `Delete a virtual MFA device and its seed (prints nothing). An enabled device is
DeleteConflict: deactivate it first. A serial number that names no device is NoSuchEntity.
Sessions issued with the device are not affected.`,
		Example: `  phantom iam delete-virtual-mfa-device --serial-number arn:aws:iam::123456789012:mfa/alice-phone`,
		Args:    cobra.NoArgs,
		RunE: f.run("DeleteVirtualMFADevice", func(cmd *cobra.Command, a *admin.Admin) (admin.Output, error) {
			return nil, a.DeleteVirtualMFADevice(cmd.Context(), serial)
		}),
	}
	cmd.Flags().StringVar(&serial, "serial-number", "", "the device's serial number")
	cmd.MarkFlagRequired("serial-number")
	return cmd
}

func newIAMListMFADevicesCmd(f *adminFlags) *cobra.Command {
	var user string
	cmd := &cobra.Command{
		Use:   "list-mfa-devices --user-name NAME",
		Short: "List the MFA devices enabled for a user",
		Long: `List a user's MFA devices as {"MFADevices": [{"UserName", "SerialNumber",
"EnableDate"}]}, the shape aws iam list-mfa-devices prints. Seeds are never shown. A user
with none prints an empty list; a name neither in the spec nor holding a device is
NoSuchEntity.`,
		Example: `  phantom iam list-mfa-devices --user-name alice
  phantom iam list-mfa-devices --user-name alice | jq -r '.MFADevices[].SerialNumber'`,
		Args: cobra.NoArgs,
		RunE: f.run("ListMFADevices", func(cmd *cobra.Command, a *admin.Admin) (admin.Output, error) {
			return a.ListMFADevices(cmd.Context(), user)
		}),
	}
	userNameFlag(cmd, &user)
	return cmd
}
