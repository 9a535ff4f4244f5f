// Package sigv4 owns server-side verification of AWS Signature Version 4: parsing the
// Authorization header and presigned-URL query parameters, canonicalizing a request exactly
// as AWS clients do, deriving and caching signing keys, comparing signatures in constant
// time, and explaining failures with AWS's error codes and texts (including the canonical
// request and string-to-sign on a mismatch).
//
// It does not own credentials: the caller supplies a CredentialSource, and the verifier never
// touches storage. It does not authorize anything either: a verified request says who signed
// it, the policy engine decides what they may do.
//
// References: "Create a signed AWS API request" and "Elements of an AWS API request
// signature" (AWS IAM User Guide), "Authenticating Requests: Using Query Parameters" (Amazon
// S3 API Reference), RFC 3986.
package sigv4

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"
)

// Sentinel errors a CredentialSource returns (wrapped or not).
var (
	// ErrUnknownAccessKey: no credential has this access key id.
	ErrUnknownAccessKey = errors.New("sigv4: unknown access key id")
	// ErrInvalidToken: the session token does not belong to the access key or cannot be opened.
	ErrInvalidToken = errors.New("sigv4: invalid session token")
	// ErrExpiredToken: the credential (or its session token) has expired.
	ErrExpiredToken = errors.New("sigv4: expired session token")
	// ErrAccessDenied: the credential is genuine but may no longer act, as when its role's
	// sessions were revoked ("Revoking IAM role temporary security credentials": AWS denies
	// such a session's calls with AccessDenied rather than rejecting its token).
	ErrAccessDenied = errors.New("sigv4: access denied")
)

const (
	algorithm       = "AWS4-HMAC-SHA256"
	terminator      = "aws4_request"
	unsignedPayload = "UNSIGNED-PAYLOAD"
	iso8601Basic    = "20060102T150405Z"
	yyyymmdd        = "20060102"

	defaultMaxSkew      = 5 * time.Minute
	defaultKeyCacheSize = 4096
	defaultMaxBodyBytes = 10 << 20

	// maxPresignExpires is the longest X-Amz-Expires AWS accepts: seven days
	// ("Authenticating Requests: Using Query Parameters", Amazon S3 API Reference).
	maxPresignExpires = 604800

	// Bounds on attacker-controlled input, checked before any work proportional to it.
	maxAuthorizationLen = 8 << 10  // the header holds a credential scope, a header list and 64 hex digits
	maxSignedHeaders    = 128      // far above what any SDK signs (they sign host, x-amz-*, content-*)
	maxQueryParams      = 1024     // query pairs considered for the canonical query string
	maxCanonicalLen     = 1 << 20  // canonical request size; beyond this we refuse instead of hashing
	maxTokenLen         = 16 << 10 // session tokens are a few KiB at most
)

// Config is what a Verifier checks requests against. It is validated once, by New.
type Config struct {
	Region  string        // expected credential-scope region (required)
	Service string        // expected credential-scope service (required), e.g. "execute-api", "sts"
	MaxSkew time.Duration // allowed clock skew for header-form requests; 0 means the default 5m

	// AllowUnsignedPayload accepts x-amz-content-sha256: UNSIGNED-PAYLOAD, i.e. a signature
	// that does not cover the body. Off by default: the body is then always authenticated.
	AllowUnsignedPayload bool
	// DisablePathNormalization selects S3-style canonical URIs: the path as sent, decoded
	// and encoded once, with no dot-segment removal and no collapsing of slashes.
	DisablePathNormalization bool

	KeyCacheSize int   // bound of the derived signing-key cache; 0 means 4096
	MaxBodyBytes int64 // bound used by helpers that read bodies (ReadBody); 0 means 10 MiB

	Now func() time.Time // clock; nil means time.Now
}

// Credential is what a CredentialSource returns for an access key id.
type Credential struct {
	AccessKeyID     string
	SecretAccessKey string
	// SessionToken, when non-empty, must be carried by the request exactly
	// (X-Amz-Security-Token); compared in constant time.
	SessionToken string
	Principal    string    // ARN of the caller
	Expires      time.Time // zero: never; past: ExpiredToken
}

// CredentialSource is implemented by the caller (identity package, tests). It may return
// ErrUnknownAccessKey, ErrInvalidToken or ErrExpiredToken (wrapped or not); any other error
// fails the request closed as an internal failure.
type CredentialSource interface {
	LookupCredential(ctx context.Context, accessKeyID, sessionToken string) (Credential, error)
}

