package identity

import (
	"errors"

	"github.com/phantom-perimeter/phantom/internal/sigv4"
)

// CredentialError is the typed error for a credential that is refused. Each reason is one
// exported value, so callers test with errors.Is(err, ErrTokenTampered) and so on; every
// value also matches the sigv4 sentinel the verifier maps to AWS's error code
// (sigv4.ErrInvalidToken, sigv4.ErrExpiredToken or sigv4.ErrUnknownAccessKey). Messages
// never carry key material, tokens or secrets.
type CredentialError struct {
	reason string
	sigv4  error
}

func (e *CredentialError) Error() string { return "identity: " + e.reason }

// Unwrap lets errors.Is match the sigv4 sentinel.
func (e *CredentialError) Unwrap() error { return e.sigv4 }

// Reasons a session token or access key is refused.
var (
	// ErrTokenMalformed: not base64url, an unknown format version, or a header that cannot be parsed.
	ErrTokenMalformed = &CredentialError{"session token is malformed", sigv4.ErrInvalidToken}
	// ErrTokenTruncated: the token is shorter than its header says.
	ErrTokenTruncated = &CredentialError{"session token is truncated", sigv4.ErrInvalidToken}
	// ErrTokenUnknownKey: sealed under a key id the ring does not hold (never, or rotated out).
	ErrTokenUnknownKey = &CredentialError{"session token is sealed with an unknown or retired key", sigv4.ErrInvalidToken}
	// ErrTokenTampered: authentication failed (modified header, nonce, ciphertext or tag).
	ErrTokenTampered = &CredentialError{"session token failed authentication", sigv4.ErrInvalidToken}
	// ErrTokenForged: the token opened (whoever made it holds the token-opening key) but
	// its signature is not STS's: made by a holder of the opening keys, a gateway host.
	ErrTokenForged = &CredentialError{"session token signature is not the issuer's", sigv4.ErrInvalidToken}
	// ErrTokenExpired: the session's expiry has passed.
	ErrTokenExpired = &CredentialError{"session token has expired", sigv4.ErrExpiredToken}
	// ErrTokenMismatch: the token was issued for another access key id.
	ErrTokenMismatch = &CredentialError{"session token does not belong to the access key id", sigv4.ErrInvalidToken}
	// ErrTokenMissing: a temporary (ASIA) access key id without a session token.
	ErrTokenMissing = &CredentialError{"temporary access key id without a session token", sigv4.ErrInvalidToken}
	// ErrTokenUnexpected: a long-term (AKIA) access key id with a session token.
	ErrTokenUnexpected = &CredentialError{"long-term access key id with a session token", sigv4.ErrInvalidToken}
	// ErrSessionRevoked: the session's role had its sessions revoked after this one was issued.
	ErrSessionRevoked = &CredentialError{"session was revoked", sigv4.ErrInvalidToken}
	// ErrAccessKeyUnknown: no such access key id.
	ErrAccessKeyUnknown = &CredentialError{"access key id is not known", sigv4.ErrUnknownAccessKey}
	// ErrAccessKeyInactive: the access key exists but is Inactive.
	ErrAccessKeyInactive = &CredentialError{"access key is inactive", sigv4.ErrUnknownAccessKey}
)

// ErrNoKeys is returned by the administrative writes of a service without the store
// they need (Deps.AccessKeys, Deps.SealingKeys): a process that holds no such keys.
var ErrNoKeys = errors.New("identity: this process holds no access keys or token keys to change")

// ErrNotLoaded is returned before the first successful Refresh: nothing resolves until the
// snapshots exist (fail closed). It matches no sigv4 sentinel, so the verifier reports an
// internal failure rather than blaming the caller's credentials.
var ErrNotLoaded = errors.New("identity: credentials not loaded yet")

// ErrStale is returned while the snapshots are older than Config.MaxStale: the store has
// not confirmed them for too long, so nothing resolves (fail closed) until it does. Like
// ErrNotLoaded it blames no caller: the verifier reports an internal failure.
var ErrStale = errors.New("identity: credentials not confirmed by the store recently enough (store unreachable?)")
