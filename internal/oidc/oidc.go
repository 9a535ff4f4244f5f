// Package oidc verifies OpenID Connect ID tokens (and other JWTs from OIDC providers) for
// STS AssumeRoleWithWebIdentity: compact JWS signatures against the provider's JWKS, and
// the iss, aud, exp, nbf and iat claims, with AWS's error codes and messages. It owns
// discovery and the per-provider key cache, and turns a verified token into an Identity and
// the condition keys AWS defines for web identity federation (<provider>:sub, :aud, :amr,
// aws:FederatedProvider).
//
// It does not own trust policies, roles or sessions (internal/sts evaluates the role's
// trust policy with the keys this package fills in) nor the list of providers
// (internal/config). It uses only the standard library's crypto: no JWT library stands
// between a token and the decision.
//
// Decisions, each a deliberate choice:
//   - Algorithms: RS256/384/512, PS256/384/512, ES256, ES384. "none", HS* and anything
//     else are refused before a key is looked up; a key is used only when its kty (and
//     curve) fit the algorithm and its own alg, if it names one, is the token's.
//   - Keys come only from the provider's JWKS (the configured jwksUrl, or jwks_uri from
//     {issuer}/.well-known/openid-configuration). Header parameters jku, jwk, x5u and x5c
//     are ignored. A discovery document whose issuer is not the provider's URL is refused;
//     its jwks_uri may be on another host (Google's is) but must be https.
//   - Transport: https only. http is allowed to loopback addresses only when
//     Config.AllowInsecureLoopback is set (tests and local development).
//   - The JWKS is cached for JWKSTTL (default 1h) and refetched early when a token names an
//     unknown kid, at most once per MinRefetchInterval (default 1m) per provider, so tokens
//     with made-up kids cannot make Phantom fetch on every request. A failed fetch fails
//     closed: keys older than the TTL are never used, and the failure is remembered for
//     MinRefetchInterval.
//   - Time: exp is required and must be after now-Leeway; nbf and iat must not be after
//     now+Leeway. Leeway defaults to 60s (clock skew between the provider and Phantom; AWS
//     does not publish its own). A token whose exp is more than MaxTokenLifetime (default
//     24h) after its iat, or after now when it has no iat, is refused: providers issue
//     tokens for minutes to hours, and a token valid for days is a stolen-token risk.
//   - Audience: aud (a string or an array) must contain one of the provider's client ids.
//     azp is not accepted in place of aud: AWS documents azp only for Google's tokens,
//     and OpenID Connect Core §2 says aud must contain the client id anyway. The token's
//     azp is still returned in the Identity.
package oidc

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/phantom-perimeter/phantom/internal/config"
	"github.com/phantom-perimeter/phantom/internal/policy"
)

// Defaults, documented on Config.
const (
	DefaultLeeway             = 60 * time.Second
	DefaultMaxTokenSize       = 20000
	DefaultJWKSTTL            = time.Hour
	DefaultMinRefetchInterval = time.Minute
	DefaultMaxTokenLifetime   = 24 * time.Hour
	DefaultHTTPTimeout        = 10 * time.Second
)

// minTokenSize is the API's lower length bound on WebIdentityToken.
const minTokenSize = 4

// maxSubject is the longest sub accepted: SubjectFromWebIdentityToken, which echoes it in
// the AssumeRoleWithWebIdentity response, is at most 255 characters.
const maxSubject = 255

// Config configures a Verifier. Zero values take the defaults.
type Config struct {
	// Providers are the OIDC providers of the perimeter spec (config.Spec.OIDCProviders).
	Providers []*config.OIDCProvider
	// HTTPClient fetches discovery documents and JWKS. nil means a client with
	// DefaultHTTPTimeout and TLS 1.2 or later. A given client is copied; its redirect policy
	// is replaced by one that keeps to the transport rule (https, at most 3 redirects), and a
	// zero Timeout becomes DefaultHTTPTimeout.
	HTTPClient *http.Client
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Leeway is the clock skew tolerated on exp, nbf and iat (default 60s, at most 5m).
	Leeway time.Duration
	// MaxTokenSize is the largest token accepted, in bytes (default 20,000: the
	// WebIdentityToken length limit of AssumeRoleWithWebIdentity).
	MaxTokenSize int
	// JWKSTTL is how long fetched keys are used before a refetch (default 1h).
	JWKSTTL time.Duration
	// MinRefetchInterval is the least time between two fetches for one provider, whether
	// for an unknown kid or after a failure (default 1m; at most JWKSTTL).
	MinRefetchInterval time.Duration
	// MaxTokenLifetime bounds exp-iat (default 24h).
	MaxTokenLifetime time.Duration
	// AllowInsecureLoopback lets issuers and JWKS URLs use plain http to loopback
	// addresses. For tests and local development only.
	AllowInsecureLoopback bool
	// Logger receives fetch failures; nil discards them.
	Logger *slog.Logger
}