// Result describes a verified request.
type Result struct {
	AccessKeyID   string
	Credential    Credential
	Region        string
	Service       string
	SignedHeaders []string
	SigningTime   time.Time
	Presigned     bool
	// UnsignedPayload reports that the signature does not cover the body
	// (UNSIGNED-PAYLOAD); callers that need body integrity must check it.
	UnsignedPayload bool
	// Signature is the request's signature (64 hex digits) and Expires when the verifier
	// stops accepting it: the signing time plus the clock skew, or a presigned URL's
	// X-Amz-Expires. A replay guard remembers a signature until then.
	Signature string
	Expires   time.Time
	// payload is PayloadHash's, kept in place so Verify allocates nothing for it.
	payload    [64]byte
	payloadLen int
}

// PayloadHash is the payload hash of the canonical request that verified: the hex
// SHA-256 of the body the client signed, or UNSIGNED-PAYLOAD.
func (r *Result) PayloadHash() string {
	p := r.payload[:r.payloadLen]
	// The two most common values without a copy: a request with no body, and an unsigned
	// body (the comparisons allocate nothing).
	switch string(p) {
	case emptyPayloadHash:
		return emptyPayloadHash
	case unsignedPayload:
		return unsignedPayload
	}
	return string(p)
}

// emptyPayloadHash is the hex SHA-256 of no bytes: the payload hash of a request without
// a body.
const emptyPayloadHash = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

// Verifier verifies SigV4-signed requests for one region and service. It is safe for
// concurrent use.
type Verifier struct {
	cfg     Config
	skew    time.Duration
	now     func() time.Time
	creds   CredentialSource
	keys    *keyCache
	scratch sync.Pool // *scratch

	// matched, when set (tests only), sees the canonical request and string-to-sign of
	// every accepted request, so fuzz tests can check what a signature was accepted for.
	matched func(canonical, stringToSign []byte)
}

// New validates cfg and returns a Verifier that looks credentials up in creds.
func New(cfg Config, creds CredentialSource) (*Verifier, error) {
	var problems []string
	if creds == nil {
		problems = append(problems, "credential source is nil")
	}
	if err := checkScopePart("region", cfg.Region); err != "" {
		problems = append(problems, err)
	}
	if err := checkScopePart("service", cfg.Service); err != "" {
		problems = append(problems, err)
	}
	if cfg.MaxSkew < 0 {
		problems = append(problems, fmt.Sprintf("max skew %s is negative", cfg.MaxSkew))
	}
	if cfg.KeyCacheSize < 0 {
		problems = append(problems, fmt.Sprintf("key cache size %d is negative", cfg.KeyCacheSize))
	}
	if cfg.MaxBodyBytes < 0 {
		problems = append(problems, fmt.Sprintf("max body bytes %d is negative", cfg.MaxBodyBytes))
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("sigv4: invalid config: %s", strings.Join(problems, "; "))
	}
	if cfg.MaxSkew == 0 {
		cfg.MaxSkew = defaultMaxSkew
	}
	if cfg.KeyCacheSize == 0 {
		cfg.KeyCacheSize = defaultKeyCacheSize
	}
	if cfg.MaxBodyBytes == 0 {
		cfg.MaxBodyBytes = defaultMaxBodyBytes
	}
	now := cfg.Now
	if now == nil {
		now = time.Now
	}
	v := &Verifier{
		cfg:   cfg,
		skew:  cfg.MaxSkew,
		now:   now,
		creds: creds,
		keys:  newKeyCache(cfg.KeyCacheSize),
	}
	v.scratch.New = func() any { return newScratch() }
	return v, nil
}

// checkScopePart rejects values that could never appear in a credential scope, so a typo in
// the config fails at startup instead of denying every request.
func checkScopePart(name, v string) string {
	if v == "" {
		return name + " is required"
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c <= ' ' || c >= 0x7f || c == '/' || c == ',' || c == '=' {
			return fmt.Sprintf("%s %q contains %q, which cannot appear in a credential scope", name, v, c)
		}
	}
	return ""
}

// Config returns the verifier's configuration with defaults filled in.
func (v *Verifier) Config() Config { return v.cfg }

// ReadBody reads r's body, at most Config.MaxBodyBytes of it, for Verify, and puts an
// equivalent reader back on r so a handler or proxy can still read it. A longer body is
// refused with a 413 *Error instead of being buffered.
func (v *Verifier) ReadBody(r *http.Request) ([]byte, error) {
	if r.Body == nil || r.Body == http.NoBody {
		return nil, nil
	}
	if r.ContentLength > v.cfg.MaxBodyBytes {
		return nil, tooLarge(v.cfg.MaxBodyBytes)
	}
	b, err := io.ReadAll(io.LimitReader(r.Body, v.cfg.MaxBodyBytes+1))
	r.Body.Close()
	if err != nil {
		return nil, fmt.Errorf("sigv4: read request body: %w", err)
	}
	if int64(len(b)) > v.cfg.MaxBodyBytes {
		return nil, tooLarge(v.cfg.MaxBodyBytes)
	}
	r.Body = io.NopCloser(bytes.NewReader(b))
	return b, nil
}
