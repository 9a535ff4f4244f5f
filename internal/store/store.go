// Package store owns Phantom's durable state: users' long-term access keys, token-sealing
// keys, session revocations, node join tokens, enrolled nodes, detection findings (with
// the responses applied to them), principals' risk levels, named secrets (the CA, when
// replicas share the store), the audit cursors that make the detector's consumption
// exactly-once, the signatures the gateway's replay guard has seen, the audit chains'
// anchors (append-only: see package audit) and the spec each process reports it
// enforces. Secrets (access-key secrets, sealing keys, named secrets) are encrypted
// at rest with AES-256-GCM under a key derived from the perimeter's master key, each
// bound to its row so a ciphertext moved to another row does not decrypt.
//
// Consumers declare the small interfaces they need (identity declares AccessKeyStore and
// friends, pki declares TokenStore); Store is the union every backend implements, and
// package storetest is the contract suite each backend runs. Two backends: SQLite (pure
// Go, in the data directory) is the embedded default, for one host; PostgreSQL
// (OpenPostgres, or Open with a postgres:// URL) is shared by replicas on several hosts,
// one perimeter per schema. Each backend has its own numbered migrations; a database
// migrated by a newer Phantom is refused (ErrSchemaTooNew). The store does not own the
// audit log itself (package audit does), nor the master key's safekeeping beyond
// master.key.
//
// Every write bumps a persistent change counter, Version, so components holding in-memory
// snapshots can poll for changes cheaply; Notifier (both backends) wakes them at once
// instead: PostgreSQL for changes from any process (LISTEN/NOTIFY), SQLite for writes
// through the same handle only.
//
// On disk, in the data directory (0700): phantom.db with its -wal and -shm files (0600),
// and master.key (0600), the base64 of the 32-byte master key, created on first start.
// Setting PHANTOM_MASTER_KEY (standard base64 of 32 bytes) supplies the key instead, for
// deployments that keep it in a secret manager rather than beside the database (with
// PostgreSQL, every replica needs the same key). A lost master key makes the stored
// secrets unrecoverable; a wrong one is refused at open (ErrWrongMasterKey), never used
// to produce garbage.
package store

import (
	"context"
	"errors"
	"time"

	"github.com/phantom-perimeter/phantom/internal/audit"
	"github.com/phantom-perimeter/phantom/internal/keys"
	"github.com/phantom-perimeter/phantom/internal/pki"
)

// Access key statuses, as IAM spells them.
const (
	StatusActive   = "Active"
	StatusInactive = "Inactive"
)

// SealingKeySize is the length of a token-sealing key (AES-256).
const SealingKeySize = 32

var (
	// ErrNotFound is returned (wrapped) when the addressed row does not exist.
	ErrNotFound = errors.New("not found")
	// ErrExists is returned (wrapped) when creating a row whose id is taken.
	ErrExists = errors.New("already exists")
	// ErrWrongMasterKey is returned by Open when the master key is not the one the
	// database was created with.
	ErrWrongMasterKey = errors.New("master key does not match the one this database was created with")
	// ErrWrongKey is returned by Open when a derived storage key the process holds (from
	// its component key file) is not the one this database's secrets of that purpose are
	// sealed under: the key file comes from another perimeter's master key.
	ErrWrongKey = errors.New("storage key does not match the one this database was created with")
	// ErrDecrypt is returned (wrapped) when a stored secret fails authentication: the
	// master key is wrong or the row was altered. No plaintext is ever returned then.
	ErrDecrypt = errors.New("stored secret failed authentication (wrong master key or altered row)")
	// ErrSchemaTooNew is returned by Open when the database was migrated by a newer
	// Phantom than this binary.
	ErrSchemaTooNew = errors.New("database schema is newer than this binary supports")
	// ErrConflict is returned (wrapped) by CommitAudit when a cursor moved under the
	// caller (another consumer instance advanced it): nothing was written.
	ErrConflict = errors.New("conflict")
)

