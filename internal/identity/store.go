package identity

import (
	"context"
	"time"
)

// The store interfaces identity consumes (contract: .coord/store-api.md). internal/store's
// implementations satisfy them; identity calls them only to refresh its snapshots and for
// administrative writes, never while resolving a request.

// Access key statuses, as IAM spells them.
const (
	StatusActive   = "Active"
	StatusInactive = "Inactive"
)

// AccessKey is a user's long-term (AKIA) access key. Secret is plain in memory only; the
// store encrypts it at rest.
type AccessKey struct {
	ID         string // AKIA + 16 upper-case base32 characters
	User       string
	Secret     string // 40 characters
	Status     string // StatusActive or StatusInactive
	CreatedAt  time.Time
	LastUsedAt time.Time // zero: never used (or not tracked)
}

// AccessKeyStore holds users' long-term access keys.
type AccessKeyStore interface {
	PutAccessKey(ctx context.Context, k AccessKey) error // a duplicate id is an error
	GetAccessKey(ctx context.Context, id string) (AccessKey, error)
	ListAccessKeys(ctx context.Context, user string) ([]AccessKey, error) // user "": all users
	UpdateAccessKeyStatus(ctx context.Context, id, status string) error
	DeleteAccessKey(ctx context.Context, id string) error
}

// SealingKey is a token-sealing key: 32 bytes for AES-256-GCM and a short id carried in the
// token's header. RetireAfter zero means the key is current; a rotated-out key stays usable
// for opening tokens until RetireAfter (the expiry of the longest session it can have sealed).
type SealingKey struct {
	ID          string
	Key         []byte
	CreatedAt   time.Time
	RetireAfter time.Time
}

// SealingKeyStore holds the token-sealing keys (encrypted at rest by the store).
type SealingKeyStore interface {
	PutSealingKey(ctx context.Context, k SealingKey) error
	ListSealingKeys(ctx context.Context) ([]SealingKey, error) // newest first
	RetireSealingKey(ctx context.Context, id string, after time.Time) error
}

// Revocation denies every session of Role (a role name) issued before Before: AWS's
// "revoke active sessions", a deny on aws:TokenIssueTime.
type Revocation struct {
	Role   string
	Before time.Time
}

// RevocationStore holds session revocations; it keeps the latest Before per role.
type RevocationStore interface {
	PutRevocation(ctx context.Context, r Revocation) error
	ListRevocations(ctx context.Context) ([]Revocation, error)
}

// ChangeFeed reports a counter that every store write bumps, so snapshots can poll cheaply.
type ChangeFeed interface {
	Version(ctx context.Context) (int64, error)
}
