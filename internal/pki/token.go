package pki

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"
)

// Join tokens enroll a node: the operator creates one for a node name and hands it to
// the host; the agent redeems it once, before it expires, for a certificate naming that
// node. A token is "phjt_" + a 16-byte id (hex) + "." + a 32-byte secret (base64url).
// The store keeps the id and the SHA-256 of the secret, never the secret: a copy of the
// database cannot enroll anything. The secret has 256 bits of entropy, so a fast hash is
// enough; comparison is constant-time.
const (
	tokenPrefix = "phjt_"
	idBytes     = 16
	secretBytes = 32
	// DefaultTokenTTL is how long a join token lives when no TTL is given.
	DefaultTokenTTL = time.Hour
	// MaxTokenTTL bounds a join token's life.
	MaxTokenTTL = 7 * 24 * time.Hour
)

var (
	// ErrTokenInvalid is returned for a token that is malformed, unknown, tampered with
	// or already used; which of these is not said, so a guesser learns nothing.
	ErrTokenInvalid = errors.New("join token invalid or already used")
	// ErrTokenExpired is returned for a genuine token past its expiry; it is deleted.
	ErrTokenExpired = errors.New("join token expired")
	// ErrTokenNotFound is what a TokenStore returns for an id it does not hold.
	ErrTokenNotFound = errors.New("join token not found")
)

// JoinToken is a join token's stored record.
type JoinToken struct {
	// ID is the public half, the store's key.
	ID string
	// Hash is the SHA-256 of the secret half.
	Hash [32]byte
	// Node is the node name the token enrolls (a component's name, with Grant).
	Node string
	// Grant, when set, makes the token a component's (CreateGrant): it enrolls the
	// grant's identity through STS's component API, never a node.
	Grant   *Grant
	Created time.Time
	Expires time.Time
}

// TokenStore keeps join tokens. The SQLite store implements it; MemoryTokenStore is the
// in-memory implementation for tests and single-process use.
type TokenStore interface {
	// PutJoinToken stores a new token; an existing id is an error.
	PutJoinToken(ctx context.Context, t JoinToken) error
	// GetJoinToken returns the token with this id, or ErrTokenNotFound.
	GetJoinToken(ctx context.Context, id string) (JoinToken, error)
	// DeleteJoinToken removes the token and reports whether this call removed it: of
	// concurrent callers exactly one sees true, which is what makes a token single-use.
	DeleteJoinToken(ctx context.Context, id string) (bool, error)
}

// TokensConfig configures Tokens.
type TokensConfig struct {
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Rand is the entropy source; nil means crypto/rand.
	Rand io.Reader
}

// Tokens creates and redeems join tokens.
type Tokens struct {
	store TokenStore
	now   func() time.Time
	rand  io.Reader
}

// NewTokens returns join-token issuance and redemption over store.
func NewTokens(cfg TokensConfig, store TokenStore) *Tokens {
	t := &Tokens{store: store, now: cfg.Now, rand: cfg.Rand}
	if t.now == nil {
		t.now = time.Now
	}
	if t.rand == nil {
		t.rand = rand.Reader
	}
	return t
}

// Create makes a token that enrolls node once within ttl (zero means DefaultTokenTTL).
// The returned string is the only copy of the secret.
func (t *Tokens) Create(ctx context.Context, node string, ttl time.Duration) (token string, expires time.Time, err error) {
	if !labelRe.MatchString(node) {
		return "", time.Time{}, fmt.Errorf("join token: node name %q is not a lower-case DNS label", node)
	}
	return t.create(ctx, node, nil, ttl)
}

func (t *Tokens) create(ctx context.Context, node string, g *Grant, ttl time.Duration) (token string, expires time.Time, err error) {
	if ttl == 0 {
		ttl = DefaultTokenTTL
	}
	if ttl < 0 || ttl > MaxTokenTTL {
		return "", time.Time{}, fmt.Errorf("join token: ttl %s is outside 0 to %s", ttl, MaxTokenTTL)
	}
	buf := make([]byte, idBytes+secretBytes)
	if _, err := io.ReadFull(t.rand, buf); err != nil {
		return "", time.Time{}, fmt.Errorf("join token: read random: %w", err)
	}
	id := hex.EncodeToString(buf[:idBytes])
	secret := buf[idBytes:]
	now := t.now()
	rec := JoinToken{ID: id, Hash: sha256.Sum256(secret), Node: node, Grant: g, Created: now, Expires: now.Add(ttl)}
	if err := t.store.PutJoinToken(ctx, rec); err != nil {
		return "", time.Time{}, fmt.Errorf("join token: store: %w", err)
	}
	return tokenPrefix + id + "." + base64.RawURLEncoding.EncodeToString(secret), rec.Expires, nil
}