// AccessKey is a user's long-term (AKIA) access key. Secret is plain in memory only.
type AccessKey struct {
	ID         string // AKIA + 16 upper-case base32 characters
	User       string // user name
	Secret     string // 40 characters
	Status     string // StatusActive or StatusInactive
	CreatedAt  time.Time
	LastUsedAt time.Time // zero: never used (or not tracked)
}

// SealingKey is a session-token sealing key. RetireAfter zero means current; a rotated-out
// key stays until RetireAfter so tokens it sealed can still be opened.
//
// Key encrypts and opens tokens; SigningSeed (an Ed25519 seed) signs them and PublicKey
// checks the signature, so a process that can open tokens (a gateway) cannot make them.
// Keys made before signed tokens have neither. SigningSeed is read back only by a
// process holding the token-signing storage key (keys.StoreTokenSigning): for others
// ListSealingKeys leaves it nil and does not even select it.
type SealingKey struct {
	ID          string // 1 to 32 characters of [A-Za-z0-9._-]
	Key         []byte // SealingKeySize bytes
	SigningSeed []byte // SealingKeySize bytes, or nil
	PublicKey   []byte // SealingKeySize bytes, or nil
	// SignerInToken: the signing key is in a PKCS#11 token (a key provider), never in
	// the store: SigningSeed is nil, PublicKey is set, and its tokens are signed the way
	// a token signs (identity's version 3). Every reader learns it: it is whether a
	// seed is stored, not the seed.
	SignerInToken bool
	CreatedAt     time.Time
	RetireAfter   time.Time
}

// Revocation denies every session of Role (a role name) or of Node (a node name: every
// session issued to it, whatever its role) issued before Before. Exactly one of Role and
// Node is set.
type Revocation struct {
	Role   string
	Node   string
	Before time.Time
}

// Node is an enrolled node: the name its certificate carries, its role, the serial and
// expiry of its current certificate, and when it last reached STS.
type Node struct {
	Name       string
	Role       string
	CertSerial string // hexadecimal
	EnrolledAt time.Time
	// CertNotAfter is when the current certificate expires; zero when not recorded
	// (enrolled by an older Phantom).
	CertNotAfter time.Time
	// LastContact and LastContactIP are when and from where the node last called STS's
	// node API (TouchNode); zero and "" before its first call. PutNode ignores them.
	LastContact   time.Time
	LastContactIP string
}

// MFADevice is a virtual MFA device: a TOTP seed, enabled for a user or not yet. Seed is
// plain in memory only.
type MFADevice struct {
	Serial    string // arn:aws:iam::ACCOUNT:mfa/PATHNAME
	User      string // the user it is enabled for; "" until enabled
	Seed      []byte
	CreatedAt time.Time
	EnabledAt time.Time // zero while not enabled
	// LastStep is the highest TOTP time step accepted, 0 for none: codes of that step
	// and earlier are refused.
	LastStep int64
	// Failures counts the attempts since the last accepted code.
	Failures int
}

