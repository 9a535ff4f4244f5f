package gateway

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/phantom-perimeter/phantom/internal/keys"
)

// AssertionVerifierConfig configures NewAssertionVerifier.
type AssertionVerifierConfig struct {
	// Key is the API's key file (phantom keys backend; Gateway.BackendKey): assertions
	// are HS256 under it, for an API with assertion: hs256 (the default).
	Key []byte
	// JWKS is the gateway's key set (https://GATEWAY/.well-known/phantom/jwks.json):
	// assertions are EdDSA, for an API with assertion: eddsa. Exactly one of Key and
	// JWKS is set: the verifier accepts that algorithm only.
	JWKS []byte
	// Audience is the backend's API id: assertions for other APIs are refused.
	Audience string
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// MaxInFlight bounds the replay cache: the assertions seen within their lifetime. Past
	// it new assertions are refused (fail closed) until old ones expire; 0 means
	// DefaultMaxInFlight.
	MaxInFlight int
}

// DefaultMaxInFlight is the default replay cache bound: a million assertions in 35 s,
// some 30,000 requests a second, in a few tens of MiB.
const DefaultMaxInFlight = 1 << 20

// AssertionVerifier checks X-Phantom-Identity assertions for one backend: the MAC under
// the API's key or the signature against the gateway's JWKS (whichever it was configured
// with, never both), the claims, that the assertion is for this very request
// (VerifyRequest), and that it was not used before. It keeps the ids of the assertions it
// accepted until they expire, so a captured assertion replayed to the backend, with the
// same request or another, is refused. It is safe for concurrent use. One verifier per
// backend process: replicas of a backend behind a load balancer each keep their own
// cache, so a replay is refused at the replica that saw the first use.
type AssertionVerifier struct {
	keys verifyKeys
	aud  string
	now  func() time.Time
	max  int

	mu   sync.Mutex
	seen map[string]int64 // jti -> exp + leeway (Unix seconds)
	fifo []seenID         // in the order seen: exp is nearly monotonic (fixed lifetimes)
	head int              // fifo[:head] are forgotten
}

type seenID struct {
	id     string
	expiry int64
}

// NewAssertionVerifier parses the key file or the JWKS and returns a verifier for one API.
func NewAssertionVerifier(cfg AssertionVerifierConfig) (*AssertionVerifier, error) {
	if cfg.Audience == "" {
		return nil, errors.New("gateway: an assertion verifier needs its API id as audience")
	}
	var vk verifyKeys
	switch {
	case cfg.Key != nil && cfg.JWKS != nil:
		return nil, errors.New("gateway: an assertion verifier takes the API's key (HS256) or the gateway's JWKS (EdDSA), not both")
	case cfg.Key != nil:
		k, err := keys.ParseBackendKey(cfg.Key)
		if err != nil {
			return nil, err
		}
		if k.API != cfg.Audience {
			return nil, fmt.Errorf("gateway: the key file is API %s's, not %s's", k.API, cfg.Audience)
		}
		vk = verifyKeys{alg: algHS256, mac: &k, kid: k.KeyID()}
	case cfg.JWKS != nil:
		ed, err := parseJWKS(cfg.JWKS)
		if err != nil {
			return nil, err
		}
		vk = verifyKeys{alg: algEdDSA, ed: ed}
	default:
		return nil, errors.New("gateway: an assertion verifier needs the API's key file or the gateway's JWKS")
	}
	v := &AssertionVerifier{keys: vk, aud: cfg.Audience, now: cfg.Now, max: cfg.MaxInFlight, seen: map[string]int64{}}
	if v.now == nil {
		v.now = time.Now
	}
	if v.max <= 0 {
		v.max = DefaultMaxInFlight
	}
	return v, nil
}

// Verify checks a token's signature and claims and records its first use: a token seen
// before is ErrAssertionReplayed. It does not bind the token to a request; backends call
// VerifyRequest.
func (v *AssertionVerifier) Verify(token string) (*Assertion, error) {
	now := v.now()
	a, err := verifyWith(token, v.keys, v.aud, now)
	if err != nil {
		return nil, err
	}
	if err := v.use(a, now); err != nil {
		return nil, err
	}
	return a, nil
}

