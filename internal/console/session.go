package console

import (
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
	"sync"
	"time"
)

const (
	// sessionCookie carries the session id. The __Host- prefix makes browsers refuse it
	// unless it is Secure, has Path=/ and no Domain: no other host or path can plant it.
	sessionCookie = "__Host-phantom-console"
	// signinCookie is the double-submit CSRF token of the sign-in form (login CSRF).
	signinCookie = "__Host-phantom-signin"
	// maxSessions bounds the session table; a sign-in beyond it is refused.
	maxSessions = 10000
)

// session is a signed-in console session, kept server-side; the cookie holds only its id.
type session struct {
	key        [32]byte // SHA-256 of the id: the table never holds the cookie value itself
	csrf       string
	accessKey  string
	token      string   // the session token of an ASIA key, to resolve it again
	secretHash [32]byte // SHA-256 of the secret the user signed in with
	principal  string
	created    time.Time
	expires    time.Time // absolute: lifetime, or the credential's expiry if sooner

	mu       sync.Mutex
	lastSeen time.Time
}

// sessions is the table of live sessions.
type sessions struct {
	mu  sync.Mutex
	max int
	m   map[[32]byte]*session
}

func newSessions(max int) *sessions { return &sessions{max: max, m: map[[32]byte]*session{}} }

func sessionKey(id string) [32]byte { return sha256.Sum256([]byte(id)) }

// add stores s under a new id and returns the id; "" when the table is full of live
// sessions.
func (t *sessions) add(s *session, now time.Time, idle time.Duration) string {
	id := newToken(32) // 256 bits
	s.key = sessionKey(id)
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.m) >= t.max {
		for k, o := range t.m {
			if o.ended(now, idle) {
				delete(t.m, k)
			}
		}
		if len(t.m) >= t.max {
			return ""
		}
	}
	t.m[s.key] = s
	return id
}

// get returns the live session with this id and marks it used; an ended one is removed.
func (t *sessions) get(id string, now time.Time, idle time.Duration) *session {
	if id == "" || len(id) > 128 {
		return nil
	}
	k := sessionKey(id)
	t.mu.Lock()
	s := t.m[k]
	if s != nil && s.ended(now, idle) {
		delete(t.m, k)
		s = nil
	}
	t.mu.Unlock()
	if s != nil {
		s.mu.Lock()
		s.lastSeen = now
		s.mu.Unlock()
	}
	return s
}

func (t *sessions) remove(s *session) {
	t.mu.Lock()
	delete(t.m, s.key)
	t.mu.Unlock()
}

func (s *session) ended(now time.Time, idle time.Duration) bool {
	s.mu.Lock()
	last := s.lastSeen
	s.mu.Unlock()
	return !now.Before(s.expires) || now.Sub(last) >= idle
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
