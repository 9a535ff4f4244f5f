package identity

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/phantom-perimeter/phantom/internal/arn"
	"github.com/phantom-perimeter/phantom/internal/sigv4"
)

// DefaultRefreshInterval is how often Run polls the store's change counter: disabling a key
// or revoking sessions reaches every replica within about this long.
const DefaultRefreshInterval = 2 * time.Second

// Config is validated once, by New.
type Config struct {
	Account string // the perimeter's 12-digit account id (users' ARNs)

	// MaxSessionDuration bounds sessions and how long rotated-out sealing keys are kept;
	// 0 means DefaultMaxSessionDuration (36h, GetSessionToken's limit).
	MaxSessionDuration time.Duration
	// RefreshInterval is Run's polling period; 0 means DefaultRefreshInterval. With a
	// Notifier it is the resync period that catches a missed notification.
	RefreshInterval time.Duration
	// MaxStale bounds how long the snapshots serve without the store confirming them
	// (a successful read of its change counter or a reload). Past it, Resolve refuses
	// every credential with ErrStale until the store answers again: a replica cut off
	// from the store keeps serving briefly, then fails closed. 0 means no bound.
	MaxStale time.Duration
	// TokenKeys is a key provider (a PKCS#11 token) that makes and holds token-signing
	// keys: with it RotateSealingKey makes the signing key there, and the current key is
	// signed with there; nil: signing keys are made at random and sealed in the store.
	TokenKeys TokenSigningKeys

	Now    func() time.Time // nil: time.Now
	Rand   io.Reader        // key material and nonces; nil: crypto/rand
	Logger *slog.Logger     // nil: slog.Default()
}

// Deps are the stores identity reads its snapshots from. One store value usually fills
// all of them. AccessKeys and SealingKeys are nil in a process that holds no key to read
// them with (an egress proxy, a detector: keys.Component): it resolves no credential, and
// the administrative writes that need them fail with ErrNoKeys. Changes is optional:
// without it Run reloads on every tick. Notify is optional: with it Run also refreshes as
// soon as the store announces a change.
type Deps struct {
	AccessKeys  AccessKeyStore
	SealingKeys SealingKeyStore
	Revocations RevocationStore
	Nodes       NodeStore
	Changes     ChangeFeed
	Notify      Notifier
}

// Service resolves credentials from in-memory snapshots (users' access keys, revocations and
// the sealing key ring) and performs the administrative writes that change them. It
// implements sigv4.CredentialSource. Lookups never lock and never touch the store.
type Service struct {
	account    string
	maxSession time.Duration
	interval   time.Duration
	now        func() time.Time
	rand       io.Reader
	log        *slog.Logger
	deps       Deps

	sealer    *Sealer
	tokenKeys TokenSigningKeys
	snap      atomic.Pointer[snapshot] // nil until the first successful Refresh
	changed   atomic.Pointer[chan struct{}]
	maxStale  time.Duration
	// synced is when the store last confirmed the snapshots (Unix nanoseconds).
	synced atomic.Int64

	refreshMu sync.Mutex // one Refresh at a time
}

// snapshot is immutable once published.
type snapshot struct {
	version int64
	keys    map[string]*userKey  // access key id -> key
	revoked map[string]time.Time // role name -> sessions issued before this are revoked
	// nodeBefore: node name -> every session issued to it before this is revoked
	// (`phantom node revoke`), whatever happened since.
	nodeBefore map[string]time.Time
	// nodeRevoked: nodes revoked and not enrolled again since: refused altogether.
	nodeRevoked map[string]bool
}

type userKey struct {
	user      string
	principal string // arn:aws:iam::ACCOUNT:user/NAME, built once per refresh
	secret    string
	active    bool
}

var _ sigv4.CredentialSource = (*Service)(nil)