// VerifyRequest checks the request's X-Phantom-Identity: signature and claims, that it
// names this request's method, path and query exactly (as received, from the request
// line), and that it was not used before. When the assertion carries the body's hash,
// r.Body is replaced by a reader that fails at its end with ErrAssertionPayload unless the
// body is the one the client signed: read the body through r.Body, to its end, before
// acting on it.
func (v *AssertionVerifier) VerifyRequest(r *http.Request) (*Assertion, error) {
	tokens := r.Header.Values(hdrIdentity)
	if len(tokens) != 1 {
		return nil, fmt.Errorf("%w: the request carries %d %s headers, want 1", ErrAssertionMalformed, len(tokens), hdrIdentity)
	}
	now := v.now()
	a, err := verifyWith(tokens[0], v.keys, v.aud, now)
	if err != nil {
		return nil, err
	}
	path, query := requestTarget(r)
	switch {
	case a.Method != r.Method:
		return nil, fmt.Errorf("%w: method %s, the assertion says %s", ErrAssertionRequest, r.Method, a.Method)
	case a.Path != path:
		return nil, fmt.Errorf("%w: path %q, the assertion says %q", ErrAssertionRequest, truncate(path, 256), truncate(a.Path, 256))
	case a.Query != query:
		return nil, fmt.Errorf("%w: query %q, the assertion says %q", ErrAssertionRequest, truncate(query, 256), truncate(a.Query, 256))
	}
	if err := v.use(a, now); err != nil {
		return nil, err
	}
	if a.PayloadHash != UnsignedPayload {
		var want [sha256.Size]byte
		if len(a.PayloadHash) != hex.EncodedLen(sha256.Size) {
			return nil, fmt.Errorf("%w: payloadHash %q", ErrAssertionClaims, truncate(a.PayloadHash, 80))
		}
		if _, err := hex.Decode(want[:], []byte(a.PayloadHash)); err != nil {
			return nil, fmt.Errorf("%w: payloadHash %q", ErrAssertionClaims, truncate(a.PayloadHash, 80))
		}
		body := r.Body
		if body == nil {
			body = http.NoBody
		}
		r.Body = assertedBody{newHashedBody(body, want)}
	}
	return a, nil
}

// requestTarget is the path and query of the request line, exactly as sent (a client
// request, with no RequestURI, gives its URL's). The gateway sends origin-form; any other
// form names no path an assertion does, and is refused by the comparison.
func requestTarget(r *http.Request) (string, string) {
	if r.RequestURI == "" {
		return r.URL.EscapedPath(), r.URL.RawQuery
	}
	path, query, _ := strings.Cut(r.RequestURI, "?")
	return path, query
}

// use records an assertion's first use, forgetting those past their expiry.
func (v *AssertionVerifier) use(a *Assertion, now time.Time) error {
	t := now.Unix()
	v.mu.Lock()
	defer v.mu.Unlock()
	for v.head < len(v.fifo) && v.fifo[v.head].expiry < t {
		if e := v.fifo[v.head]; v.seen[e.id] == e.expiry {
			delete(v.seen, e.id)
		}
		v.fifo[v.head] = seenID{}
		v.head++
	}
	if v.head > len(v.fifo)/2 {
		v.fifo = append(v.fifo[:0], v.fifo[v.head:]...)
		v.head = 0
	}
	if _, dup := v.seen[a.ID]; dup {
		return fmt.Errorf("%w: jti %s", ErrAssertionReplayed, truncate(a.ID, 64))
	}
	if len(v.seen) >= v.max {
		return fmt.Errorf("%w: %d assertions are in flight (MaxInFlight)", ErrAssertionClaims, v.max)
	}
	exp := a.ExpiresAt + int64(assertionLeeway/time.Second)
	v.seen[a.ID] = exp
	v.fifo = append(v.fifo, seenID{a.ID, exp})
	return nil
}

// assertedBody checks the body against the assertion's payload hash as it is read: the
// gateway's hashedBody, which holds the last byte back until the hash matches (a backend
// never reads a whole body that is not the one the client signed), failing with
// ErrAssertionPayload.
type assertedBody struct{ *hashedBody }

func (b assertedBody) Read(p []byte) (int, error) {
	n, err := b.hashedBody.Read(p)
	if errors.Is(err, errBodyHash) {
		err = ErrAssertionPayload
	}
	return n, err
}
