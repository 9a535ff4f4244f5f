package main

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/phantom-perimeter/phantom/internal/admin"
	"github.com/phantom-perimeter/phantom/internal/hsm"
	"github.com/phantom-perimeter/phantom/internal/keys"
	"github.com/phantom-perimeter/phantom/internal/perimeter"
	"github.com/phantom-perimeter/phantom/internal/pki"
)

func newCACmd() *cobra.Command {
	f := new(adminFlags)
	cmd := &cobra.Command{
		Use:   "ca",
		Short: "The perimeter CA: list, rotate, revoke certificates, distrust a CA, component join tokens",
		Long: `The perimeter CA is a root that signs 30-day issuing CAs that sign every certificate
(components, nodes, audit writers). Its certificates are public and kept in the store; the
issuing CA's key is sealed there under the store-ca key (STS and the operator hold it); the
root's key under store-ca-root, which only the master key derives. Every process verifies
against the current trust and picks up a rotation, a revocation or a distrust within a poll.

A component whose host holds no CA key (a key file from "phantom keys export" without
store-ca) gets its certificate from STS's component API with a single-use join token made
here ("phantom ca join-token"), and renews it there.

With --pkcs11-module, --pkcs11-token and --pkcs11-pin-file the root keys live in a PKCS#11
token (an HSM, SoftHSM2): "phantom ca rotate --root" makes a root there, and later
rotations sign the issuing CA there; the store never holds that root's key. Then no
process renews the issuing CA by itself: run "phantom ca rotate" with the token at least
every 20 days (it lives 30). With --pkcs11-issuing the new issuing CA's key is made in the
token too, and STS, started with the same --pkcs11-* flags, signs every certificate there.` + adminFlagsHelp,
	}
	f.register(cmd)
	var tok pkcs11Flags
	var issuing bool
	tok.register(cmd.PersistentFlags(), "the CA's root keys")
	cmd.PersistentFlags().BoolVar(&issuing, "pkcs11-issuing", false, "make new issuing CAs' keys in the token too (then STS needs the token: phantom sts --pkcs11-module …)")
	// With a token, every ca command makes and uses root keys there.
	f.before = func(a *admin.Admin) (func(), error) {
		t, err := tok.open()
		if err != nil || t == nil {
			return func() {}, err
		}
		a.UseRootKeys(t, issuing)
		return func() { t.Close() }, nil
	}
	cmd.AddCommand(newCAListCmd(f), newCARotateCmd(f), newCARevokeCmd(f), newCADistrustCmd(f), newCAJoinTokenCmd(f))
	return cmd
}

func newCAListCmd(f *adminFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List the CA certificates: role, serial, validity, status",
		Long: `List the CA certificates as {"CACertificates": [{"Serial", "Role" (root or issuing),
"Subject", "Issuer", "NotBefore", "NotAfter", "Status" (Current, Trusted, Expired or
Distrusted)}]}, oldest first. It reads the store (the data directory's, or --store) and
changes nothing; the current issuing CA is created on a store that holds none.`,
		Example: `  phantom ca list --output text`,
		Args:    cobra.NoArgs,
		RunE: f.run("ListCA", func(cmd *cobra.Command, a *admin.Admin) (admin.Output, error) {
			return a.ListCA(cmd.Context())
		}),
	}
}

func newCARotateCmd(f *adminFlags) *cobra.Command {
	var root bool
	cmd := &cobra.Command{
		Use:   "rotate [--root]",
		Short: "Make a new issuing CA (with --root, a new root first); the old stays trusted",
		Long: `Make a new issuing CA: new certificates come from it at once, the old one stays trusted
until it expires, so no connection fails. With --root a new root is made first and signs
the new issuing CA; the old root stays trusted until it expires or is distrusted. Prints
the CA certificates as "phantom ca list" does. Audited in the chain "admin".`,
		Example: `  phantom ca rotate
  phantom ca rotate --root`,
		Args: cobra.NoArgs,
		RunE: f.run("RotateCA", func(cmd *cobra.Command, a *admin.Admin) (admin.Output, error) {
			return a.RotateCA(cmd.Context(), root)
		}),
	}
	cmd.Flags().BoolVar(&root, "root", false, "make a new root too")
	return cmd
}