// provider is a configured provider, checked and normalised by New.
type provider struct {
	url       string // the issuer, without a trailing slash
	name      string // host+path, as AWS names the provider
	arn       string
	clientIDs []string
	jwksURL   string
}

// Verifier verifies web identity tokens. It is safe for concurrent use. The perimeter
// builds a new Verifier when the spec's providers change; keys are then fetched afresh.
type Verifier struct {
	providers             map[string]*source // by issuer URL
	client                *http.Client
	now                   func() time.Time
	leeway                time.Duration
	maxTokenSize          int
	jwksTTL               time.Duration
	minRefetch            time.Duration
	maxLifetime           time.Duration
	allowInsecureLoopback bool
	log                   *slog.Logger
}

// New checks cfg and returns a Verifier. It fetches nothing: keys are fetched on the first
// token of each provider.
func New(cfg Config) (*Verifier, error) {
	v := &Verifier{
		providers:             make(map[string]*source, len(cfg.Providers)),
		now:                   cfg.Now,
		leeway:                cfg.Leeway,
		maxTokenSize:          cfg.MaxTokenSize,
		jwksTTL:               cfg.JWKSTTL,
		minRefetch:            cfg.MinRefetchInterval,
		maxLifetime:           cfg.MaxTokenLifetime,
		allowInsecureLoopback: cfg.AllowInsecureLoopback,
		log:                   cfg.Logger,
	}
	if v.now == nil {
		v.now = time.Now
	}
	if v.log == nil {
		v.log = slog.New(slog.DiscardHandler)
	}
	if v.leeway == 0 {
		v.leeway = DefaultLeeway
	}
	if v.maxTokenSize == 0 {
		v.maxTokenSize = DefaultMaxTokenSize
	}
	if v.jwksTTL == 0 {
		v.jwksTTL = DefaultJWKSTTL
	}
	if v.minRefetch == 0 {
		v.minRefetch = min(DefaultMinRefetchInterval, v.jwksTTL)
	}
	if v.maxLifetime == 0 {
		v.maxLifetime = DefaultMaxTokenLifetime
	}
	switch {
	case v.leeway < 0 || v.leeway > 5*time.Minute:
		return nil, fmt.Errorf("oidc: leeway %v is not between 0 and 5m", v.leeway)
	case v.maxTokenSize < minTokenSize:
		return nil, fmt.Errorf("oidc: max token size %d is too small", v.maxTokenSize)
	case v.jwksTTL < 0 || v.minRefetch < 0 || v.minRefetch > v.jwksTTL:
		return nil, fmt.Errorf("oidc: JWKS TTL %v and refetch interval %v: want 0 <= interval <= TTL", v.jwksTTL, v.minRefetch)
	case v.maxLifetime < 0:
		return nil, fmt.Errorf("oidc: max token lifetime %v is negative", v.maxLifetime)
	}
	v.client = v.httpClient(cfg.HTTPClient)
	for _, cp := range cfg.Providers {
		p, err := v.provider(cp)
		if err != nil {
			return nil, err
		}
		if _, dup := v.providers[p.url]; dup {
			return nil, fmt.Errorf("oidc: provider %s is configured twice", p.url)
		}
		v.providers[p.url] = &source{p: p, v: v}
	}
	return v, nil
}

func (v *Verifier) provider(cp *config.OIDCProvider) (*provider, error) {
	if cp == nil {
		return nil, errors.New("oidc: nil provider")
	}
	u, err := v.checkURL(cp.URL)
	if err != nil {
		return nil, fmt.Errorf("oidc: provider URL: %w", err)
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("oidc: provider URL %s has a query or fragment", cp.URL)
	}
	p := &provider{
		url:       strings.TrimSuffix(cp.URL, "/"),
		name:      u.Host + strings.TrimSuffix(u.Path, "/"),
		arn:       cp.ARN,
		clientIDs: slices.Clone(cp.ClientIDs),
		jwksURL:   cp.JWKSURL,
	}
	if cp.Name != "" && cp.Name != p.name {
		return nil, fmt.Errorf("oidc: provider %s is named %q, want %q", cp.URL, cp.Name, p.name)
	}
	if !strings.HasPrefix(p.arn, "arn:") || !strings.HasSuffix(p.arn, ":oidc-provider/"+p.name) {
		return nil, fmt.Errorf("oidc: provider %s has ARN %q, want arn:...:oidc-provider/%s", cp.URL, cp.ARN, p.name)
	}
	if len(p.clientIDs) == 0 || slices.Contains(p.clientIDs, "") {
		return nil, fmt.Errorf("oidc: provider %s has no client ids (or an empty one)", cp.URL)
	}
	if p.jwksURL != "" {
		if _, err := v.checkURL(p.jwksURL); err != nil {
			return nil, fmt.Errorf("oidc: provider %s: JWKS URL: %w", cp.URL, err)
		}
	}
	return p, nil
}

