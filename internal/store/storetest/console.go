package storetest

import (
	"crypto/sha256"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/phantom-perimeter/phantom/internal/store"
)

// The web console's sessions and sign-in limiter.
func consoleCases() []struct {
	name string
	fn   func(t *testing.T, s Store)
} {
	return []struct {
		name string
		fn   func(t *testing.T, s Store)
	}{
		{"ConsoleSessions", testConsoleSessions},
		{"ConsoleSessionInvalid", testConsoleSessionInvalid},
		{"LimitBuckets", testLimitBuckets},
		{"LimitBucketsRace", testLimitBucketsRace},
		{"ConsoleSSO", testConsoleSSO},
	}
}

func consoleSession(cookie string, now time.Time) store.ConsoleSession {
	return store.ConsoleSession{
		ID: sha256.Sum256([]byte(cookie)), AccessKeyID: "AKIAALICEEXAMPLE0001", SecretHash: sha256.Sum256([]byte("secret")),
		Principal: "arn:aws:iam::123456789012:user/alice", CreatedAt: now, ExpiresAt: now.Add(time.Hour), LastSeen: now,
	}
}

// testConsoleSessions: a session is stored under its id's hash, read back whole, touched
// forward only, refused a second time under the same id, bounded in number, deleted at
// sign-out and when ended; none of it moves Version.
func testConsoleSessions(t *testing.T, s Store) {
	now := time.Unix(1_800_000_000, 0).UTC()
	v := version(t, s)
	a := consoleSession("cookie-a", now)
	a.SessionToken = "token-of-a"
	ok, err := s.PutConsoleSession(ctx(t), a, 2)
	must(t, err)
	if !ok {
		t.Fatal("the first session was refused")
	}
	got, err := s.GetConsoleSession(ctx(t), a.ID)
	must(t, err)
	if got != a {
		t.Fatalf("read back %+v, want %+v", got, a)
	}
	if _, err := s.PutConsoleSession(ctx(t), a, 2); !errors.Is(err, store.ErrExists) {
		t.Fatalf("the same id again: %v, want ErrExists", err)
	}
	b := consoleSession("cookie-b", now)
	if ok, err := s.PutConsoleSession(ctx(t), b, 2); err != nil || !ok {
		t.Fatalf("the second session: %v %v", ok, err)
	}
	if ok, err := s.PutConsoleSession(ctx(t), consoleSession("cookie-c", now), 2); err != nil || ok {
		t.Fatalf("a third session beyond the bound of 2: %v %v", ok, err)
	}
	must(t, s.TouchConsoleSession(ctx(t), a.ID, now.Add(10*time.Minute)))
	must(t, s.TouchConsoleSession(ctx(t), a.ID, now.Add(5*time.Minute))) // late: no move back
	if got, _ := s.GetConsoleSession(ctx(t), a.ID); !got.LastSeen.Equal(now.Add(10 * time.Minute)) {
		t.Errorf("last seen %s, want %s", got.LastSeen, now.Add(10*time.Minute))
	}
	must(t, s.DeleteConsoleSession(ctx(t), b.ID))
	must(t, s.DeleteConsoleSession(ctx(t), b.ID)) // gone already: no error
	if _, err := s.GetConsoleSession(ctx(t), b.ID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("a signed-out session: %v, want ErrNotFound", err)
	}
	if err := s.TouchConsoleSession(ctx(t), b.ID, now); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("touching a signed-out session: %v, want ErrNotFound", err)
	}
	// Ended: c expired, d idle since before the cutoff; a lives on.
	c := consoleSession("cookie-c", now)
	c.ExpiresAt = now.Add(time.Minute)
	d := consoleSession("cookie-d", now)
	for _, x := range []store.ConsoleSession{c, d} {
		if ok, err := s.PutConsoleSession(ctx(t), x, 10); err != nil || !ok {
			t.Fatalf("put: %v %v", ok, err)
		}
	}
	n, err := s.DeleteEndedConsoleSessions(ctx(t), now.Add(2*time.Minute), now.Add(time.Minute))
	must(t, err)
	if n != 2 {
		t.Errorf("deleted %d ended sessions, want 2", n)
	}
	if _, err := s.GetConsoleSession(ctx(t), a.ID); err != nil {
		t.Errorf("the live session: %v", err)
	}
	if got := version(t, s); got != v {
		t.Errorf("console sessions moved Version from %d to %d", v, got)
	}
}

func testConsoleSessionInvalid(t *testing.T, s Store) {
	now := time.Unix(1_800_000_000, 0)
	for name, mut := range map[string]func(*store.ConsoleSession){
		"no id":        func(c *store.ConsoleSession) { c.ID = [32]byte{} },
		"no key":       func(c *store.ConsoleSession) { c.AccessKeyID = "" },
		"no principal": func(c *store.ConsoleSession) { c.Principal = "" },
		"no expiry":    func(c *store.ConsoleSession) { c.ExpiresAt = time.Time{} },
	} {
		c := consoleSession("cookie-"+name, now)
		mut(&c)
		if _, err := s.PutConsoleSession(ctx(t), c, 10); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if err := s.UpdateLimitBuckets(ctx(t), nil, func([]store.LimitBucket) error { return nil }); err == nil {
		t.Error("an update of no bucket was accepted")
	}
}

// testLimitBuckets: a bucket never stored reads with a zero At; what fn leaves is stored;
// an error from fn stores nothing; idle buckets are deleted.
func testLimitBuckets(t *testing.T, s Store) {
	now := time.Unix(1_800_000_000, 0).UTC()
	v := version(t, s)
	must(t, s.UpdateLimitBuckets(ctx(t), []string{"addr/192.0.2.1", "global"}, func(bs []store.LimitBucket) error {
		for i := range bs {
			if !bs[i].At.IsZero() {
				t.Errorf("a new bucket %s reads %+v", bs[i].Name, bs[i])
			}
			bs[i].Tokens, bs[i].At, bs[i].Pace, bs[i].IdleAt = 4.5, now, now.Add(time.Second), now.Add(time.Minute)
		}
		bs[1].IdleAt = now.Add(time.Hour)
		return nil
	}))
	boom := errors.New("boom")
	if err := s.UpdateLimitBuckets(ctx(t), []string{"global"}, func(bs []store.LimitBucket) error {
		bs[0].Tokens = 0
		return boom
	}); !errors.Is(err, boom) {
		t.Fatalf("fn's error: %v", err)
	}
	must(t, s.UpdateLimitBuckets(ctx(t), []string{"global", "addr/192.0.2.1"}, func(bs []store.LimitBucket) error {
		want := store.LimitBucket{Name: "global", Tokens: 4.5, At: now, Pace: now.Add(time.Second), IdleAt: now.Add(time.Hour)}
		if bs[0] != want || bs[1].Name != "addr/192.0.2.1" || bs[1].Tokens != 4.5 {
			t.Errorf("read back %+v, want %+v first", bs, want)
		}
		return nil
	}))
	n, err := s.DeleteIdleLimitBuckets(ctx(t), now.Add(time.Minute))
	must(t, err)
	if n != 1 {
		t.Errorf("deleted %d idle buckets, want 1", n)
	}
	must(t, s.UpdateLimitBuckets(ctx(t), []string{"addr/192.0.2.1"}, func(bs []store.LimitBucket) error {
		if !bs[0].At.IsZero() {
			t.Errorf("a deleted bucket reads %+v", bs[0])
		}
		bs[0].At, bs[0].Pace, bs[0].IdleAt = now, now, now
		return nil
	}))
	if got := version(t, s); got != v {
		t.Errorf("limit buckets moved Version from %d to %d", v, got)
	}
}

// testLimitBucketsRace: concurrent updates each take a token when one is left; exactly as
// many succeed as there were tokens (no update reads a value another is about to write).
func testLimitBucketsRace(t *testing.T, s Store) {
	now := time.Unix(1_800_000_000, 0).UTC()
	const tokens, racers = 5, 24
	var took atomic.Int32
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range racers {
		wg.Go(func() {
			<-start
			names := []string{"global", "key/AKIAALICEEXAMPLE0001"}
			if i%2 == 1 {
				names = []string{"key/AKIAALICEEXAMPLE0001", "global"} // both orders at once
			}
			err := s.UpdateLimitBuckets(ctx(t), names, func(bs []store.LimitBucket) error {
				for j := range bs {
					if bs[j].At.IsZero() {
						bs[j].Tokens = tokens
					}
					bs[j].At, bs[j].Pace, bs[j].IdleAt = now, now, now.Add(time.Hour)
				}
				if bs[0].Tokens >= 1 {
					bs[0].Tokens--
					bs[1].Tokens--
					took.Add(1)
				}
				return nil
			})
			if err != nil {
				t.Error(err)
			}
		})
	}
	close(start)
	wg.Wait()
	if took.Load() != tokens {
		t.Errorf("%d of %d concurrent updates took a token of %d", took.Load(), racers, tokens)
	}
}

// testConsoleSSO: a sign-on in progress is taken once (of concurrent takes, one gets it),
// not after it expired, and not beyond the bound; expired ones are deleted with ended
// sessions.
func testConsoleSSO(t *testing.T, s Store) {
	now := time.Unix(1_800_000_000, 0).UTC()
	id := sha256.Sum256([]byte("state"))
	ok, err := s.PutConsoleSSO(ctx(t), id, []byte("sealed"), now.Add(time.Minute), 2)
	must(t, err)
	if !ok {
		t.Fatal("refused")
	}
	if _, err := s.PutConsoleSSO(ctx(t), id, []byte("other"), now.Add(time.Minute), 2); !errors.Is(err, store.ErrExists) {
		t.Fatalf("the same id again: %v", err)
	}
	if ok, err := s.PutConsoleSSO(ctx(t), sha256.Sum256([]byte("old")), []byte("x"), now.Add(time.Second), 2); err != nil || !ok {
		t.Fatalf("a second: %v %v", ok, err)
	}
	if ok, err := s.PutConsoleSSO(ctx(t), sha256.Sum256([]byte("third")), []byte("x"), now.Add(time.Minute), 2); err != nil || ok {
		t.Fatalf("a third beyond the bound: %v %v", ok, err)
	}
	if _, err := s.TakeConsoleSSO(ctx(t), sha256.Sum256([]byte("old")), now.Add(time.Second)); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("an expired one: %v", err)
	}
	var got atomic.Int32
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			b, err := s.TakeConsoleSSO(ctx(t), id, now)
			switch {
			case err == nil && string(b) == "sealed":
				got.Add(1)
			case !errors.Is(err, store.ErrNotFound):
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if got.Load() != 1 {
		t.Fatalf("%d concurrent takes got it, want 1", got.Load())
	}
	must(t, func() error {
		_, err := s.PutConsoleSSO(ctx(t), sha256.Sum256([]byte("late")), []byte("x"), now.Add(time.Second), 10)
		return err
	}())
	if _, err := s.DeleteEndedConsoleSessions(ctx(t), now.Add(time.Second), now); err != nil {
		t.Fatal(err)
	}
	if ok, err := s.PutConsoleSSO(ctx(t), sha256.Sum256([]byte("late")), []byte("x"), now.Add(time.Minute), 10); err != nil || !ok {
		t.Fatalf("the expired one was not deleted: %v %v", ok, err)
	}
}
