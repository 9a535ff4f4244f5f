package admin

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/netip"
	"slices"
	"time"

	"github.com/phantom-perimeter/phantom/internal/atomicfile"
	"github.com/phantom-perimeter/phantom/internal/config"
	"github.com/phantom-perimeter/phantom/internal/keys"
	"github.com/phantom-perimeter/phantom/internal/pki"
	"github.com/phantom-perimeter/phantom/internal/store"
)

// The operator's side of keeping components apart (`phantom keys export`, `phantom keys
// backend`, `phantom ca`):
// key files holding one component's keys, join tokens granting one component identity,
// CA rotation, certificate revocation and distrust. Each is audited in the chain "admin".

// ExportKeysOutput is `phantom keys export`'s output: which keys the file holds, never
// the keys.
type ExportKeysOutput struct {
	Component string
	Path      string
	Purposes  []string
}

func (o *ExportKeysOutput) writeText(w io.Writer) error {
	return textLine(w, "KEYFILE", o.Component, o.Path)
}

// ExportKeys writes component c's key file to path (0600): the keys derived for its
// purposes from the master key, and nothing from which another could be derived. The
// store's checks of those keys are in place (the store was opened with the master key),
// so the component's open of the store finds them.
func (a *Admin) ExportKeys(ctx context.Context, c keys.Component, path string) (*ExportKeysOutput, error) {
	if c == keys.Operator {
		return nil, validation(string(c), "component", "Member must be a component; the operator holds the master key itself")
	}
	gens, err := a.liveGenerations(ctx)
	if err != nil {
		return nil, err
	}
	ring, err := keys.ForComponentGenerations(a.mk, c, gens)
	if err != nil {
		return nil, validation(string(c), "component", err.Error())
	}
	if err := keys.WriteFile(path, ring); err != nil {
		return nil, err
	}
	out := &ExportKeysOutput{Component: string(c), Path: path}
	for _, p := range ring.Held() {
		for _, g := range ring.Generations(p) {
			name := string(p)
			if g != keys.FirstGeneration {
				name = fmt.Sprintf("%s#%d", p, g)
			}
			out.Purposes = append(out.Purposes, name)
		}
	}
	if err := a.record(ctx, "ExportComponentKeys", map[string]any{"component": string(c)}, map[string]any{"purposes": out.Purposes}); err != nil {
		return out, fmt.Errorf("the key file is written, but the audit record failed: %w", err)
	}
	return out, nil
}

// ExportBackendKeyOutput is `phantom keys backend`'s output: where the key went and its
// kid, never the key.
type ExportBackendKeyOutput struct {
	API   string
	KeyID string
	Path  string
}

func (o *ExportBackendKeyOutput) writeText(w io.Writer) error {
	return textLine(w, "BACKENDKEY", o.API, o.KeyID, o.Path)
}

// ExportBackendKey writes API api's assertion key file to path (0600): the HS256 key its
// backends verify X-Phantom-Identity with (docs/backends.md), derived from the gateway's
// assertion key with the API id. It lets its holder check, and make, assertions for this
// API only. The API must be in the spec.
func (a *Admin) ExportBackendKey(ctx context.Context, api, path string) (*ExportBackendKeyOutput, error) {
	spec, ok := a.spec.API(api)
	if !ok {
		return nil, validation(api, "api", "Member must be the id of an API in the spec")
	}
	if spec.Assertion == config.AssertionEdDSA {
		return nil, validation(api, "api", "Member must be an API with assertion: hs256; this one's backends verify with the gateway's JWKS (/.well-known/phantom/jwks.json)")
	}
	seed, err := keys.Derive(a.mk, keys.Assertion)
	if err != nil {
		return nil, err
	}
	k, err := keys.DeriveBackendKey(seed, api)
	if err != nil {
		return nil, err
	}
	file, err := k.MarshalJWK()
	if err != nil {
		return nil, err
	}
	if err := atomicfile.Write(path, file, 0o600); err != nil {
		return nil, err
	}
	out := &ExportBackendKeyOutput{API: api, KeyID: k.KeyID(), Path: path}
	if err := a.record(ctx, "ExportBackendKey", map[string]any{"api": api}, map[string]any{"keyId": out.KeyID}); err != nil {
		return out, fmt.Errorf("the key file is written, but the audit record failed: %w", err)
	}
	return out, nil
}

// ComponentJoinTokenOutput is `phantom ca join-token`'s output: the only time the token's
// secret is shown.
type ComponentJoinTokenOutput struct {
	Identity    string
	Token       string
	DNSNames    []string `json:",omitempty"`
	IPs         []string `json:",omitempty"`
	AuditChains []string `json:",omitempty"`
	Expiration  Time
}

