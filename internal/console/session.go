package console

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/phantom-perimeter/phantom/internal/store"
)

const (
	// sessionCookie carries the session's secret. The __Host- prefix makes browsers refuse
	// it unless it is Secure, has Path=/ and no Domain: no other host or path can plant it.
	sessionCookie = "__Host-phantom-console"
	// signinCookie is the double-submit CSRF token of the sign-in form (login CSRF).
	signinCookie = "__Host-phantom-signin"
	// maxSessions bounds the session table; a sign-in beyond it is refused.
	maxSessions = 10000
	// sweepEvery is how often ended sessions and idle limiter buckets are deleted.
	sweepEvery = time.Minute
	// touchParts: a session's last use is written when it is older than the idle timeout
	// over touchParts (30 s of 15 min), not on every request (a commit each); a session
	// may so end up to that much before its idle timeout, never after.
	touchParts = 30
)

// Sessions live in the store, so that every console replica on it serves every request
// and a sign-out on one is refused on all at once. The cookie holds a random 256-bit
// secret; the store keeps its SHA-256 (the row's key), never the secret, so whoever reads
// the store cannot present a session; the CSRF token is an HMAC of the secret, so it is
// stored nowhere. Every request reads the row (no cache: a sign-out elsewhere counts at
// once) and moves its last use forward (at most every IdleTimeout/touchParts).

// SessionStore is what the console keeps its sessions, single sign-ons in progress and
// sign-in limiter in (store.Store).
type SessionStore interface {
	PutConsoleSession(ctx context.Context, s store.ConsoleSession, max int) (bool, error)
	GetConsoleSession(ctx context.Context, id [32]byte) (store.ConsoleSession, error)
	TouchConsoleSession(ctx context.Context, id [32]byte, at time.Time) error
	DeleteConsoleSession(ctx context.Context, id [32]byte) error
	DeleteEndedConsoleSessions(ctx context.Context, now, idleSince time.Time) (int, error)
	PutConsoleSSO(ctx context.Context, id [32]byte, sealed []byte, expires time.Time, max int) (bool, error)
	TakeConsoleSSO(ctx context.Context, id [32]byte, now time.Time) ([]byte, error)
	UpdateLimitBuckets(ctx context.Context, names []string, fn func([]store.LimitBucket) error) error
	DeleteIdleLimitBuckets(ctx context.Context, now time.Time) (int, error)
}

// session is a signed-in console session.
type session struct {
	id         [32]byte // SHA-256 of the cookie's secret
	csrf       string   // the synchronizer token, derived from the cookie's secret
	accessKey  string
	token      string   // the session token of an ASIA key, to resolve it again
	secretHash [32]byte // SHA-256 of the secret the user signed in with
	principal  string
	expires    time.Time // absolute: lifetime, or the credential's expiry if sooner
}

// errSessionStore marks a failure to reach the session store: the request is refused
// (503), never served as signed in or out.
var errSessionStore = errors.New("console session store unavailable")

func sessionID(secret string) [32]byte { return sha256.Sum256([]byte(secret)) }

// csrfToken is the session's CSRF token: an HMAC of the cookie's secret, the same on every
// replica and unknown to whoever reads the store.
func csrfToken(secret string) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte("phantom console csrf"))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// sessions are the console's sessions in the store.
type sessions struct {
	st   SessionStore
	idle time.Duration
	log  *slog.Logger

	mu    sync.Mutex
	swept time.Time
}

// add stores a new session s and returns the cookie's secret; "" when the store holds
// maxSessions live sessions.
func (t *sessions) add(ctx context.Context, s *session, now time.Time) (string, error) {
	t.sweep(ctx, now)
	secret := newToken(32) // 256 bits
	s.id, s.csrf = sessionID(secret), csrfToken(secret)
	ok, err := t.st.PutConsoleSession(ctx, store.ConsoleSession{ID: s.id, AccessKeyID: s.accessKey, SessionToken: s.token,
		SecretHash: s.secretHash, Principal: s.principal, CreatedAt: now, ExpiresAt: s.expires, LastSeen: now}, maxSessions)
	switch {
	case err != nil:
		return "", fmt.Errorf("%w: %w", errSessionStore, err)
	case !ok:
		return "", nil
	}
	return secret, nil
}

// get returns the live session whose cookie secret is secret and marks it used; nil when
// there is none (an ended one is deleted). An error means the store could not say.
func (t *sessions) get(ctx context.Context, secret string, now time.Time) (*session, error) {
	if secret == "" || len(secret) > 128 {
		return nil, nil
	}
	id := sessionID(secret)
	cs, err := t.st.GetConsoleSession(ctx, id)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("%w: %w", errSessionStore, err)
	case subtle.ConstantTimeCompare(cs.ID[:], id[:]) != 1:
		return nil, nil // the store answered for another id: never a session of this cookie
	}
	if !now.Before(cs.ExpiresAt) || now.Sub(cs.LastSeen) >= t.idle {
		if err := t.st.DeleteConsoleSession(ctx, id); err != nil {
			return nil, fmt.Errorf("%w: %w", errSessionStore, err)
		}
		return nil, nil
	}
	if now.Sub(cs.LastSeen) >= t.idle/touchParts {
		switch err := t.st.TouchConsoleSession(ctx, id, now); {
		case errors.Is(err, store.ErrNotFound):
			return nil, nil // signed out on another replica meanwhile
		case err != nil:
			return nil, fmt.Errorf("%w: %w", errSessionStore, err)
		}
	}
	return &session{id: id, csrf: csrfToken(secret), accessKey: cs.AccessKeyID, token: cs.SessionToken,
		secretHash: cs.SecretHash, principal: cs.Principal, expires: cs.ExpiresAt}, nil
}

// remove ends s on every replica.
func (t *sessions) remove(ctx context.Context, s *session) error {
	if err := t.st.DeleteConsoleSession(ctx, s.id); err != nil {
		return fmt.Errorf("%w: %w", errSessionStore, err)
	}
	return nil
}

// sweep deletes ended sessions and idle limiter buckets, at most once per sweepEvery in
// this process; failures are left for the next sweep (the rows are refused when read).
func (t *sessions) sweep(ctx context.Context, now time.Time) {
	t.mu.Lock()
	due := now.Sub(t.swept) >= sweepEvery || now.Before(t.swept)
	if due {
		t.swept = now
	}
	t.mu.Unlock()
	if !due {
		return
	}
	if _, err := t.st.DeleteEndedConsoleSessions(ctx, now, now.Add(-t.idle)); err != nil {
		t.log.Warn("delete ended console sessions", "error", err)
	}
	if _, err := t.st.DeleteIdleLimitBuckets(ctx, now); err != nil {
		t.log.Warn("delete idle sign-in limiter buckets", "error", err)
	}
}

// validCSRF compares a submitted token with the session's in constant time.
func (s *session) validCSRF(got string) bool {
	return got != "" && subtle.ConstantTimeCompare([]byte(got), []byte(s.csrf)) == 1
}

func setCookie(w http.ResponseWriter, name, value string, maxAge int) {
	http.SetCookie(w, &http.Cookie{
		Name:     name,
		Value:    value,
		Path:     "/",
		MaxAge:   maxAge,
		Secure:   true,
		HttpOnly: true,
		SameSite: http.SameSiteStrictMode,
	})
}

func clearCookie(w http.ResponseWriter, name string) { setCookie(w, name, "", -1) }

func cookieValue(r *http.Request, name string) string {
	c, err := r.Cookie(name)
	if err != nil {
		return ""
	}
	return c.Value
}
