// Package sso is the OAuth 2.0 client side of people's single sign-on: it discovers the
// perimeter's OpenID Connect provider (OpenID Connect Discovery 1.0), runs the device
// authorization grant (RFC 8628) and the authorization code grant with PKCE (RFC 7636;
// RFC 8252 for the loopback redirect of a native app), refreshes tokens (RFC 6749 §6),
// and reads the claims that pick a person's role and session name. `phantom login`,
// `phantom credentials --login` and the console's sign-in use it.
//
// It verifies no token: the ID token it obtains goes to STS AssumeRoleWithWebIdentity,
// which verifies it (internal/oidc) and decides the role with its trust policy; the
// console verifies it too before it trusts the nonce. Claims read here are only a choice
// of which role to ask for and what to call the session.
//
// Every document from the provider is outside input, parsed strictly and bounded in size
// (ParseDiscovery, ParseDeviceAuthorization, ParseToken, Claims; each fuzzed). Endpoints
// must be https, or http to a loopback address (a provider on the same machine).
package sso

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"github.com/phantom-perimeter/phantom/internal/oidc"
)

// maxDocument bounds every response read from the provider: real discovery documents and
// token responses are a few kilobytes.
const maxDocument = 64 << 10

// DefaultHTTPTimeout bounds one request to the provider.
const DefaultHTTPTimeout = 15 * time.Second

// Provider is the provider's issuer and the endpoints sign-in uses.
type Provider struct {
	Issuer                string
	AuthorizationEndpoint string
	TokenEndpoint         string
	// DeviceAuthorizationEndpoint is "" when the provider has no device grant.
	DeviceAuthorizationEndpoint string
}

// discovery is the part of an OpenID Provider Metadata document sign-in reads.
type discovery struct {
	Issuer                        string   `json:"issuer"`
	AuthorizationEndpoint         string   `json:"authorization_endpoint"`
	TokenEndpoint                 string   `json:"token_endpoint"`
	DeviceAuthorizationEndpoint   string   `json:"device_authorization_endpoint"`
	CodeChallengeMethodsSupported []string `json:"code_challenge_methods_supported"`
}

// ParseDiscovery reads a discovery document of issuer. Its issuer must be issuer exactly
// (OpenID Connect Discovery §4.3: otherwise another provider's endpoints could be
// substituted), the authorization and token endpoints must be there, every endpoint must
// be https or loopback http, and a provider that lists its PKCE methods must list S256.
func ParseDiscovery(body []byte, issuer string) (*Provider, error) {
	var d discovery
	if err := decodeObject(body, &d); err != nil {
		return nil, fmt.Errorf("discovery document: %w", err)
	}
	if d.Issuer != issuer {
		return nil, fmt.Errorf("discovery document names issuer %q, not %q", printable(d.Issuer), issuer)
	}
	if d.AuthorizationEndpoint == "" || d.TokenEndpoint == "" {
		return nil, errors.New("discovery document has no authorization_endpoint or token_endpoint")
	}
	for name, u := range map[string]string{"authorization_endpoint": d.AuthorizationEndpoint, "token_endpoint": d.TokenEndpoint, "device_authorization_endpoint": d.DeviceAuthorizationEndpoint} {
		if u == "" {
			continue
		}
		if err := CheckURL(u); err != nil {
			return nil, fmt.Errorf("discovery document: %s: %w", name, err)
		}
	}
	if d.CodeChallengeMethodsSupported != nil && !contains(d.CodeChallengeMethodsSupported, "S256") {
		return nil, errors.New("the provider does not support PKCE with S256 (code_challenge_methods_supported)")
	}
	return &Provider{
		Issuer:                      d.Issuer,
		AuthorizationEndpoint:       d.AuthorizationEndpoint,
		TokenEndpoint:               d.TokenEndpoint,
		DeviceAuthorizationEndpoint: d.DeviceAuthorizationEndpoint,
	}, nil
}

// Discover fetches and parses issuer's discovery document.
func Discover(ctx context.Context, hc *http.Client, issuer string) (*Provider, error) {
	if err := CheckURL(issuer); err != nil {
		return nil, fmt.Errorf("issuer: %w", err)
	}
	u := strings.TrimSuffix(issuer, "/") + "/.well-known/openid-configuration"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	status, body, err := do(hc, req)
	if err != nil {
		return nil, fmt.Errorf("fetch %s: %w", u, err)
	}
	if status != http.StatusOK {
		return nil, fmt.Errorf("fetch %s: status %d", u, status)
	}
	p, err := ParseDiscovery(body, issuer)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", u, err)
	}
	return p, nil
}

// CheckURL accepts an absolute https URL, or http to a loopback address, without
// credentials or a fragment: where tokens and codes may be sent.
func CheckURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || !u.IsAbs() || u.Host == "" {
		return fmt.Errorf("%q is not an absolute URL", printable(raw))
	}
	if u.User != nil || u.Fragment != "" {
		return fmt.Errorf("%q holds credentials or a fragment", printable(raw))
	}
	switch {
	case u.Scheme == "https":
	case u.Scheme == "http" && isLoopback(u.Hostname()):
	default:
		return fmt.Errorf("%q is not https (plain http only to a loopback address)", printable(raw))
	}
	return nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.IsLoopback()
}

// NewHTTPClient returns a client for the provider: TLS 1.2 or later, roots (nil: the
// system's), DefaultHTTPTimeout, and redirects held to CheckURL (at most 3).
func NewHTTPClient(roots *x509.CertPool) *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: roots}
	return &http.Client{
		Transport: t,
		Timeout:   DefaultHTTPTimeout,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) >= 3 {
				return errors.New("more than 3 redirects")
			}
			return CheckURL(req.URL.String())
		},
	}
}

// do sends req and reads at most maxDocument bytes of the answer.
func do(hc *http.Client, req *http.Request) (int, []byte, error) {
	if hc == nil {
		hc = NewHTTPClient(nil)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxDocument+1))
	if err != nil {
		return 0, nil, err
	}
	if len(body) > maxDocument {
		return 0, nil, fmt.Errorf("response larger than %d bytes", maxDocument)
	}
	return resp.StatusCode, body, nil
}

// decodeObject decodes one bounded JSON object strictly (oidc.DecodeObject).
func decodeObject(b []byte, v any) error {
	if len(b) > maxDocument {
		return fmt.Errorf("larger than %d bytes", maxDocument)
	}
	return oidc.DecodeObject(b, v)
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// printable shortens outside text for an error message and keeps it printable.
func printable(s string) string {
	if len(s) > 128 {
		s = s[:128] + "…"
	}
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return '?'
		}
		return r
	}, strings.ToValidUTF8(s, "?"))
}
