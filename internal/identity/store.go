package identity

import (
	"context"
	"time"

	"github.com/phantom-perimeter/phantom/internal/store"
)

// The store interfaces identity consumes, no more than the methods it calls. internal/store's implementations satisfy them; identity calls them only
// to refresh its snapshots and for administrative writes, never while resolving a request.

// The stored types are internal/store's (aliases, so that *store.SQLite satisfies the
// interfaces below); identity only declares the methods it calls.
type (
	// AccessKey is a user's long-term (AKIA) access key; Secret is plain in memory only.
	AccessKey = store.AccessKey
	// SealingKey is a 32-byte AES-256-GCM token-sealing key and the short id tokens carry.
	// RetireAfter zero means current; a rotated-out key opens the tokens it sealed until
	// RetireAfter (the expiry of the longest session it can have sealed).
	SealingKey = store.SealingKey
	// Revocation denies every session of Role (a role name) issued before Before: AWS's
	// "revoke active sessions", a deny on aws:TokenIssueTime; or every session issued to
	// Node before Before.
	Revocation = store.Revocation
)

// Access key statuses, as IAM spells them.
const (
	StatusActive   = store.StatusActive
	StatusInactive = store.StatusInactive
)

// AccessKeyStore holds users' long-term access keys.
type AccessKeyStore interface {
	PutAccessKey(ctx context.Context, k AccessKey) error                  // a duplicate id is an error
	ListAccessKeys(ctx context.Context, user string) ([]AccessKey, error) // user "": all users
	UpdateAccessKeyStatus(ctx context.Context, id, status string) error
	DeleteAccessKey(ctx context.Context, id string) error
}

// SealingKeyStore holds the token-sealing keys (encrypted at rest by the store).
type SealingKeyStore interface {
	PutSealingKey(ctx context.Context, k SealingKey) error
	ListSealingKeys(ctx context.Context) ([]SealingKey, error) // newest first
	RetireSealingKey(ctx context.Context, id string, after time.Time) error
}

// RevocationStore holds session revocations; it keeps the latest Before per role and per
// node.
type RevocationStore interface {
	PutRevocation(ctx context.Context, r Revocation) error
	ListRevocations(ctx context.Context) ([]Revocation, error)
}

// NodeStore lists enrolled nodes (their enrollment time tells a node re-admitted after its
// revocation from one still revoked).
type NodeStore interface {
	ListNodes(ctx context.Context) ([]store.Node, error)
}

// ChangeFeed reports a counter that every store write bumps, so snapshots can poll cheaply.
type ChangeFeed interface {
	Version(ctx context.Context) (int64, error)
}

// Notifier announces store changes as they happen (PostgreSQL's LISTEN/NOTIFY), so a
// refresh need not wait for the next poll. The channel receives after every change and
// whenever notifications may have been missed (a reconnect).
type Notifier interface {
	Subscribe() (changed <-chan struct{}, cancel func())
}