// Store is everything a backend implements. Consumers should depend on the narrower
// interfaces they declare themselves.
type Store interface {
	// PutAccessKey stores a new access key; an id in use is ErrExists.
	PutAccessKey(ctx context.Context, k AccessKey) error
	// GetAccessKey returns the key with this id, or ErrNotFound.
	GetAccessKey(ctx context.Context, id string) (AccessKey, error)
	// ListAccessKeys returns user's keys, or every key when user is "", ordered by user,
	// creation time and id.
	ListAccessKeys(ctx context.Context, user string) ([]AccessKey, error)
	// UpdateAccessKeyStatus sets a key's status (StatusActive or StatusInactive).
	UpdateAccessKeyStatus(ctx context.Context, id, status string) error
	// DeleteAccessKey removes a key, or returns ErrNotFound.
	DeleteAccessKey(ctx context.Context, id string) error

	// PutSealingKey stores a new sealing key; an id in use is ErrExists.
	PutSealingKey(ctx context.Context, k SealingKey) error
	// ListSealingKeys returns every sealing key, newest first.
	ListSealingKeys(ctx context.Context) ([]SealingKey, error)
	// RetireSealingKey sets the time after which a key is no longer used.
	RetireSealingKey(ctx context.Context, id string, after time.Time) error

	// PutRevocation records a revocation, keeping the latest Before per role or node.
	PutRevocation(ctx context.Context, r Revocation) error
	// ListRevocations returns one revocation per role, ordered by role, then one per
	// node, ordered by node.
	ListRevocations(ctx context.Context) ([]Revocation, error)

	// PutJoinToken, GetJoinToken and DeleteJoinToken implement pki.TokenStore.
	PutJoinToken(ctx context.Context, t pki.JoinToken) error
	GetJoinToken(ctx context.Context, id string) (pki.JoinToken, error)
	DeleteJoinToken(ctx context.Context, id string) (bool, error)
	// DeleteExpiredJoinTokens removes tokens whose expiry is not after now and reports
	// how many it removed.
	DeleteExpiredJoinTokens(ctx context.Context, now time.Time) (int, error)

	// PutNode records an enrolled node, replacing the record of a re-enrolled one.
	PutNode(ctx context.Context, n Node) error
	// GetNode returns the node with this name, or ErrNotFound.
	GetNode(ctx context.Context, name string) (Node, error)
	// ListNodes returns every node ordered by name.
	ListNodes(ctx context.Context) ([]Node, error)
	// DeleteNode removes a node, or returns ErrNotFound.
	DeleteNode(ctx context.Context, name string) error
	// TouchNode records that a node called STS at a time from an address, keeping the
	// latest time. It does not bump Version.
	TouchNode(ctx context.Context, name string, at time.Time, sourceIP string) error

	// PutFinding inserts or updates a finding by id, keeping a stored finding's
	// Archived and CreatedAt.
	PutFinding(ctx context.Context, f Finding) error
	// GetFinding returns the finding with this id, or ErrNotFound.
	GetFinding(ctx context.Context, id string) (Finding, error)
	// ListFindings returns the findings the filter selects, most recently updated first.
	ListFindings(ctx context.Context, f FindingFilter) ([]Finding, error)
	// ArchiveFinding sets a finding's archived state, or returns ErrNotFound.
	ArchiveFinding(ctx context.Context, id string, archived bool) error
	// MarkFindingResponse records that action ran for a finding and reports whether
	// this call recorded it (exactly one of concurrent callers sees true).
	MarkFindingResponse(ctx context.Context, findingID, action string, at time.Time) (bool, error)
	// ListFindingResponses returns the actions recorded for a finding, in name order.
	ListFindingResponses(ctx context.Context, findingID string) ([]string, error)

	// PutRiskLevel sets a principal's risk level.
	PutRiskLevel(ctx context.Context, r RiskLevel) error
	// DeleteRiskLevel clears a principal's risk level, or returns ErrNotFound.
	DeleteRiskLevel(ctx context.Context, principal string) error
	// ListRiskLevels returns every risk level, ordered by principal.
	ListRiskLevels(ctx context.Context) ([]RiskLevel, error)

	// PutSecretIfAbsent stores value under name unless a value is already there, and
	// returns the stored value, so concurrent first starts (several replicas creating a
	// CA, say) all end up with the one that won. The value is sealed under the master key,
	// bound to name. Secrets do not bump Version.
	PutSecretIfAbsent(ctx context.Context, name string, value []byte) ([]byte, error)
	// GetSecret returns the secret stored under name, or ErrNotFound.
	GetSecret(ctx context.Context, name string) ([]byte, error)

	// ListAuditCursors returns consumer's cursors, ordered by chain.
	ListAuditCursors(ctx context.Context, consumer string) ([]AuditCursor, error)
	// CommitAudit, in one transaction, checks every advance's From against the stored
	// Seq (a mismatch is ErrConflict and nothing is written), upserts the findings
	// exactly as PutFinding does, and advances the cursors. Cursor writes do not bump
	// Version; the findings do, as PutFinding does.
	CommitAudit(ctx context.Context, consumer string, adv []CursorAdvance, findings []Finding) error

	// AcquireLease takes lease name for holder for ttl if it is free, expired or
	// holder's own (renewing it), and reports whether holder has it. PostgreSQL judges
	// expiry by its own clock. Leases do not bump Version.
	AcquireLease(ctx context.Context, name, holder string, ttl time.Duration) (bool, error)
	// ReleaseLease gives up holder's lease name.
	ReleaseLease(ctx context.Context, name, holder string) error
	// ListLeases returns the unexpired leases, by name.
	ListLeases(ctx context.Context) ([]Lease, error)

	// PutMFADevice stores a new virtual MFA device, not enabled; a serial in use is
	// ErrExists. MFA devices do not bump Version: nothing is snapshotted from them.
	PutMFADevice(ctx context.Context, d MFADevice) error
	// GetMFADevice returns the device with this serial number, or ErrNotFound.
	GetMFADevice(ctx context.Context, serial string) (MFADevice, error)
	// ListMFADevices returns user's devices, or every device when user is "", ordered by
	// user and serial.
	ListMFADevices(ctx context.Context, user string) ([]MFADevice, error)
	// EnableMFADevice enables a device for user, with step as the last code accepted; a
	// device enabled already is ErrConflict, an absent one ErrNotFound.
	EnableMFADevice(ctx context.Context, serial, user string, step int64, at time.Time) error
	// DeactivateMFADevice disables user's device, keeping its last step; ErrNotFound when
	// the device is not enabled for user.
	DeactivateMFADevice(ctx context.Context, serial, user string) error
	// ResyncMFADevice clears the failures of user's device and moves its last step to step
	// (never back); ErrNotFound when the device is not enabled for user.
	ResyncMFADevice(ctx context.Context, serial, user string, step int64) error
	// DeleteMFADevice removes a device that is not enabled; an enabled one is
	// ErrConflict, an absent one ErrNotFound.
	DeleteMFADevice(ctx context.Context, serial string) error
	// CountMFAAttempt adds one to the failures of user's device and returns the new count,
	// before the code is checked, so concurrent attempts are all counted; ErrNotFound
	// when the device is not enabled for user.
	CountMFAAttempt(ctx context.Context, serial, user string) (int, error)
	// AcceptMFACode moves the last step of user's device to step and clears its failures,
	// when step is after the last step; it reports whether it did (exactly one of
	// concurrent callers with one step sees true).
	AcceptMFACode(ctx context.Context, serial, user string, step int64) (bool, error)

	// RegisterAuditChain, PutAuditSigner, PutAuditAnchor and LatestAuditAnchor
	// implement audit.AnchorStore: append-only, never bumping Version.
	RegisterAuditChain(ctx context.Context, chain string, at time.Time) error
	PutAuditSigner(ctx context.Context, s audit.Signer) error
	PutAuditAnchor(ctx context.Context, a audit.Anchor) error
	LatestAuditAnchor(ctx context.Context, chain string) (audit.Anchor, bool, error)
	// PutAuditCheckpoint records what `phantom audit prune` removed (append-only).
	PutAuditCheckpoint(ctx context.Context, c audit.Checkpoint) error
	// AuditAnchorSet returns the chains, per chain and segment the anchor with the
	// highest seq, the writers' certificates and the prune checkpoints;
	// ListAuditChains the chains alone.
	AuditAnchorSet(ctx context.Context) (audit.AnchorSet, error)
	ListAuditChains(ctx context.Context) ([]audit.ChainEntry, error)
	// AuditAnchorsAfter returns up to limit anchors of chain with a seq above after,
	// by seq: what a stream consumer checks the records it is handed against.
	AuditAnchorsAfter(ctx context.Context, chain string, after uint64, limit int) ([]audit.Anchor, error)

	// PutSpecReplica records the spec a process enforces, replacing its earlier report;
	// ListSpecReplicas returns the reports seen at or after since, ordered by id.
	PutSpecReplica(ctx context.Context, r SpecReplica) error
	ListSpecReplicas(ctx context.Context, since time.Time) ([]SpecReplica, error)

	// ClaimSignature records the first use of a request signature (id: the hex SHA-256 of
	// the signature), good until expires, and reports whether this call made it; of
	// concurrent claims exactly one does. It does not bump Version (the gateway's replay
	// guard, gateway.replayProtection).
	ClaimSignature(ctx context.Context, id string, expires time.Time) (bool, error)
	// DeleteExpiredSignatures forgets used signatures that expired at or before now.
	DeleteExpiredSignatures(ctx context.Context, now time.Time) (int, error)

	// The web console's sessions and sign-in limiter (package console), shared by its
	// replicas; none of these bump Version.
	PutConsoleSession(ctx context.Context, s ConsoleSession, max int) (bool, error)
	GetConsoleSession(ctx context.Context, id [32]byte) (ConsoleSession, error)
	TouchConsoleSession(ctx context.Context, id [32]byte, at time.Time) error
	DeleteConsoleSession(ctx context.Context, id [32]byte) error
	DeleteEndedConsoleSessions(ctx context.Context, now, idleSince time.Time) (int, error)
	PutConsoleSSO(ctx context.Context, id [32]byte, sealed []byte, expires time.Time, max int) (bool, error)
	TakeConsoleSSO(ctx context.Context, id [32]byte, now time.Time) ([]byte, error)
	UpdateLimitBuckets(ctx context.Context, names []string, fn func([]LimitBucket) error) error
	DeleteIdleLimitBuckets(ctx context.Context, now time.Time) (int, error)

	// PutCACertificate, ListCACertificates, DistrustCACertificate,
	// PutCertificateRevocation and ListCertificateRevocations, with the secrets above,
	// implement pki.CAStore; each write bumps Version.
	PutCACertificate(ctx context.Context, c pki.CACertificate) error
	ListCACertificates(ctx context.Context) ([]pki.CACertificate, error)
	DistrustCACertificate(ctx context.Context, serial string, at time.Time) error
	PutCertificateRevocation(ctx context.Context, r pki.Revocation) error
	ListCertificateRevocations(ctx context.Context) ([]pki.Revocation, error)

	// StageStorageKey, RotateStorageKey, ResealStorageKey, RetireStorageKeys and
	// StorageKeyGenerations
	// rotate the storage keys (rotate.go); only a holder of the master key rotates.
	StageStorageKey(ctx context.Context, p keys.Purpose) (keys.Generation, error)
	RotateStorageKey(ctx context.Context, p keys.Purpose) (keys.Generation, error)
	ResealStorageKey(ctx context.Context, p keys.Purpose) (int, error)
	RetireStorageKeys(ctx context.Context, p keys.Purpose, overlap time.Duration) ([]keys.Generation, int, error)
	StorageKeyGenerations(ctx context.Context) ([]KeyGeneration, error)
	// SetKeys replaces a component's key file ring with a newer export of it (the same
	// component), once the store's checks of its generations pass.
	SetKeys(ctx context.Context, ring *keys.Ring) error

	// Version returns a counter that every write bumps; it never goes down.
	Version(ctx context.Context) (int64, error)
	// SchemaVersion returns the number of the last migration applied.
	SchemaVersion(ctx context.Context) (int, error)
	// Close releases the store.
	Close() error
}

// Compile-time checks that Store satisfies its consumers' interfaces.
var (
	_ pki.TokenStore    = Store(nil)
	_ pki.CAStore       = Store(nil)
	_ audit.AnchorStore = Store(nil)
)