func newCARevokeCmd(f *adminFlags) *cobra.Command {
	var serial, identity, reason string
	cmd := &cobra.Command{
		Use:   "revoke (--serial HEX | --identity SPIFFE-ID) [--reason TEXT]",
		Short: "Revoke a certificate, or every certificate of an identity issued before now",
		Long: `Revoke one certificate by its serial (hexadecimal), or with --identity every certificate
of that identity (spiffe://phantom/ACCOUNT/KIND/NAME) issued before now. Every verifier in
every process refuses it within a poll. A component revoked by identity enrolls again with a
new join token. Audited in the chain "admin".`,
		Example: `  phantom ca revoke --identity spiffe://phantom/123456789012/endpoint/vpce-0a1b2c3d --reason "host compromised"
  phantom ca revoke --serial 3f2a9c...`,
		Args: cobra.NoArgs,
		RunE: f.run("RevokeCertificate", func(cmd *cobra.Command, a *admin.Admin) (admin.Output, error) {
			return a.RevokeCertificate(cmd.Context(), serial, identity, reason)
		}),
	}
	cmd.Flags().StringVar(&serial, "serial", "", "certificate serial number (hexadecimal)")
	cmd.Flags().StringVar(&identity, "identity", "", "revoke every certificate of this identity issued before now")
	cmd.Flags().StringVar(&reason, "reason", "", "why (recorded)")
	return cmd
}

func newCADistrustCmd(f *adminFlags) *cobra.Command {
	var serial string
	cmd := &cobra.Command{
		Use:   "distrust --serial HEX",
		Short: "Remove a CA certificate from the trust: everything under it stops verifying",
		Long: `Distrust a root or issuing CA (a compromised key): every certificate under it stops
verifying in every process within a poll. A distrusted current issuing CA is replaced by a
new one. Rotate first ("phantom ca rotate") so components renew under the new CA before
the old one is distrusted. Audited in the chain "admin".`,
		Example: `  phantom ca rotate && phantom ca distrust --serial 5b1e...`,
		Args:    cobra.NoArgs,
		RunE: f.run("DistrustCA", func(cmd *cobra.Command, a *admin.Admin) (admin.Output, error) {
			return a.DistrustCA(cmd.Context(), serial)
		}),
	}
	cmd.Flags().StringVar(&serial, "serial", "", "CA certificate serial number (hexadecimal, from phantom ca list)")
	cmd.MarkFlagRequired("serial")
	return cmd
}

func newCAJoinTokenCmd(f *adminFlags) *cobra.Command {
	var kind, name string
	var dns, ips, chains []string
	var ttl time.Duration
	cmd := &cobra.Command{
		Use:   "join-token --kind KIND --name NAME [--dns-name N]... [--ip IP]... [--audit-chain C]...",
		Short: "Make a single-use join token that enrolls one component through STS (shown only now)",
		Long: fmt.Sprintf(`Make a join token for a component whose host holds no CA key: it enrolls once with
STS's component API (phantom gateway|endpoint|egress|detector|console --join-token) and
renews there. The token grants one identity (--kind: %v), the names its certificate may
carry (loopback always; an endpoint's spec addresses and private DNS names) and the audit
chains STS will certify writer keys for (the component's default chain when none is
given). Valid once within --ttl (at most %s); --output text prints the token alone.`, pki.ComponentKinds, pki.MaxTokenTTL),
		Example: `  TOKEN=$(phantom ca join-token --kind endpoint --name vpce-0a1b2c3d --output text)
  phantom endpoint --id vpce-0a1b2c3d --keys endpoint.keys --join-token "$TOKEN" ...`,
		Args: cobra.NoArgs,
		RunE: f.run("CreateComponentJoinToken", func(cmd *cobra.Command, a *admin.Admin) (admin.Output, error) {
			var addrs []netip.Addr
			for _, s := range ips {
				ip, err := netip.ParseAddr(s)
				if err != nil {
					return nil, &admin.Error{Code: admin.CodeValidationError, Message: fmt.Sprintf("Value %q at 'ip' failed to satisfy constraint: Member must be an IP address", s)}
				}
				addrs = append(addrs, ip)
			}
			return a.ComponentJoinToken(cmd.Context(), pki.Kind(kind), name, dns, addrs, chains, ttl)
		}),
	}
	cmd.Flags().StringVar(&kind, "kind", "", fmt.Sprintf("component kind (%v)", pki.ComponentKinds))
	cmd.Flags().StringVar(&name, "name", "", "component name (an endpoint's id; the spec's gateway name)")
	cmd.Flags().StringArrayVar(&dns, "dns-name", nil, "a DNS name the certificate may carry (repeatable)")
	cmd.Flags().StringArrayVar(&ips, "ip", nil, "an IP address the certificate may carry (repeatable)")
	cmd.Flags().StringArrayVar(&chains, "audit-chain", nil, "an audit chain STS may certify writer keys for (repeatable)")
	cmd.Flags().DurationVar(&ttl, "ttl", pki.DefaultTokenTTL, "how long the token is valid")
	cmd.MarkFlagRequired("kind")
	cmd.MarkFlagRequired("name")
	return cmd
}