// New validates cfg and deps. The service resolves nothing until Refresh has loaded the
// snapshots once.
func New(cfg Config, deps Deps) (*Service, error) {
	var problems []error
	if !arn.ValidAccount(cfg.Account) {
		problems = append(problems, fmt.Errorf("account id %q is not 12 digits", cfg.Account))
	}
	if cfg.MaxSessionDuration < 0 {
		problems = append(problems, fmt.Errorf("max session duration %s is negative", cfg.MaxSessionDuration))
	}
	if cfg.RefreshInterval < 0 {
		problems = append(problems, fmt.Errorf("refresh interval %s is negative", cfg.RefreshInterval))
	}
	if cfg.MaxStale < 0 {
		problems = append(problems, fmt.Errorf("max stale %s is negative", cfg.MaxStale))
	}
	if deps.Revocations == nil {
		problems = append(problems, errors.New("a revocation store is required"))
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("new identity service: %w", errors.Join(problems...))
	}
	s := &Service{
		account:    cfg.Account,
		maxSession: cfg.MaxSessionDuration,
		interval:   cfg.RefreshInterval,
		maxStale:   cfg.MaxStale,
		now:        cfg.Now,
		rand:       cfg.Rand,
		log:        cfg.Logger,
		deps:       deps,
		tokenKeys:  cfg.TokenKeys,
	}
	if s.maxSession == 0 {
		s.maxSession = DefaultMaxSessionDuration
	}
	if s.interval == 0 {
		s.interval = DefaultRefreshInterval
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	s.log = s.log.With("component", "identity")
	ch := make(chan struct{})
	s.changed.Store(&ch)
	sealer, err := NewSealer(SealerConfig{TokenKeys: cfg.TokenKeys, MaxSessionDuration: s.maxSession, Now: s.now, Rand: s.rand})
	if err != nil {
		return nil, fmt.Errorf("new identity service: %w", err)
	}
	s.sealer = sealer
	return s, nil
}

// Sealer returns the service's token sealer (its ring follows the store on every Refresh).
func (s *Service) Sealer() *Sealer { return s.sealer }

// Resolved is a resolved credential and who it belongs to.
type Resolved struct {
	Credential sigv4.Credential
	Account    string  // the principal's account id
	User       string  // long-term keys: the user's name
	Claims     *Claims // session credentials: the opened token (read-only); nil for long-term keys
}

// Resolve returns the credential for accessKeyID. ASIA ids are resolved from the session
// token alone (no store lookup): it must open, be unexpired, carry this access key id and
// not be revoked. AKIA ids come from the access key snapshot and must be Active.
func (s *Service) Resolve(ctx context.Context, accessKeyID, sessionToken string) (Resolved, error) {
	snap := s.snap.Load()
	if snap == nil {
		return Resolved{}, ErrNotLoaded
	}
	if err := s.Fresh(); err != nil {
		return Resolved{}, err
	}
	switch {
	case ValidAccessKeyID(accessKeyID, PrefixTemporary):
		return s.resolveSession(snap, accessKeyID, sessionToken)
	case ValidAccessKeyID(accessKeyID, PrefixLongTerm):
		if sessionToken != "" {
			return Resolved{}, ErrTokenUnexpected
		}
		// Access key ids are identifiers, not secrets (they are logged by CloudTrail), so a
		// map lookup's timing reveals nothing the caller could not learn anyway.
		k := snap.keys[accessKeyID]
		switch {
		case k == nil:
			return Resolved{}, ErrAccessKeyUnknown
		case !k.active:
			return Resolved{}, ErrAccessKeyInactive
		}
		return Resolved{
			Credential: sigv4.Credential{AccessKeyID: accessKeyID, SecretAccessKey: k.secret, Principal: k.principal},
			Account:    s.account,
			User:       k.user,
		}, nil
	default:
		return Resolved{}, ErrAccessKeyUnknown
	}
}

func (s *Service) resolveSession(snap *snapshot, accessKeyID, token string) (Resolved, error) {
	c, err := s.checkSession(snap, accessKeyID, token)
	if err != nil {
		return Resolved{}, err
	}
	return Resolved{
		Credential: sigv4.Credential{
			AccessKeyID:     c.AccessKeyID,
			SecretAccessKey: c.SecretAccessKey,
			SessionToken:    token,
			Principal:       c.Principal,
			Expires:         c.Expires,
		},
		Account: s.account,
		Claims:  c,
	}, nil
}

// checkSession opens a session token and checks it against the revocations, on every
// call: the opened token may come from the sealer's cache (its claims shared, read-only),
// its revocation never does. The claims come back with a nil error and with
// ErrSessionRevoked (the token is genuine).
func (s *Service) checkSession(snap *snapshot, accessKeyID, token string) (*Claims, error) {
	if token == "" {
		return nil, ErrTokenMissing
	}
	c, err := s.sealer.openShared(token)
	if err != nil {
		return nil, err
	}
	if subtle.ConstantTimeCompare([]byte(c.AccessKeyID), []byte(accessKeyID)) != 1 {
		return nil, ErrTokenMismatch
	}
	if snap.revokedSession(c.RoleName(), c.Node, c.IssuedAt) {
		return c, ErrSessionRevoked
	}
	return c, nil
}

// revokedSession reports whether a session of role (a role name; "" for a user's session)
// issued at issued to node ("" when not a node's) is revoked.
func (snap *snapshot) revokedSession(role, node string, issued time.Time) bool {
	// "Revoking IAM role temporary security credentials": a deny on aws:TokenIssueTime
	// earlier than the revocation time, for every session of the role.
	if before, ok := snap.revoked[role]; ok && issued.Before(before) {
		return true
	}
	// A removed node's sessions: every one issued to it before its revocation, and any
	// while it stays revoked.
	if node != "" && len(snap.nodeBefore) > 0 {
		if before, ok := snap.nodeBefore[node]; ok && issued.Before(before) || snap.nodeRevoked[node] {
			return true
		}
	}
	return false
}

// SessionRevoked reports whether credentials issued at issued with a session of role to
// node are revoked now: the role's sessions were revoked after they were issued, or the
// node's, or the node stays removed. The egress proxy asks it of a node's proxy
// credentials, which are issued with its role session. True before the first load (fail
// closed). It reads the snapshot: no lock, no I/O.
func (s *Service) SessionRevoked(role, node string, issued time.Time) bool {
	snap := s.snap.Load()
	return snap == nil || snap.revokedSession(role, node, issued)
}

// SessionState reports whether a session credential would resolve now: nil, or why not
// (ErrSessionRevoked, ErrTokenExpired, ErrTokenTampered, ErrStale...). The claims are
// returned when the token is genuine and unexpired, revoked or not, so a caller can tell
// whose session it is (STS's node watch checks a node asks about its own).
func (s *Service) SessionState(accessKeyID, token string) (*Claims, error) {
	snap := s.snap.Load()
	if snap == nil {
		return nil, ErrNotLoaded
	}
	if err := s.Fresh(); err != nil {
		return nil, err
	}
	if !ValidAccessKeyID(accessKeyID, PrefixTemporary) {
		return nil, ErrAccessKeyUnknown
	}
	return s.checkSession(snap, accessKeyID, token)
}

type captureKey struct{}

// Capture returns a context that records what LookupCredential resolves under it, so the
// caller of sigv4.Verify gets the session claims (principal, tags, issue time, source
// identity, node network) for the request context without opening the token twice.
func Capture(ctx context.Context) (context.Context, *Resolved) {
	r := new(Resolved)
	return context.WithValue(ctx, captureKey{}, r), r
}

// Captured is Capture's context as a value the caller keeps (in a request's own storage,
// so it costs no allocation): set Context to the parent, pass a pointer to it, and read
// Resolved after the lookup.
type Captured struct {
	context.Context
	Resolved Resolved
}

// Value answers Capture's key with c.Resolved and every other from the parent.
func (c *Captured) Value(key any) any {
	if key == (captureKey{}) {
		return &c.Resolved
	}
	return c.Context.Value(key)
}

// LookupCredential implements sigv4.CredentialSource. Refusals wrap the sigv4 sentinel the
// verifier maps to AWS's error code; a context from Capture receives the resolution.
func (s *Service) LookupCredential(ctx context.Context, accessKeyID, sessionToken string) (sigv4.Credential, error) {
	r, err := s.Resolve(ctx, accessKeyID, sessionToken)
	if err != nil {
		return sigv4.Credential{}, err
	}
	if dst, ok := ctx.Value(captureKey{}).(*Resolved); ok {
		*dst = r
	}
	return r.Credential, nil
}

// Refresh reloads access keys, sealing keys and revocations from the store and swaps in new
// snapshots. On error the previous snapshots stay in place.
func (s *Service) Refresh(ctx context.Context) error {
	s.refreshMu.Lock()
	defer s.refreshMu.Unlock()
	return s.refreshLocked(ctx)
}

func (s *Service) refreshLocked(ctx context.Context) error {
	var version int64
	started := s.now()
	if s.deps.Changes != nil {
		// Read the counter first: a write that lands during the load bumps it past this
		// value, so the next poll reloads again instead of missing the write.
		v, err := s.deps.Changes.Version(ctx)
		if err != nil {
			return fmt.Errorf("refresh credentials: read store version: %w", err)
		}
		if cur := s.snap.Load(); cur != nil && v < cur.version {
			// The counter never goes down: this is another database (a restored backup, a
			// lagging replica). Never trade state this replica has seen for older state
			// that may allow a revoked session again.
			return fmt.Errorf("refresh credentials: store version %d is older than the %d already loaded; keeping the newer state", v, cur.version)
		}
		version = v
	}
	var keys []AccessKey
	var sealing []SealingKey
	var err error
	if s.deps.AccessKeys != nil {
		if keys, err = s.deps.AccessKeys.ListAccessKeys(ctx, ""); err != nil {
			return fmt.Errorf("refresh credentials: list access keys: %w", err)
		}
	}
	if s.deps.SealingKeys != nil {
		if sealing, err = s.deps.SealingKeys.ListSealingKeys(ctx); err != nil {
			return fmt.Errorf("refresh credentials: list sealing keys: %w", err)
		}
	}
	revs, err := s.deps.Revocations.ListRevocations(ctx)
	if err != nil {
		return fmt.Errorf("refresh credentials: list revocations: %w", err)
	}
	var enrolled map[string]time.Time
	if s.deps.Nodes != nil && hasNodeRevocation(revs) {
		nodes, err := s.deps.Nodes.ListNodes(ctx)
		if err != nil {
			return fmt.Errorf("refresh credentials: list nodes: %w", err)
		}
		enrolled = make(map[string]time.Time, len(nodes))
		for _, n := range nodes {
			enrolled[n.Name] = n.EnrolledAt
		}
	}

	next := &snapshot{
		version: version,
		keys:    make(map[string]*userKey, len(keys)),
		revoked: make(map[string]time.Time, len(revs)),
	}
	for _, k := range keys {
		if !ValidAccessKeyID(k.ID, PrefixLongTerm) || !validSecret(k.Secret) || k.User == "" {
			// Never usable; say which key (ids are not secret), never its secret.
			s.log.Warn("skipping malformed access key", "access_key_id", k.ID, "user", k.User)
			continue
		}
		next.keys[k.ID] = &userKey{
			user:      k.User,
			principal: "arn:aws:iam::" + s.account + ":user/" + k.User,
			secret:    k.Secret,
			active:    k.Status == StatusActive, // anything else fails closed
		}
	}
	for _, r := range revs {
		switch {
		case r.Role != "":
			if prev, ok := next.revoked[r.Role]; !ok || r.Before.After(prev) {
				next.revoked[r.Role] = r.Before
			}
		case r.Node != "":
			if next.nodeBefore == nil {
				next.nodeBefore, next.nodeRevoked = map[string]time.Time{}, map[string]bool{}
			}
			if prev, ok := next.nodeBefore[r.Node]; !ok || r.Before.After(prev) {
				next.nodeBefore[r.Node] = r.Before
			}
		}
	}
	for node, before := range next.nodeBefore {
		// Enrolled again (with a new join token) after the revocation: admitted anew.
		if at, ok := enrolled[node]; !ok || !at.After(before) {
			next.nodeRevoked[node] = true
		}
	}
	if err := s.sealer.SetKeys(sealing); err != nil {
		return fmt.Errorf("refresh credentials: %w", err)
	}
	s.snap.Store(next)
	s.markSynced(started)
	// Wake everyone waiting for a change (Changed); they re-read what they watch.
	ch := make(chan struct{})
	close(*s.changed.Swap(&ch))
	return nil
}

func hasNodeRevocation(revs []Revocation) bool {
	for _, r := range revs {
		if r.Node != "" {
			return true
		}
	}
	return false
}

// Changed returns a channel that is closed the next time the snapshots are replaced
// (every reload after a store change, or an administrative write here). Take it before
// reading what you watch, then wait on it: a change in between is not missed.
func (s *Service) Changed() <-chan struct{} { return *s.changed.Load() }

// NodeRevocation returns the time before which every session issued to node is refused,
// and whether there is one.
func (s *Service) NodeRevocation(node string) (time.Time, bool) {
	snap := s.snap.Load()
	if snap == nil {
		return time.Time{}, false
	}
	t, ok := snap.nodeBefore[node]
	return t, ok
}

// NodeRevoked reports whether a node was removed (`phantom node revoke`) and not enrolled
// again since: its certificate and every session it holds are refused. False before the
// first load.
func (s *Service) NodeRevoked(node string) bool {
	snap := s.snap.Load()
	return snap != nil && snap.nodeRevoked[node]
}

// markSynced records that the store confirmed the snapshots as of t (taken before the
// read that confirmed them, so staleness is never underestimated).
func (s *Service) markSynced(t time.Time) {
	n := t.UnixNano()
	for {
		old := s.synced.Load()
		if n <= old || s.synced.CompareAndSwap(old, n) {
			return
		}
	}
}

// SyncedAt is when the store last confirmed the snapshots (the start of the read that
// confirmed them); zero before the first load.
func (s *Service) SyncedAt() time.Time {
	if n := s.synced.Load(); n != 0 {
		return time.Unix(0, n)
	}
	return time.Time{}
}

// Fresh returns ErrStale when MaxStale is set and the store has not confirmed the
// snapshots for longer than that, ErrNotLoaded before the first load, and nil otherwise.
func (s *Service) Fresh() error {
	if s.snap.Load() == nil {
		return ErrNotLoaded
	}
	if s.maxStale > 0 && s.now().Sub(time.Unix(0, s.synced.Load())) > s.maxStale {
		return ErrStale
	}
	return nil
}

// Run refreshes at once if nothing is loaded yet, then polls the store's change counter
// every RefreshInterval, and at once on each notification from Deps.Notify, and refreshes
// when the counter moved, until ctx is done. Failures are logged and retried on the next
// tick; the snapshots in place keep serving (up to MaxStale).
func (s *Service) Run(ctx context.Context) error {
	t := time.NewTicker(s.interval)
	defer t.Stop()
	var changed <-chan struct{}
	if s.deps.Notify != nil {
		ch, cancel := s.deps.Notify.Subscribe()
		defer cancel()
		changed = ch
	}
	// During an outage the first failure is logged at once, then one line a minute with
	// the count: a poll every second must not flood the log.
	var failures int
	var logged time.Time
	for {
		// Each attempt is bounded, so a store that hangs cannot stall the loop past the
		// point where the snapshots go stale.
		rctx, cancel := context.WithTimeout(ctx, s.attemptTimeout())
		err := s.refreshIfChanged(rctx)
		cancel()
		switch {
		case err != nil && ctx.Err() == nil:
			failures++
			if failures == 1 || s.now().Sub(logged) >= failureLogInterval {
				s.log.Error("refresh failed; keeping the previous credentials", "error", err, "failures", failures, "fresh", s.Fresh() == nil)
				logged = s.now()
			}
		case err == nil && failures > 0:
			s.log.Info("store reachable again; credentials refreshed", "failures", failures)
			failures = 0
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		case <-changed:
		}
	}
}

// failureLogInterval spaces the ERROR lines of a refresh that keeps failing.
const failureLogInterval = time.Minute

// attemptTimeout bounds one refresh: the polling interval, at least a second.
func (s *Service) attemptTimeout() time.Duration {
	return max(s.interval, time.Second)
}

func (s *Service) refreshIfChanged(ctx context.Context) error {
	s.refreshMu.Lock()
	defer s.refreshMu.Unlock()
	if cur := s.snap.Load(); cur != nil && s.deps.Changes != nil {
		started := s.now()
		v, err := s.deps.Changes.Version(ctx)
		if err != nil {
			return fmt.Errorf("refresh credentials: read store version: %w", err)
		}
		if v == cur.version {
			// Open checks retirement times itself, so there is nothing to redo; the store
			// has confirmed the snapshots are current.
			s.markSynced(started)
			return nil
		}
	}
	return s.refreshLocked(ctx)
}