// Redeem checks a token and consumes it, returning its record. It fails with
// ErrTokenInvalid or ErrTokenExpired, or a wrapped store error.
func (t *Tokens) Redeem(ctx context.Context, token string) (JoinToken, error) {
	id, secret, ok := parseToken(token)
	if !ok {
		return JoinToken{}, ErrTokenInvalid
	}
	rec, err := t.store.GetJoinToken(ctx, id)
	if errors.Is(err, ErrTokenNotFound) {
		return JoinToken{}, ErrTokenInvalid
	}
	if err != nil {
		return JoinToken{}, fmt.Errorf("redeem join token: %w", err)
	}
	sum := sha256.Sum256(secret)
	if subtle.ConstantTimeCompare(sum[:], rec.Hash[:]) != 1 {
		// Wrong secret: the token stays, so whoever guesses at ids cannot burn the
		// operator's token.
		return JoinToken{}, ErrTokenInvalid
	}
	if !t.now().Before(rec.Expires) {
		if _, err := t.store.DeleteJoinToken(ctx, id); err != nil {
			return JoinToken{}, fmt.Errorf("redeem join token: delete expired: %w", err)
		}
		return JoinToken{}, ErrTokenExpired
	}
	deleted, err := t.store.DeleteJoinToken(ctx, id)
	if err != nil {
		return JoinToken{}, fmt.Errorf("redeem join token: %w", err)
	}
	if !deleted {
		return JoinToken{}, ErrTokenInvalid // a concurrent redemption won
	}
	return rec, nil
}

func parseToken(s string) (id string, secret []byte, ok bool) {
	rest, ok := strings.CutPrefix(s, tokenPrefix)
	if !ok {
		return "", nil, false
	}
	id, enc, ok := strings.Cut(rest, ".")
	if !ok || len(id) != 2*idBytes || len(enc) != base64.RawURLEncoding.EncodedLen(secretBytes) {
		return "", nil, false
	}
	if _, err := hex.DecodeString(id); err != nil || strings.ToLower(id) != id {
		return "", nil, false
	}
	secret, err := base64.RawURLEncoding.Strict().DecodeString(enc)
	if err != nil || len(secret) != secretBytes {
		return "", nil, false
	}
	return id, secret, true
}

// MemoryTokenStore is an in-memory TokenStore.
type MemoryTokenStore struct {
	mu     sync.Mutex
	tokens map[string]JoinToken
}

// NewMemoryTokenStore returns an empty store.
func NewMemoryTokenStore() *MemoryTokenStore {
	return &MemoryTokenStore{tokens: map[string]JoinToken{}}
}

func (m *MemoryTokenStore) PutJoinToken(_ context.Context, t JoinToken) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.tokens[t.ID]; ok {
		return fmt.Errorf("join token %s already exists", t.ID)
	}
	m.tokens[t.ID] = t
	return nil
}

func (m *MemoryTokenStore) GetJoinToken(_ context.Context, id string) (JoinToken, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	t, ok := m.tokens[id]
	if !ok {
		return JoinToken{}, ErrTokenNotFound
	}
	return t, nil
}

func (m *MemoryTokenStore) DeleteJoinToken(_ context.Context, id string) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	_, ok := m.tokens[id]
	delete(m.tokens, id)
	return ok, nil
}

// Enroll redeems a join token and signs the node's certificate request: the node's
// identity comes from the token, its key from the request. The request is checked before
// the token is spent, so a malformed request does not burn the operator's token. The
// certificate is the node's client certificate (to STS and the egress proxy).
func (ca *CA) Enroll(ctx context.Context, tokens *Tokens, token string, csr *x509.CertificateRequest) (*x509.Certificate, JoinToken, error) {
	if err := csr.CheckSignature(); err != nil {
		return nil, JoinToken{}, fmt.Errorf("enroll node: certificate request signature: %w", err)
	}
	if err := checkPublicKey(csr.PublicKey); err != nil {
		return nil, JoinToken{}, fmt.Errorf("enroll node: %w", err)
	}
	rec, err := tokens.Redeem(ctx, token)
	if err != nil {
		return nil, JoinToken{}, err
	}
	if rec.Grant != nil {
		return nil, JoinToken{}, ErrTokenInvalid // a component's token enrolls no node
	}
	cert, err := ca.SignCSR(csr, Request{Identity: Identity{Account: ca.cfg.Account, Kind: KindNode, Name: rec.Node}, Client: true})
	if err != nil {
		return nil, JoinToken{}, fmt.Errorf("enroll node %s: %w", rec.Node, err)
	}
	return cert, rec, nil
}
