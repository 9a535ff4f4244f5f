package identity

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/phantom-perimeter/phantom/internal/sigv4"
)

// notifier is a Notifier the test fires by hand.
type notifier struct {
	mu   sync.Mutex
	subs []chan struct{}
}

func (n *notifier) Subscribe() (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	n.mu.Lock()
	n.subs = append(n.subs, ch)
	n.mu.Unlock()
	return ch, func() {}
}

func (n *notifier) fire() {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, ch := range n.subs {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

// TestStaleSnapshotsFailClosed: a replica whose store stops answering keeps serving for
// MaxStale, then refuses every credential, and serves again once the store answers.
func TestStaleSnapshotsFailClosed(t *testing.T) {
	ctx := context.Background()
	c := newClock(t0)
	st := newFakeStore()
	admin := newTestService(t, st, c)
	k, err := admin.CreateAccessKey(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	claims, tok := sessionFor(t, admin, "app")
	s, err := New(Config{Account: testAccount, Now: c.Now, MaxStale: 30 * time.Second, Logger: slog.New(slog.DiscardHandler)}, st.deps())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Fresh(); !errors.Is(err, ErrNotLoaded) {
		t.Errorf("Fresh before the first load = %v, want ErrNotLoaded", err)
	}
	if !s.SyncedAt().IsZero() {
		t.Errorf("SyncedAt before the first load = %v, want zero", s.SyncedAt())
	}
	if err := s.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if got := s.SyncedAt(); !got.Equal(c.Now()) {
		t.Errorf("SyncedAt after a load = %v, want %v", got, c.Now())
	}
	lookups := func() (error, error) {
		_, e1 := s.LookupCredential(ctx, k.ID, "")
		_, e2 := s.LookupCredential(ctx, claims.AccessKeyID, tok)
		return e1, e2
	}

	st.setFail(errors.New("connection refused"))
	c.Advance(29 * time.Second)
	if err := s.refreshIfChanged(ctx); err == nil {
		t.Fatal("refresh succeeded against a failing store")
	}
	if e1, e2 := lookups(); e1 != nil || e2 != nil {
		t.Fatalf("within MaxStale: key %v, session %v; want both served", e1, e2)
	}
	c.Advance(2 * time.Second)
	e1, e2 := lookups()
	for _, err := range []error{e1, e2, s.Fresh()} {
		if !errors.Is(err, ErrStale) {
			t.Errorf("past MaxStale: %v, want ErrStale", err)
		}
		// It must not look like the caller's fault to the verifier.
		for _, sentinel := range []error{sigv4.ErrInvalidToken, sigv4.ErrUnknownAccessKey, sigv4.ErrExpiredToken} {
			if errors.Is(err, sentinel) {
				t.Errorf("ErrStale matches %v", sentinel)
			}
		}
	}

	st.setFail(nil)
	if err := s.refreshIfChanged(ctx); err != nil {
		t.Fatal(err)
	}
	if e1, e2 := lookups(); e1 != nil || e2 != nil {
		t.Errorf("after the store answered again: key %v, session %v", e1, e2)
	}
}

// TestUnchangedVersionConfirmsFreshness: polls that find nothing new still count as the
// store confirming the snapshots.
func TestUnchangedVersionConfirmsFreshness(t *testing.T) {
	ctx := context.Background()
	c := newClock(t0)
	st := newFakeStore()
	newTestService(t, st, c) // creates the sealing key
	s, err := New(Config{Account: testAccount, Now: c.Now, MaxStale: 10 * time.Second}, st.deps())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	for range 5 {
		c.Advance(8 * time.Second)
		if err := s.refreshIfChanged(ctx); err != nil {
			t.Fatal(err)
		}
		if err := s.Fresh(); err != nil {
			t.Fatalf("after an unchanged poll: %v", err)
		}
	}
}

// TestNotifyRefreshesAtOnce: with a Notifier, Run picks a revocation up on the
// notification, long before its (here: one hour) polling interval.
func TestNotifyRefreshesAtOnce(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := newClock(t0)
	st := newFakeStore()
	admin := newTestService(t, st, c)
	claims, tok := sessionFor(t, admin, "app")
	n := new(notifier)
	deps := st.deps()
	deps.Notify = n
	replica, err := New(Config{Account: testAccount, Now: c.Now, RefreshInterval: time.Hour}, deps)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- replica.Run(ctx) }()
	waitFor(t, "the replica's first load", func() bool {
		_, err := replica.LookupCredential(ctx, claims.AccessKeyID, tok)
		return err == nil
	})
	c.Advance(time.Second)
	if _, err := admin.RevokeSessions(ctx, "app"); err != nil {
		t.Fatal(err)
	}
	n.fire()
	waitFor(t, "the replica to refuse the revoked session", func() bool {
		_, err := replica.LookupCredential(ctx, claims.AccessKeyID, tok)
		return errors.Is(err, ErrSessionRevoked)
	})
	cancel()
	<-done
}

// TestStoreGoingBackIsRefused: a store whose change counter is lower than what a replica
// has loaded (a restored backup, another database) never replaces the newer state, so a
// revocation seen stays in force.
func TestStoreGoingBackIsRefused(t *testing.T) {
	ctx := context.Background()
	c := newClock(t0)
	st := newFakeStore()
	s := newTestService(t, st, c)
	claims, tok := sessionFor(t, s, "app")
	c.Advance(time.Second)
	if _, err := s.RevokeSessions(ctx, "app"); err != nil {
		t.Fatal(err)
	}
	if err := s.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	st.mu.Lock()
	st.revs = map[string]time.Time{}
	st.version = 1
	st.mu.Unlock()
	if err := s.Refresh(ctx); err == nil {
		t.Error("refresh accepted a store whose version went down")
	}
	if _, err := s.LookupCredential(ctx, claims.AccessKeyID, tok); !errors.Is(err, ErrSessionRevoked) {
		t.Errorf("revoked session after the store went back: %v, want ErrSessionRevoked", err)
	}
}

// levelCounter counts log records per level and message.
type levelCounter struct {
	mu sync.Mutex
	n  map[string]int
}

func (h *levelCounter) Enabled(context.Context, slog.Level) bool { return true }
func (h *levelCounter) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	h.n[r.Level.String()+" "+r.Message]++
	h.mu.Unlock()
	return nil
}
func (h *levelCounter) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *levelCounter) WithGroup(string) slog.Handler      { return h }
func (h *levelCounter) count(key string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.n[key]
}

// TestOutageLogsOncePerMinute: a store that keeps failing is logged as an ERROR at the
// first failure and then once a minute, not on every poll; its return is logged once.
func TestOutageLogsOncePerMinute(t *testing.T) {
	ctx := context.Background()
	c := newClock(t0)
	st := newFakeStore()
	newTestService(t, st, c)
	logs := &levelCounter{n: map[string]int{}}
	s, err := New(Config{Account: testAccount, Now: c.Now, RefreshInterval: time.Millisecond, Logger: slog.New(logs)}, st.deps())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	const failed, back = "ERROR refresh failed; keeping the previous credentials", "INFO store reachable again; credentials refreshed"
	wait := func(key string, n int) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); logs.count(key) < n; {
			if time.Now().After(deadline) {
				t.Fatalf("%q logged %d times, want %d", key, logs.count(key), n)
			}
			time.Sleep(time.Millisecond)
		}
	}
	polls := func() int { return st.versionCalls() }
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { s.Run(rctx); close(done) }()
	defer func() { cancel(); <-done }()

	st.setFail(errors.New("connection refused"))
	wait(failed, 1)
	for p := polls(); polls() < p+50; {
		time.Sleep(time.Millisecond)
	}
	if n := logs.count(failed); n != 1 {
		t.Fatalf("50 failed polls within a minute logged %d ERRORs, want 1", n)
	}
	c.Advance(61 * time.Second)
	wait(failed, 2)
	for p := polls(); polls() < p+50; {
		time.Sleep(time.Millisecond)
	}
	if n := logs.count(failed); n != 2 {
		t.Fatalf("a minute later: %d ERRORs, want 2", n)
	}
	st.setFail(nil)
	wait(back, 1)
}
