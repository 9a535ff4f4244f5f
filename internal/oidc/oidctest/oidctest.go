// Package oidctest runs an OpenID Connect issuer for tests: an httptest TLS server that
// serves a discovery document and a JWKS of keys generated in the test, and mints tokens
// signed with them. STS tests and the AWS CLI's assume-role-with-web-identity test use it
// as the identity provider; internal/oidc's own tests use its knobs (rotation, outages,
// hostile documents) to exercise every denial.
//
// It is test support only: keys are generated per issuer and never leave the process.
package oidctest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/phantom-perimeter/phantom/internal/config"
)

// Defaults of Options.
const (
	DefaultAccount  = "123456789012"
	DefaultClientID = "sts.amazonaws.com"
)

// Options configures Start. Zero values take the defaults.
type Options struct {
	// Path is the issuer URL's path ("/org/tenant"); empty means the server's root.
	Path string
	// Alg is the first signing key's algorithm (default RS256).
	Alg string
	// ClientIDs are the audiences of the returned Provider (default sts.amazonaws.com).
	ClientIDs []string
	// Account is the account id in the Provider's ARN (default 123456789012).
	Account string
	// JWKSPath is where the JWKS is served (default /jwks.json under Path).
	JWKSPath string
	// PlainHTTP serves over http on loopback instead of https, for a Phantom process that
	// cannot be given the test certificate (the verifier then needs AllowInsecureLoopback).
	PlainHTTP bool
}

// Key is a signing key of the issuer.
type Key struct {
	ID   string
	Alg  string
	priv crypto.Signer
}

// Public returns the key's public half.
func (k *Key) Public() crypto.PublicKey { return k.priv.Public() }

// JWK returns the public key as a JWK (RFC 7517), with kid, use and alg.
func (k *Key) JWK() map[string]any {
	m := map[string]any{"kid": k.ID, "use": "sig", "alg": k.Alg}
	switch pub := k.priv.Public().(type) {
	case *rsa.PublicKey:
		m["kty"] = "RSA"
		m["n"] = b64(pub.N.Bytes())
		m["e"] = b64(big.NewInt(int64(pub.E)).Bytes())
	case *ecdsa.PublicKey:
		size := (pub.Curve.Params().BitSize + 7) / 8
		raw, err := pub.Bytes()
		if err != nil {
			panic(err)
		}
		m["kty"] = "EC"
		m["crv"] = pub.Curve.Params().Name
		m["x"] = b64(raw[1 : 1+size])
		m["y"] = b64(raw[1+size:])
	}
	return m
}

// Issuer is a running test OIDC issuer.
type Issuer struct {
	// URL is the issuer: tokens' iss.
	URL string
	// Server is the TLS server; its Client trusts its certificate.
	Server *httptest.Server

	opts Options
	seq  atomic.Int64

	mu        sync.Mutex
	keys      []*Key // published in the JWKS
	signing   *Key
	jwks      []byte               // when set, served instead of the keys
	discovery func(map[string]any) // edits the discovery document
	status    int                  // when non-zero, every response has this status

	jwksRequests      atomic.Int64
	discoveryRequests atomic.Int64
}

// Start starts an issuer on 127.0.0.1 and stops it when the test ends.
func Start(t testing.TB, opts Options) *Issuer {
	t.Helper()
	if opts.Alg == "" {
		opts.Alg = "RS256"
	}
	if len(opts.ClientIDs) == 0 {
		opts.ClientIDs = []string{DefaultClientID}
	}
	if opts.Account == "" {
		opts.Account = DefaultAccount
	}
	opts.Path = strings.TrimSuffix(opts.Path, "/")
	if opts.JWKSPath == "" {
		opts.JWKSPath = opts.Path + "/jwks.json"
	}
	is := &Issuer{opts: opts}
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+opts.Path+"/.well-known/openid-configuration", is.serveDiscovery)
	mux.HandleFunc("GET "+opts.JWKSPath, is.serveJWKS)
	if opts.PlainHTTP {
		is.Server = httptest.NewServer(mux)
	} else {
		is.Server = httptest.NewTLSServer(mux)
	}
	t.Cleanup(is.Server.Close)
	is.URL = is.Server.URL + opts.Path
	is.signing = is.AddKey(t, opts.Alg)
	return is
}

// Client returns an HTTP client that trusts the issuer's certificate.
func (is *Issuer) Client() *http.Client { return is.Server.Client() }