func newKeysExportCmd(f *adminFlags) *cobra.Command {
	var component, out string
	cmd := &cobra.Command{
		Use:   "export --component NAME --out FILE",
		Short: "Write one component's key file: its purposes' keys, never the master key",
		Long: fmt.Sprintf(`Write the key file of one kind of process (--component: %v) to --out (0600): the keys
derived from the master key for that component's purposes and nothing from which another
could be derived. A host given it instead of the master key (--keys FILE, or $%s) can do
that component's job and nothing else: docs/threat-model.md lists what each holds. Prints
the purposes the file holds, never keys. Audited in the chain "admin".`, exportableComponents(), keys.FileEnv),
		Example: `  phantom keys export --component endpoint --out /etc/phantom/endpoint.keys
  phantom keys export --component gateway --out gateway.keys --output text`,
		Args: cobra.NoArgs,
		RunE: f.run("ExportComponentKeys", func(cmd *cobra.Command, a *admin.Admin) (admin.Output, error) {
			c, err := keys.ParseComponent(component)
			if err != nil {
				return nil, &admin.Error{Code: admin.CodeValidationError, Message: err.Error()}
			}
			return a.ExportKeys(cmd.Context(), c, out)
		}),
	}
	cmd.Flags().StringVar(&component, "component", "", "component kind")
	cmd.Flags().StringVar(&out, "out", "", "key file to write (0600)")
	cmd.MarkFlagRequired("component")
	cmd.MarkFlagRequired("out")
	return cmd
}

// exportableComponents are the components a key file is made for (the operator holds the
// master key itself).
func exportableComponents() []keys.Component {
	var out []keys.Component
	for _, c := range keys.Components() {
		if c != keys.Operator {
			out = append(out, c)
		}
	}
	return out
}

// pkcs11Flags name a PKCS#11 token holding keys (internal/hsm): the CA's, and a
// component's (--pkcs11-keys).
type pkcs11Flags struct {
	cfg     hsm.Config
	pinFile string
	keys    []string // --pkcs11-keys, for components
}

// The keys --pkcs11-keys names.
const (
	pkcs11Issuing      = "issuing"
	pkcs11TokenSigning = "token-signing"
	pkcs11Audit        = "audit"
)

// inToken validates --pkcs11-keys for the component name: STS may keep its issuing CAs',
// its token-signing and its audit writer's keys in the token (default: issuing), every
// other component its audit writer's (the default).
func (f *pkcs11Flags) inToken(name string) (perimeter.TokenKeys, error) {
	var tk perimeter.TokenKeys
	if f.cfg.Module == "" {
		if len(f.keys) > 0 {
			return tk, errors.New("--pkcs11-keys needs --pkcs11-module")
		}
		return tk, nil
	}
	ks := f.keys
	if len(ks) == 0 {
		ks = []string{pkcs11Audit}
		if name == "sts" {
			ks = []string{pkcs11Issuing}
		}
	}
	for _, k := range ks {
		switch {
		case k == pkcs11Audit:
			tk.Audit = true
		case k == pkcs11Issuing && name == "sts":
			tk.Issuing = true
		case k == pkcs11TokenSigning && name == "sts":
			tk.TokenSigning = true
		default:
			allowed := pkcs11Audit
			if name == "sts" {
				allowed = pkcs11Issuing + ", " + pkcs11TokenSigning + ", " + pkcs11Audit
			}
			return tk, fmt.Errorf("--pkcs11-keys %q: phantom %s keeps %s keys in a token", k, name, allowed)
		}
	}
	return tk, nil
}

func (f *pkcs11Flags) register(fl *pflag.FlagSet, what string) {
	fl.StringVar(&f.cfg.Module, "pkcs11-module", os.Getenv("PHANTOM_PKCS11_MODULE"), "PKCS#11 library holding "+what+", e.g. /usr/lib/softhsm/libsofthsm2.so (default $PHANTOM_PKCS11_MODULE; none: no key is in a token: the store, sealed, or memory)")
	fl.StringVar(&f.cfg.TokenLabel, "pkcs11-token", os.Getenv("PHANTOM_PKCS11_TOKEN"), "label of the PKCS#11 token (default $PHANTOM_PKCS11_TOKEN)")
	fl.StringVar(&f.pinFile, "pkcs11-pin-file", os.Getenv("PHANTOM_PKCS11_PIN_FILE"), "file holding the token's user PIN (default $PHANTOM_PKCS11_PIN_FILE)")
}

// open logs in to the token; nil without --pkcs11-module.
func (f *pkcs11Flags) open() (*hsm.Token, error) {
	if f.cfg.Module == "" {
		return nil, nil
	}
	cfg := f.cfg
	pin, err := hsm.ReadPIN(f.pinFile)
	if err != nil {
		return nil, &exitError{code: exitUsage, err: err}
	}
	cfg.PIN = pin
	t, err := hsm.Open(cfg)
	if err != nil {
		return nil, &exitError{code: exitOther, err: err}
	}
	return t, nil
}
