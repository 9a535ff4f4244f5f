package console

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/phantom-perimeter/phantom/internal/testenv"
)

// signInFrom posts the sign-in form as a browser at addr would (its CSRF cookie and
// token), straight to the handler.
func (e *env) signInFrom(addr, key, secret string) *httptest.ResponseRecorder {
	form := url.Values{"csrf": {"token-" + addr}, "accessKeyId": {key}, "secretAccessKey": {secret}}
	r := httptest.NewRequest("POST", "https://console.example/signin", strings.NewReader(form.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r.AddCookie(&http.Cookie{Name: "__Host-phantom-signin", Value: "token-" + addr})
	r.RemoteAddr = addr
	w := httptest.NewRecorder()
	e.h.ServeHTTP(w, r)
	return w
}

// TestSignInFloodNoLockout (issue 15, attack 8): ten thousand addresses failing within
// seconds do not lock a new address out: its right credential still signs in, answered
// more slowly at worst.
func TestSignInFloodNoLockout(t *testing.T) {
	if testing.Short() {
		t.Skip("10,000 sign-ins")
	}
	e := newEnv(t)
	var wg sync.WaitGroup
	for i := range 10000 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			addr := fmt.Sprintf("10.%d.%d.%d:40000", i>>16, (i>>8)&0xff, i&0xff)
			if w := e.signInFrom(addr, aliceKey, "wrong"); w.Code != http.StatusUnauthorized {
				t.Errorf("%s: %d", addr, w.Code)
			}
		}()
	}
	wg.Wait()
	start := time.Now()
	w := e.signInFrom("192.0.2.10:50000", aliceKey, secretOf)
	took := time.Since(start)
	if w.Code != http.StatusSeeOther {
		t.Fatalf("a new address with the right credential: %d (Retry-After %q), want 303", w.Code, w.Header().Get("Retry-After"))
	}
	testenv.Latency(t, "the sign-in after the flood", took, maxDelay+time.Second, 4*maxDelay)
}

// failAt counts a failed sign-in from ip for key.
func failAt(t *testing.T, l *limiter, ip, key string, now time.Time) {
	t.Helper()
	tk, ok, _, _, err := l.admit(t.Context(), ip, key, now)
	if err != nil || !ok {
		t.Fatalf("a failure to count from %s was not admitted: %v %v", ip, ok, err)
	}
	if err := l.settle(t.Context(), tk, true, now); err != nil {
		t.Fatal(err)
	}
}

// admitAt admits an attempt and settles it as not failed (signed in).
func admitAt(t *testing.T, l *limiter, ip, key string, now time.Time) (ok bool, retry, delay time.Duration) {
	t.Helper()
	tk, ok, retry, delay, err := l.admit(t.Context(), ip, key, now)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.settle(t.Context(), tk, false, now); err != nil {
		t.Fatal(err)
	}
	return ok, retry, delay
}

// TestLimiter: the three kinds of buckets of the sign-in limiter on a still clock.
func TestLimiter(t *testing.T) {
	now := time.Date(2026, 11, 29, 1, 0, 0, 0, time.UTC)
	newLimiter := func(t *testing.T) *limiter { return &limiter{st: openSQLite(t, t.TempDir())} }
	t.Run("an address that spent its failures is refused until it refills", func(t *testing.T) {
		l := newLimiter(t)
		for range signinBurst {
			failAt(t, l, "192.0.2.1", "", now)
		}
		if ok, retry, _ := admitAt(t, l, "192.0.2.1", "", now); ok || retry <= 0 || retry > signinRefill {
			t.Fatalf("ok %v retry %s", ok, retry)
		}
		if ok, _, _ := admitAt(t, l, "192.0.2.1", "", now.Add(signinRefill)); !ok {
			t.Fatal("still refused after a refill")
		}
		if ok, _, d := admitAt(t, l, "192.0.2.2", "", now); !ok || d != 0 {
			t.Fatalf("another address: %v, delay %s", ok, d)
		}
	})
	t.Run("attempts that did not fail give their tokens back", func(t *testing.T) {
		l := newLimiter(t)
		for range 3 * signinBurst {
			if ok, _, _ := admitAt(t, l, "192.0.2.3", aliceKey, now); !ok {
				t.Fatal("a successful sign-in drained the address")
			}
		}
	})
	t.Run("attempts in flight count", func(t *testing.T) {
		l := newLimiter(t)
		for range signinBurst {
			if _, ok, _, _, err := l.admit(t.Context(), "192.0.2.4", "", now); err != nil || !ok {
				t.Fatalf("admit: %v %v", ok, err)
			}
		}
		if _, ok, _, _, err := l.admit(t.Context(), "192.0.2.4", "", now); err != nil || ok {
			t.Fatalf("a sixth attempt while five are unsettled: %v %v", ok, err)
		}
	})
	t.Run("a key that spent its failures is paced, never refused", func(t *testing.T) {
		l := newLimiter(t)
		for i := range keyBurst {
			failAt(t, l, fmt.Sprintf("198.51.100.%d", i), aliceKey, now)
		}
		var delays []time.Duration
		for i := range 4 {
			ok, _, d := admitAt(t, l, fmt.Sprintf("203.0.113.%d", i), aliceKey, now)
			if !ok {
				t.Fatal("the key's owner was refused")
			}
			delays = append(delays, d)
		}
		if delays[0] != 0 || delays[1] != keyRefill || delays[3] != maxDelay {
			t.Errorf("delays %v: want 0, %s, then capped at %s", delays, keyRefill, maxDelay)
		}
		if _, _, d := admitAt(t, l, "203.0.113.9", bobKey, now); d != 0 {
			t.Errorf("another key waits %s", d)
		}
	})
	t.Run("a flood from everywhere slows every answer and locks nobody out", func(t *testing.T) {
		l := newLimiter(t)
		for i := range globalBurst + 1 {
			failAt(t, l, fmt.Sprintf("10.0.%d.%d", i>>8, i&0xff), "", now)
		}
		_, _, d1 := admitAt(t, l, "192.0.2.50", aliceKey, now)
		_, _, d2 := admitAt(t, l, "192.0.2.51", aliceKey, now)
		if d2 <= d1 || d2 > maxDelay {
			t.Errorf("paced delays %s then %s", d1, d2)
		}
		for range 200 {
			if ok, _, d := admitAt(t, l, "192.0.2.52", bobKey, now); !ok || d > maxDelay {
				t.Fatalf("refused or waiting %s", d)
			}
		}
		if _, _, d := admitAt(t, l, "192.0.2.53", "", now.Add(time.Hour)); d != 0 {
			t.Errorf("an hour later: %s", d)
		}
	})
	t.Run("idle buckets are deleted", func(t *testing.T) {
		db := openSQLite(t, t.TempDir())
		l := &limiter{st: db}
		for i := range 100 {
			failAt(t, l, fmt.Sprintf("10.1.0.%d", i), fmt.Sprintf("AKIA%016d", i), now)
		}
		if n, err := db.DeleteIdleLimitBuckets(t.Context(), now.Add(time.Second)); err != nil || n != 0 {
			t.Fatalf("deleted %d buckets before any refilled: %v", n, err)
		}
		// A key refills in 3 s, the global bucket in 100 × 50 ms, an address in 12 s.
		if n, err := db.DeleteIdleLimitBuckets(t.Context(), now.Add(signinRefill)); err != nil || n != 201 {
			t.Fatalf("deleted %d idle buckets, want 201: %v", n, err)
		}
	})
}
