package pki

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"
)

// Components (gateways, endpoints, egress proxies, detectors, consoles) that do not hold
// the CA's issuing key get their certificate from STS: the operator hands a host a join
// token that grants one identity, the names it may serve under and the audit chains it
// may write; the component redeems it once with a certificate request, and renews
// (proving the certificate it has) and has its audit writers certified over mutual TLS.
// The grant travels in the certificate itself (its SANs, and its audit chains as
// Subject OrganizationalUnit values "audit-chain=NAME"), so a renewal gives exactly what
// the first certificate had and nothing the host asks for.

// Grant is what a component join token lets its redeemer be.
type Grant struct {
	Identity    Identity
	DNSNames    []string
	IPs         []netip.Addr
	AuditChains []string
}

// auditChainPrefix marks an audit chain in a component certificate's Subject OU.
const auditChainPrefix = "audit-chain="

// Validate checks the grant: a component kind, DNS names, unzoned addresses, valid chain
// names.
func (g Grant) Validate() error {
	if err := g.Identity.Validate(); err != nil {
		return fmt.Errorf("grant: %w", err)
	}
	if !slices.Contains(ComponentKinds, g.Identity.Kind) {
		return fmt.Errorf("grant: %s is not a component kind %v", g.Identity.Kind, ComponentKinds)
	}
	for _, n := range g.DNSNames {
		if !validDNSName(n) {
			return fmt.Errorf("grant: %q is not a DNS name", n)
		}
	}
	for _, ip := range g.IPs {
		if !ip.IsValid() || ip.Zone() != "" {
			return fmt.Errorf("grant: %v is not an address", ip)
		}
	}
	for _, c := range g.AuditChains {
		if !chainRe.MatchString(c) {
			return fmt.Errorf("grant: audit chain %q is not [a-z0-9-]+", c)
		}
	}
	return nil
}

// validDNSName accepts host names and one leading wildcard label (*.example.com), as
// certificate SANs carry them.
func validDNSName(n string) bool {
	if len(n) == 0 || len(n) > 253 {
		return false
	}
	labels := strings.Split(n, ".")
	for i, l := range labels {
		if i == 0 && l == "*" && len(labels) > 2 {
			continue
		}
		if !hostLabelRe.MatchString(l) {
			return false
		}
	}
	return true
}

// Request is the certificate the grant's component gets for its key: server and client
// usage for its identity and names, its audit chains in the subject.
func (g Grant) Request(validity time.Duration) Request {
	return Request{Identity: g.Identity, DNSNames: g.DNSNames, IPs: g.IPs, Server: true, Client: true, AuditChains: g.AuditChains, Validity: validity}
}

// GrantOf reads a verified component certificate's grant back.
func GrantOf(cert *x509.Certificate) (Grant, error) {
	id, err := IdentityFromCert(cert)
	if err != nil {
		return Grant{}, err
	}
	g := Grant{Identity: id, DNSNames: slices.Clone(cert.DNSNames)}
	for _, ip := range cert.IPAddresses {
		a, ok := netip.AddrFromSlice(ip)
		if !ok {
			return Grant{}, fmt.Errorf("certificate address %v", ip)
		}
		g.IPs = append(g.IPs, a.Unmap())
	}
	for _, ou := range cert.Subject.OrganizationalUnit {
		if c, ok := strings.CutPrefix(ou, auditChainPrefix); ok {
			g.AuditChains = append(g.AuditChains, c)
		}
	}
	return g, g.Validate()
}

// MarshalGrant and ParseGrant are the grant's form in the store (a join token's).
func MarshalGrant(g Grant) (string, error) {
	if err := g.Validate(); err != nil {
		return "", err
	}
	b, err := json.Marshal(struct {
		Identity    string
		DNSNames    []string     `json:",omitempty"`
		IPs         []netip.Addr `json:",omitempty"`
		AuditChains []string     `json:",omitempty"`
	}{g.Identity.String(), g.DNSNames, g.IPs, g.AuditChains})
	return string(b), err
}

func ParseGrant(s string) (Grant, error) {
	var raw struct {
		Identity    string
		DNSNames    []string
		IPs         []netip.Addr
		AuditChains []string
	}
	if err := json.Unmarshal([]byte(s), &raw); err != nil {
		return Grant{}, fmt.Errorf("grant: %w", err)
	}
	id, err := ParseIdentity(raw.Identity)
	if err != nil {
		return Grant{}, fmt.Errorf("grant: %w", err)
	}
	g := Grant{Identity: id, DNSNames: raw.DNSNames, IPs: raw.IPs, AuditChains: raw.AuditChains}
	return g, g.Validate()
}

// CreateGrant makes a token that enrolls the grant's component once within ttl (zero:
// DefaultTokenTTL). The returned string is the only copy of the secret.
func (t *Tokens) CreateGrant(ctx context.Context, g Grant, ttl time.Duration) (string, time.Time, error) {
	if err := g.Validate(); err != nil {
		return "", time.Time{}, fmt.Errorf("join token: %w", err)
	}
	if g.Identity.Account == "" {
		return "", time.Time{}, errors.New("join token: the grant names no account")
	}
	return t.create(ctx, g.Identity.Name, &g, ttl)
}

// EnrollComponent redeems a component join token and signs the component's certificate
// request: identity, names and audit chains from the token, the key from the request.
// A node's token enrolls no component (and a component's token no node: Enroll).
func (ca *CA) EnrollComponent(ctx context.Context, tokens *Tokens, token string, csr *x509.CertificateRequest, validity time.Duration) (*x509.Certificate, Grant, error) {
	if err := csr.CheckSignature(); err != nil {
		return nil, Grant{}, fmt.Errorf("enroll: certificate request signature: %w", err)
	}
	if err := checkPublicKey(csr.PublicKey); err != nil {
		return nil, Grant{}, fmt.Errorf("enroll: %w", err)
	}
	rec, err := tokens.Redeem(ctx, token)
	if err != nil {
		return nil, Grant{}, err
	}
	if rec.Grant == nil {
		return nil, Grant{}, ErrTokenInvalid // a node's token: spent, as any redeemed token
	}
	if rec.Grant.Identity.Account != ca.cfg.Account {
		return nil, Grant{}, fmt.Errorf("enroll %s: not this CA's account", rec.Grant.Identity)
	}
	cert, err := ca.Sign(csr.PublicKey, rec.Grant.Request(validity))
	if err != nil {
		return nil, Grant{}, fmt.Errorf("enroll %s: %w", rec.Grant.Identity, err)
	}
	return cert, *rec.Grant, nil
}

// EnrollComponent is the current issuing CA's (CA.EnrollComponent).
func (a *Authority) EnrollComponent(ctx context.Context, tokens *Tokens, token string, csr *x509.CertificateRequest, validity time.Duration) (*x509.Certificate, Grant, error) {
	ca, err := a.CA()
	if err != nil {
		return nil, Grant{}, err
	}
	return ca.EnrollComponent(ctx, tokens, token, csr, validity)
}

func auditChainOUs(chains []string) []string {
	var out []string
	for _, c := range chains {
		out = append(out, auditChainPrefix+c)
	}
	return out
}