// writeText prints the token alone, so TOKEN=$(phantom ca join-token … --output text)
// works.
func (o *ComponentJoinTokenOutput) writeText(w io.Writer) error {
	_, err := fmt.Fprintln(w, o.Token)
	return err
}

// ComponentJoinToken makes a single-use join token that enrolls one component through
// STS's component API: its identity, the names its certificate is valid for (loopback
// always, and for an endpoint its spec addresses and private DNS names) and the audit
// chains it may have certified (the component's default chain when none is given).
func (a *Admin) ComponentJoinToken(ctx context.Context, kind pki.Kind, name string, dns []string, ips []netip.Addr, chains []string, ttl time.Duration) (*ComponentJoinTokenOutput, error) {
	if ttl < 0 || ttl > pki.MaxTokenTTL {
		return nil, validation(ttl.String(), "ttl", fmt.Sprintf("Member must be between 0s and %s", pki.MaxTokenTTL))
	}
	g := pki.Grant{Identity: pki.Identity{Account: a.spec.Account, Kind: kind, Name: name}, DNSNames: append([]string{"localhost"}, dns...),
		IPs: append([]netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.IPv6Loopback()}, ips...), AuditChains: chains}
	switch kind {
	case pki.KindEndpoint:
		ep, ok := a.spec.Endpoint(name)
		if !ok {
			return nil, &Error{CodeNoSuchEntity, fmt.Sprintf("The endpoint %s cannot be found in the perimeter spec.", name)}
		}
		// Its private DNS names, and every API's execute-api names, which bind a connection
		// to one API by its TLS server name.
		g.DNSNames = append(g.DNSNames, config.ExecuteAPIWildcard(a.spec.Region))
		g.DNSNames = append(g.DNSNames, ep.PrivateDNSNames...)
		for _, l := range ep.Listen {
			if a := l.Addr().Unmap(); !a.IsUnspecified() {
				g.IPs = append(g.IPs, a)
			}
		}
		if len(chains) == 0 {
			g.AuditChains = []string{"endpoint-" + name}
		}
	case pki.KindGateway:
		if name != a.spec.Gateway.Name {
			return nil, validation(name, "name", fmt.Sprintf("Member must be the spec's gateway name %q (endpoints accept no other)", a.spec.Gateway.Name))
		}
		if len(chains) == 0 {
			g.AuditChains = []string{"gateway"}
		}
	default:
		if len(chains) == 0 {
			g.AuditChains = []string{name}
		}
	}
	slices.Sort(g.DNSNames)
	g.DNSNames = slices.Compact(g.DNSNames)
	slices.SortFunc(g.IPs, func(x, y netip.Addr) int { return x.Compare(y) })
	g.IPs = slices.Compact(g.IPs)
	if err := g.Validate(); err != nil {
		return nil, validation(name, "grant", err.Error())
	}
	tok, exp, err := pki.NewTokens(pki.TokensConfig{Now: a.now, Rand: a.rand}, a.store).CreateGrant(ctx, g, ttl)
	if err != nil {
		return nil, err
	}
	out := &ComponentJoinTokenOutput{Identity: g.Identity.String(), Token: tok, DNSNames: g.DNSNames, AuditChains: g.AuditChains, Expiration: Time(exp)}
	for _, ip := range g.IPs {
		out.IPs = append(out.IPs, ip.String())
	}
	if err := a.record(ctx, "CreateComponentJoinToken", map[string]any{"identity": out.Identity, "dnsNames": out.DNSNames, "ips": out.IPs, "auditChains": out.AuditChains}, nil); err != nil {
		return nil, fmt.Errorf("the join token was not handed out: the audit record failed: %w", err)
	}
	return out, nil
}

// CACertificateInfo describes one CA certificate.
type CACertificateInfo struct {
	Serial     string
	Role       string
	Subject    string
	Issuer     string
	NotBefore  Time
	NotAfter   Time
	Status     string // Current, Trusted, Expired or Distrusted
	Distrusted *Time  `json:",omitempty"`
}

// ListCAOutput is `phantom ca list`'s output.
type ListCAOutput struct {
	CACertificates []CACertificateInfo
}

func (o *ListCAOutput) writeText(w io.Writer) error {
	for _, c := range o.CACertificates {
		if err := textLine(w, "CACERTIFICATE", c.NotAfter.String(), c.NotBefore.String(), c.Role, c.Serial, c.Status); err != nil {
			return err
		}
	}
	return nil
}