// CertPEM returns the issuer's TLS certificate in PEM, for a CA bundle (SSL_CERT_FILE for
// a Phantom process started by the test); nil for a PlainHTTP issuer.
func (is *Issuer) CertPEM() []byte {
	c := is.Server.Certificate()
	if c == nil {
		return nil
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
}

// Provider returns the issuer as the perimeter spec would describe it.
func (is *Issuer) Provider() *config.OIDCProvider {
	name := strings.TrimPrefix(strings.TrimPrefix(is.URL, "https://"), "http://")
	return &config.OIDCProvider{
		URL:       is.URL,
		Name:      name,
		ARN:       "arn:aws:iam::" + is.opts.Account + ":oidc-provider/" + name,
		ClientIDs: append([]string{}, is.opts.ClientIDs...),
	}
}

// JWKSURL is where the issuer serves its JWKS.
func (is *Issuer) JWKSURL() string { return is.Server.URL + is.opts.JWKSPath }

// NewKey generates a key for alg (RS256/384/512, PS256/384/512: RSA 2048; ES256: P-256;
// ES384: P-384) without publishing it.
func (is *Issuer) NewKey(t testing.TB, alg string) *Key {
	t.Helper()
	var priv crypto.Signer
	var err error
	switch alg {
	case "RS256", "RS384", "RS512", "PS256", "PS384", "PS512":
		priv, err = rsa.GenerateKey(rand.Reader, 2048)
	case "ES256":
		priv, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case "ES384":
		priv, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	default:
		t.Fatalf("oidctest: no key generation for alg %q", alg)
	}
	if err != nil {
		t.Fatalf("oidctest: generate %s key: %v", alg, err)
	}
	return &Key{ID: fmt.Sprintf("key-%d", is.seq.Add(1)), Alg: alg, priv: priv}
}

// AddKey generates a key and publishes it in the JWKS; tokens are still signed with the
// current signing key.
func (is *Issuer) AddKey(t testing.TB, alg string) *Key {
	t.Helper()
	k := is.NewKey(t, alg)
	is.mu.Lock()
	defer is.mu.Unlock()
	is.keys = append(is.keys, k)
	return k
}

// Rotate replaces every published key with a new one for alg and signs with it from now on.
func (is *Issuer) Rotate(t testing.TB, alg string) *Key {
	t.Helper()
	k := is.NewKey(t, alg)
	is.mu.Lock()
	defer is.mu.Unlock()
	is.keys = []*Key{k}
	is.signing = k
	return k
}

// SigningKey is the key Mint signs with.
func (is *Issuer) SigningKey() *Key {
	is.mu.Lock()
	defer is.mu.Unlock()
	return is.signing
}

// SetStatus makes every response of the issuer carry status (0 restores normal service),
// to simulate an outage.
func (is *Issuer) SetStatus(status int) {
	is.mu.Lock()
	defer is.mu.Unlock()
	is.status = status
}

// SetJWKS serves raw as the JWKS instead of the published keys (nil restores them).
func (is *Issuer) SetJWKS(raw []byte) {
	is.mu.Lock()
	defer is.mu.Unlock()
	is.jwks = raw
}

// EditDiscovery installs a function that edits the discovery document before it is served.
func (is *Issuer) EditDiscovery(f func(doc map[string]any)) {
	is.mu.Lock()
	defer is.mu.Unlock()
	is.discovery = f
}

// JWKSRequests and DiscoveryRequests count the requests served.
func (is *Issuer) JWKSRequests() int64      { return is.jwksRequests.Load() }
func (is *Issuer) DiscoveryRequests() int64 { return is.discoveryRequests.Load() }

func (is *Issuer) serveDiscovery(w http.ResponseWriter, r *http.Request) {
	is.discoveryRequests.Add(1)
	is.mu.Lock()
	status, edit := is.status, is.discovery
	is.mu.Unlock()
	if status != 0 {
		http.Error(w, http.StatusText(status), status)
		return
	}
	doc := map[string]any{
		"issuer":                                is.URL,
		"jwks_uri":                              is.JWKSURL(),
		"response_types_supported":              []string{"id_token"},
		"subject_types_supported":               []string{"public"},
		"id_token_signing_alg_values_supported": []string{"RS256", "ES256"},
	}
	if edit != nil {
		edit(doc)
	}
	writeJSON(w, doc)
}

func (is *Issuer) serveJWKS(w http.ResponseWriter, r *http.Request) {
	is.jwksRequests.Add(1)
	is.mu.Lock()
	status, raw := is.status, is.jwks
	keys := make([]map[string]any, 0, len(is.keys))
	for _, k := range is.keys {
		keys = append(keys, k.JWK())
	}
	is.mu.Unlock()
	if status != 0 {
		http.Error(w, http.StatusText(status), status)
		return
	}
	if raw != nil {
		w.Header().Set("Content-Type", "application/json")
		w.Write(raw)
		return
	}
	writeJSON(w, map[string]any{"keys": keys})
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}

// Claims returns the claims of a valid token for sub issued at now: iss, sub, aud (the
// first client id), iat, nbf and exp an hour later. Tests edit the map before Mint.
func (is *Issuer) Claims(sub string, now time.Time) map[string]any {
	return map[string]any{
		"iss": is.URL,
		"sub": sub,
		"aud": is.opts.ClientIDs[0],
		"iat": now.Unix(),
		"nbf": now.Unix(),
		"exp": now.Add(time.Hour).Unix(),
	}
}

// Mint signs claims with the current signing key.
func (is *Issuer) Mint(t testing.TB, claims map[string]any) string {
	t.Helper()
	k := is.SigningKey()
	return Sign(t, k, map[string]any{"alg": k.Alg, "typ": "JWT", "kid": k.ID}, claims)
}

// Sign makes a compact JWS of claims under header, signed by k with header's alg (which
// need not be k's: tests use that to forge mismatches). alg "none" gives an empty
// signature; HS256/384/512 use the key's public key in its PKIX DER form as the HMAC secret,
// the classic algorithm-confusion forgery.
func Sign(t testing.TB, k *Key, header, claims map[string]any) string {
	t.Helper()
	h, err := json.Marshal(header)
	if err != nil {
		t.Fatal(err)
	}
	p, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	input := b64(h) + "." + b64(p)
	alg, _ := header["alg"].(string)
	sig, err := signature(k, alg, input)
	if err != nil {
		t.Fatalf("oidctest: sign with %s: %v", alg, err)
	}
	return input + "." + b64(sig)
}

func signature(k *Key, alg, input string) ([]byte, error) {
	if alg == "none" {
		return nil, nil
	}
	var h crypto.Hash
	switch {
	case strings.HasSuffix(alg, "256"):
		h = crypto.SHA256
	case strings.HasSuffix(alg, "384"):
		h = crypto.SHA384
	case strings.HasSuffix(alg, "512"):
		h = crypto.SHA512
	default:
		return nil, fmt.Errorf("alg %q", alg)
	}
	digest := hashOf(h, []byte(input))
	switch {
	case strings.HasPrefix(alg, "HS"):
		der, err := x509.MarshalPKIXPublicKey(k.priv.Public())
		if err != nil {
			return nil, err
		}
		m := hmac.New(h.New, der)
		m.Write([]byte(input))
		return m.Sum(nil), nil
	case strings.HasPrefix(alg, "RS"):
		priv, ok := k.priv.(*rsa.PrivateKey)
		if !ok {
			return nil, fmt.Errorf("%s needs an RSA key", alg)
		}
		return rsa.SignPKCS1v15(rand.Reader, priv, h, digest)
	case strings.HasPrefix(alg, "PS"):
		priv, ok := k.priv.(*rsa.PrivateKey)
		if !ok {
			return nil, fmt.Errorf("%s needs an RSA key", alg)
		}
		return rsa.SignPSS(rand.Reader, priv, h, digest, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash})
	case strings.HasPrefix(alg, "ES"):
		priv, ok := k.priv.(*ecdsa.PrivateKey)
		if !ok {
			return nil, fmt.Errorf("%s needs an EC key", alg)
		}
		r, s, err := ecdsa.Sign(rand.Reader, priv, digest)
		if err != nil {
			return nil, err
		}
		size := (priv.Curve.Params().BitSize + 7) / 8
		out := make([]byte, 2*size)
		r.FillBytes(out[:size])
		s.FillBytes(out[size:])
		return out, nil
	}
	return nil, fmt.Errorf("alg %q", alg)
}

func hashOf(h crypto.Hash, b []byte) []byte {
	switch h {
	case crypto.SHA384:
		d := sha512.Sum384(b)
		return d[:]
	case crypto.SHA512:
		d := sha512.Sum512(b)
		return d[:]
	}
	d := sha256.Sum256(b)
	return d[:]
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }
