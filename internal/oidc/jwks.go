package oidc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Bounds on what a provider may send. Real documents are a few kilobytes (Google's JWKS is
// about 2 KiB); the bounds keep a hostile or broken provider from exhausting memory.
const (
	maxDiscoveryBytes = 64 << 10
	maxJWKSBytes      = 256 << 10
	maxJWKSKeys       = 100
)

// keySet is an immutable snapshot of one provider's keys and of the last fetch attempt.
// Readers load it with an atomic pointer and never lock.
type keySet struct {
	keys      []*jwk    // from the last successful fetch; nil before one
	fetchedAt time.Time // of the last successful fetch
	attempt   time.Time // of the last fetch attempt, successful or not
	err       error     // of the last attempt; nil when it succeeded
}

// source fetches and caches the signing keys of one provider.
type source struct {
	p  *provider
	v  *Verifier
	mu sync.Mutex // serialises fetches; readers do not take it
	ks atomic.Pointer[keySet]
}

// keysFor returns the keys that may verify a token with this kid and alg, fetching the JWKS
// when the cache is empty or stale, or (at most once per MinRefetchInterval) when the kid
// is unknown.
func (s *source) keysFor(ctx context.Context, kid string, alg *algorithm) ([]*jwk, error) {
	now := s.v.now()
	ks := s.ks.Load()
	if s.fresh(ks, now) {
		if keys := match(ks.keys, kid, alg); len(keys) > 0 {
			return keys, nil
		}
	}
	if ks != nil && now.Sub(ks.attempt) < s.v.minRefetch {
		// Fetched (or failed to) a moment ago: do not let tokens with made-up kids turn
		// Phantom into a request amplifier against the provider.
		if !s.fresh(ks, now) {
			return nil, commErr(ks.err)
		}
		return nil, invalid(msgNoKey, fmt.Errorf("no key with kid %q for %s", printable(kid), alg.name))
	}
	ks, err := s.refresh(ctx, ks)
	if err != nil {
		return nil, err
	}
	if keys := match(ks.keys, kid, alg); len(keys) > 0 {
		return keys, nil
	}
	return nil, invalid(msgNoKey, fmt.Errorf("no key with kid %q for %s after refetching the JWKS", printable(kid), alg.name))
}

func (s *source) fresh(ks *keySet, now time.Time) bool {
	return ks != nil && ks.keys != nil && now.Sub(ks.fetchedAt) < s.v.jwksTTL
}

func commErr(cause error) *Error {
	if cause == nil {
		cause = errors.New("signing keys expired from the cache")
	}
	return &Error{Code: CodeIDPCommunicationError, Message: msgIDPDown, Err: cause}
}

// match picks the keys for kid that fit alg. A token without kid may use the set's key only
// when exactly one key fits: trying every key would let a token pick among keys meant for
// different things.
func match(keys []*jwk, kid string, alg *algorithm) []*jwk {
	var out []*jwk
	for _, k := range keys {
		if (kid == "" || k.kid == kid) && k.usableFor(alg) {
			out = append(out, k)
		}
	}
	if kid == "" && len(out) > 1 {
		return nil
	}
	return out
}

// refresh fetches the JWKS unless another request already did since seen was loaded.
func (s *source) refresh(ctx context.Context, seen *keySet) (*keySet, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if cur := s.ks.Load(); cur != seen {
		if cur.err != nil && !s.fresh(cur, s.v.now()) {
			return nil, commErr(cur.err)
		}
		return cur, nil
	}
	// The fetch outlives the request that triggered it: a caller hanging up must not be
	// remembered as the provider failing (the HTTP client's timeout still bounds it).
	keys, err := s.fetch(context.WithoutCancel(ctx))
	now := s.v.now()
	next := &keySet{attempt: now, err: err}
	if err != nil {
		s.v.log.Warn("oidc jwks fetch failed", "provider", s.p.name, "error", err)
		if seen != nil {
			// Keys still within their TTL stay usable; stale ones are not (fail closed).
			next.keys, next.fetchedAt = seen.keys, seen.fetchedAt
		}
		s.ks.Store(next)
		if !s.fresh(next, now) {
			return nil, commErr(err)
		}
		return next, nil
	}
	next.keys, next.fetchedAt = keys, now
	s.ks.Store(next)
	return next, nil
}

// fetch resolves the JWKS URL (configured, or by OpenID Connect Discovery 1.0 §4) and
// fetches and parses the key set.
func (s *source) fetch(ctx context.Context) ([]*jwk, error) {
	jwksURL := s.p.jwksURL
	if jwksURL == "" {
		u, err := s.discover(ctx)
		if err != nil {
			return nil, err
		}
		jwksURL = u
	}
	body, err := s.v.get(ctx, jwksURL, maxJWKSBytes)
	if err != nil {
		return nil, fmt.Errorf("fetch JWKS: %w", err)
	}
	var set struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := DecodeObject(body, &set); err != nil {
		return nil, fmt.Errorf("parse JWKS from %s: %w", jwksURL, err)
	}
	if len(set.Keys) > maxJWKSKeys {
		return nil, fmt.Errorf("JWKS from %s has %d keys, more than %d", jwksURL, len(set.Keys), maxJWKSKeys)
	}
	keys := make([]*jwk, 0, len(set.Keys))
	for i, raw := range set.Keys {
		var r rawJWK
		if err := json.Unmarshal(raw, &r); err != nil {
			s.v.log.Debug("oidc jwk skipped", "provider", s.p.name, "index", i, "error", err)
			continue
		}
		k, err := parseJWK(&r)
		if err != nil {
			s.v.log.Debug("oidc jwk skipped", "provider", s.p.name, "kid", r.Kid, "error", err)
			continue
		}
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("JWKS from %s has no usable signing key", jwksURL)
	}
	return keys, nil
}

// discover reads the provider's discovery document and returns its jwks_uri. The document's
// issuer must equal the provider's URL (OpenID Connect Discovery 1.0 §4.3), so a document
// served for another issuer is not trusted. jwks_uri may name another host (Google's issuer
// accounts.google.com publishes keys at www.googleapis.com): the document came over TLS
// from the issuer itself, which is what makes it authoritative. It must still be https (or
// loopback http when AllowInsecureLoopback is set).
func (s *source) discover(ctx context.Context) (string, error) {
	u := s.p.url + "/.well-known/openid-configuration"
	body, err := s.v.get(ctx, u, maxDiscoveryBytes)
	if err != nil {
		return "", fmt.Errorf("fetch discovery document: %w", err)
	}
	var doc struct {
		Issuer  string `json:"issuer"`
		JWKSURI string `json:"jwks_uri"`
	}
	if err := DecodeObject(body, &doc); err != nil {
		return "", fmt.Errorf("parse discovery document %s: %w", u, err)
	}
	if strings.TrimSuffix(doc.Issuer, "/") != s.p.url {
		return "", fmt.Errorf("discovery document %s names issuer %q, not %q", u, printable(doc.Issuer), s.p.url)
	}
	if doc.JWKSURI == "" {
		return "", fmt.Errorf("discovery document %s has no jwks_uri", u)
	}
	if _, err := s.v.checkURL(doc.JWKSURI); err != nil {
		return "", fmt.Errorf("discovery document %s: jwks_uri: %w", u, err)
	}
	return doc.JWKSURI, nil
}

// get fetches u with a bounded body. Anything but 200 is an error.
func (v *Verifier) get(ctx context.Context, u string, max int64) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := v.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: HTTP %d", u, resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, max+1))
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", u, err)
	}
	if int64(len(body)) > max {
		return nil, fmt.Errorf("GET %s: response larger than %d bytes", u, max)
	}
	return body, nil
}

// checkURL enforces the transport rule for every URL Phantom fetches keys from: https, or
// http to a loopback address when AllowInsecureLoopback is set; no credentials.
func (v *Verifier) checkURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, err
	}
	if u.Host == "" || !u.IsAbs() {
		return nil, fmt.Errorf("%q is not an absolute URL", printable(raw))
	}
	if u.User != nil {
		return nil, fmt.Errorf("%q holds credentials", printable(raw))
	}
	switch {
	case u.Scheme == "https":
	case u.Scheme == "http" && v.allowInsecureLoopback && isLoopback(u.Hostname()):
	default:
		return nil, fmt.Errorf("%q is not https", printable(raw))
	}
	return u, nil
}