// ListCA lists the perimeter's CA certificates, oldest first.
func (a *Admin) ListCA(ctx context.Context) (*ListCAOutput, error) {
	ca, err := a.Authority(ctx)
	if err != nil {
		return nil, err
	}
	cur, _ := ca.CA()
	out := &ListCAOutput{CACertificates: []CACertificateInfo{}}
	for _, c := range ca.Certificates() {
		x, err := x509.ParseCertificate(c.DER)
		if err != nil {
			return nil, err
		}
		info := CACertificateInfo{Serial: c.Serial, Role: string(c.Role), Subject: x.Subject.CommonName, Issuer: x.Issuer.CommonName,
			NotBefore: Time(c.NotBefore), NotAfter: Time(c.NotAfter), Status: "Trusted"}
		switch {
		case !c.DistrustedAt.IsZero():
			t := Time(c.DistrustedAt)
			info.Status, info.Distrusted = "Distrusted", &t
		case a.now().After(c.NotAfter):
			info.Status = "Expired"
		case cur != nil && cur.Certificate().Equal(x):
			info.Status = "Current"
		}
		out.CACertificates = append(out.CACertificates, info)
	}
	return out, nil
}

// RotateCA makes a new issuing CA (with newRoot, a new root first): new certificates come
// from it, the old one stays trusted until it expires, so nothing in use stops working.
// Every process takes it within a poll.
func (a *Admin) RotateCA(ctx context.Context, newRoot bool) (*ListCAOutput, error) {
	ca, err := a.Authority(ctx)
	if err != nil {
		return nil, err
	}
	cert, err := ca.Rotate(ctx, newRoot)
	if err != nil {
		return nil, err
	}
	if err := a.record(ctx, "RotateCA", map[string]any{"newRoot": newRoot}, map[string]any{"issuingSerial": cert.SerialNumber.Text(16), "notAfter": cert.NotAfter.UTC().Format(time.RFC3339)}); err != nil {
		return nil, fmt.Errorf("the CA rotated, but the audit record failed: %w", err)
	}
	return a.ListCA(ctx)
}

// RevokeCertificateOutput is `phantom ca revoke`'s output.
type RevokeCertificateOutput struct {
	Revocation   string
	IssuedBefore string `json:",omitempty"`
	RevokedAt    string
}

func (o *RevokeCertificateOutput) writeText(w io.Writer) error {
	return textLine(w, "REVOKED", o.Revocation, o.RevokedAt)
}

// RevokeCertificate refuses a certificate by serial (hexadecimal), or, with identity,
// every certificate of that identity issued before now: every verifier of every process
// refuses it within a poll. A component whose identity is revoked enrolls again with a new
// join token.
func (a *Admin) RevokeCertificate(ctx context.Context, serial, identity, reason string) (*RevokeCertificateOutput, error) {
	r := pki.Revocation{RevokedAt: a.now().UTC(), Reason: reason}
	switch {
	case (serial == "") == (identity == ""):
		return nil, validation(serial+identity, "serial", "Give a serial or an identity, not both")
	case serial != "":
		n, ok := new(big.Int).SetString(serial, 16)
		if !ok || n.Sign() <= 0 {
			return nil, validation(serial, "serial", "Member must be a hexadecimal serial number")
		}
		r.Serial = n.Text(16)
	default:
		id, err := pki.ParseIdentity(identity)
		if err != nil {
			return nil, validation(identity, "identity", "Member must be spiffe://phantom/ACCOUNT/KIND/NAME")
		}
		r.Identity, r.IssuedBefore = id, r.RevokedAt
	}
	if r.Reason == "" {
		r.Reason = "revoked by the operator"
	}
	ca, err := a.Authority(ctx)
	if err != nil {
		return nil, err
	}
	if err := ca.Revoke(ctx, r); err != nil {
		return nil, err
	}
	out := &RevokeCertificateOutput{Revocation: r.ID(), RevokedAt: r.RevokedAt.Format(time.RFC3339Nano)}
	if !r.IssuedBefore.IsZero() {
		out.IssuedBefore = r.IssuedBefore.Format(time.RFC3339Nano)
	}
	if err := a.record(ctx, "RevokeCertificate", map[string]any{"revocation": out.Revocation, "reason": r.Reason}, nil); err != nil {
		return out, fmt.Errorf("the certificate is revoked, but the audit record failed: %w", err)
	}
	return out, nil
}

// DistrustCA removes a CA certificate from the trust (a compromised root or issuing CA):
// every certificate under it stops verifying everywhere within a poll; a new issuing CA
// replaces a distrusted current one.
func (a *Admin) DistrustCA(ctx context.Context, serial string) (*ListCAOutput, error) {
	ca, err := a.Authority(ctx)
	if err != nil {
		return nil, err
	}
	err = ca.Distrust(ctx, serial)
	if errors.Is(err, store.ErrNotFound) {
		return nil, &Error{CodeNoSuchEntity, fmt.Sprintf("The CA certificate %s cannot be found.", serial)}
	}
	if err != nil {
		return nil, err
	}
	if err := a.record(ctx, "DistrustCA", map[string]any{"serial": serial}, nil); err != nil {
		return nil, fmt.Errorf("the CA is distrusted, but the audit record failed: %w", err)
	}
	return a.ListCA(ctx)
}