// httpClient copies c (or builds a client) with the redirect rule and a timeout.
func (v *Verifier) httpClient(c *http.Client) *http.Client {
	var out http.Client
	if c != nil {
		out = *c
	} else {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
		out.Transport = t
	}
	if out.Timeout == 0 {
		out.Timeout = DefaultHTTPTimeout
	}
	out.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		if len(via) >= 3 {
			return errors.New("more than 3 redirects")
		}
		if _, err := v.checkURL(req.URL.String()); err != nil {
			return fmt.Errorf("redirect: %w", err)
		}
		return nil
	}
	return &out
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.IsLoopback()
}

// Identity is a verified web identity token.
type Identity struct {
	// Issuer is the token's iss: the provider's URL.
	Issuer string
	// Provider is the provider's name as AWS writes it in ARNs and condition keys: the URL
	// without its scheme ("token.actions.githubusercontent.com").
	Provider string
	// ProviderARN is arn:aws:iam::ACCOUNT:oidc-provider/PROVIDER.
	ProviderARN string
	// Subject is the token's sub.
	Subject string
	// Audience is the provider's client id the token's aud matched: the value AWS returns
	// as Audience in the AssumeRoleWithWebIdentity response and as <provider>:aud.
	Audience string
	// Audiences are all of the token's aud values.
	Audiences []string
	// AuthorizedParty is the token's azp, when it has one.
	AuthorizedParty string
	// AMR is the token's amr (authentication methods references), when it has one.
	AMR []string
	// Claims are all of the token's claims, numbers as json.Number.
	Claims map[string]any
	// Expiry is the token's exp; IssuedAt its iat (zero when absent).
	Expiry, IssuedAt time.Time
	// KeyID and Algorithm say which key verified the token (for audit).
	KeyID, Algorithm string
}

// Verify checks token and returns the identity it proves. Every failure is an *Error with
// the code AWS returns for it.
func (v *Verifier) Verify(ctx context.Context, token string) (*Identity, error) {
	if len(token) < minTokenSize || len(token) > v.maxTokenSize {
		return nil, &Error{Code: CodeValidationError, Message: fmt.Sprintf(
			"1 validation error detected: Value at 'webIdentityToken' failed to satisfy constraint: Member must have length between %d and %d",
			minTokenSize, v.maxTokenSize)}
	}
	t, err := parseJWS(token)
	if err != nil {
		return nil, err
	}
	claims := map[string]any{}
	if err := DecodeObject(t.payload, &claims); err != nil {
		return nil, malformed("claims: %w", err)
	}
	iss, ok := claims["iss"].(string)
	if !ok || iss == "" {
		return nil, malformed("no iss claim")
	}
	src, ok := v.providers[iss]
	if !ok {
		// AWS's message; iss is the caller's own input, shortened.
		return nil, invalid("No OpenIDConnect provider found in your account for "+printable(iss), nil)
	}
	keys, err := src.keysFor(ctx, t.header.Kid, t.alg)
	if err != nil {
		return nil, err
	}
	var kid string
	verr := errors.New("no key")
	for _, k := range keys {
		if verr = t.verify(k); verr == nil {
			kid = k.kid
			break
		}
	}
	if verr != nil {
		return nil, invalid(msgSignature, verr)
	}
	// The signature is good: from here on the claims are the provider's.
	id, err := v.claims(src.p, claims)
	if err != nil {
		return nil, err
	}
	id.KeyID, id.Algorithm = kid, t.alg.name
	return id, nil
}

// claims checks the registered claims (RFC 7519 §4.1) of a token whose signature verified.
func (v *Verifier) claims(p *provider, claims map[string]any) (*Identity, error) {
	now := v.now()
	exp, ok, err := numericDate(claims, "exp")
	if err != nil {
		return nil, malformed("%w", err)
	}
	if !ok {
		return nil, rejected("Missing a required claim: exp")
	}
	if !now.Before(exp.Add(v.leeway)) {
		return nil, expired(now, exp)
	}
	nbf, ok, err := numericDate(claims, "nbf")
	if err != nil {
		return nil, malformed("%w", err)
	}
	if ok && nbf.After(now.Add(v.leeway)) {
		return nil, invalid(fmt.Sprintf("Token is not yet valid: current date/time %d must be after the not-before date/time %d", now.Unix(), nbf.Unix()), nil)
	}
	iat, hasIat, err := numericDate(claims, "iat")
	if err != nil {
		return nil, malformed("%w", err)
	}
	if hasIat && iat.After(now.Add(v.leeway)) {
		return nil, invalid(fmt.Sprintf("Token was issued in the future: current date/time %d, issued-at date/time %d", now.Unix(), iat.Unix()), nil)
	}
	start := now
	if hasIat {
		start = iat
	}
	if exp.Sub(start) > v.maxLifetime {
		return nil, rejected(fmt.Sprintf("Token lifetime exceeds the maximum of %d seconds", int64(v.maxLifetime/time.Second)))
	}
	auds, err := stringOrArray(claims, "aud")
	if err != nil {
		return nil, malformed("%w", err)
	}
	audience := ""
	for _, a := range auds {
		if matchClientID(p.clientIDs, a) {
			audience = a
			break
		}
	}
	if audience == "" {
		return nil, invalid(msgAudience, nil)
	}
	sub, _ := claims["sub"].(string)
	if sub == "" {
		return nil, rejected("Missing a required claim: sub")
	}
	if len(sub) > maxSubject {
		return nil, rejected(fmt.Sprintf("The sub claim is longer than %d characters", maxSubject))
	}
	amr, err := stringOrArray(claims, "amr")
	if err != nil {
		return nil, malformed("%w", err)
	}
	azp, _ := claims["azp"].(string)
	return &Identity{
		Issuer:          p.url,
		Provider:        p.name,
		ProviderARN:     p.arn,
		Subject:         sub,
		Audience:        audience,
		Audiences:       auds,
		AuthorizedParty: azp,
		AMR:             amr,
		Claims:          claims,
		Expiry:          exp,
		IssuedAt:        iat,
	}, nil
}

// matchClientID compares an audience with the configured client ids. Client ids are not
// secrets, but the comparison is constant-time anyway so its timing says nothing about
// how much of a guessed id was right.
func matchClientID(ids []string, aud string) bool {
	found := false
	for _, id := range ids {
		if constantTimeEqual(id, aud) {
			found = true
		}
	}
	return found
}

// numericDate reads a NumericDate claim (RFC 7519 §2): seconds since the epoch, possibly
// fractional.
func numericDate(claims map[string]any, name string) (time.Time, bool, error) {
	raw, ok := claims[name]
	if !ok {
		return time.Time{}, false, nil
	}
	n, ok := raw.(json.Number)
	if !ok {
		return time.Time{}, false, fmt.Errorf("claim %s is not a number", name)
	}
	f, err := n.Float64()
	// Beyond year 9999 is not a date any provider means; it is an attempt to overflow.
	if err != nil || math.IsNaN(f) || f < 0 || f > 253402300799 {
		return time.Time{}, false, fmt.Errorf("claim %s is not a date", name)
	}
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(frac*1e9)).UTC(), true, nil
}

// stringOrArray reads a claim that is a string or an array of strings (aud, RFC 7519
// §4.1.3; amr, OpenID Connect Core §2).
func stringOrArray(claims map[string]any, name string) ([]string, error) {
	switch v := claims[name].(type) {
	case nil:
		if _, present := claims[name]; present {
			return nil, fmt.Errorf("claim %s is null", name)
		}
		return nil, nil
	case string:
		return []string{v}, nil
	case []any:
		out := make([]string, 0, len(v))
		for _, e := range v {
			s, ok := e.(string)
			if !ok {
				return nil, fmt.Errorf("claim %s holds a non-string", name)
			}
			out = append(out, s)
		}
		return out, nil
	default:
		return nil, fmt.Errorf("claim %s is neither a string nor an array", name)
	}
}

// Condition keys AWS defines for AssumeRoleWithWebIdentity ("Available keys for AWS web
// identity federation" and "AWS global condition context keys", IAM User Guide).
const (
	KeyFederatedProvider = "aws:FederatedProvider"
)

// ConditionKeys returns the condition keys a role's trust policy sees for this identity:
// <provider>:sub, <provider>:aud (the matched client id), <provider>:amr when the token has
// amr (multivalued, for ForAnyValue:StringLike), and aws:FederatedProvider (the provider's
// ARN). The <provider>:oaud key AWS documents exists only for Google's tokens and is not
// set.
func (id *Identity) ConditionKeys() map[string][]string {
	m := map[string][]string{
		id.Provider + ":sub": {id.Subject},
		id.Provider + ":aud": {id.Audience},
		KeyFederatedProvider: {id.ProviderARN},
	}
	if id.AMR != nil {
		m[id.Provider+":amr"] = slices.Clone(id.AMR)
	}
	return m
}

// SetConditionKeys sets ConditionKeys into c, replacing any values the keys had.
func (id *Identity) SetConditionKeys(c *policy.Context) {
	for k, v := range id.ConditionKeys() {
		c.Set(k, v...)
	}
}
