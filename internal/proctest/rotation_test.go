package proctest

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
)

// TestRotationUnderLoad: while load runs through two endpoints pinned to two gateway
// replicas, the operator rotates the issuing CA, then the root and the issuing CA, then
// the session-token keys. No call fails: connections made under the old CA keep
// verifying, a session sealed before the token-key rotation is still accepted (it is
// used throughout), one sealed after it works at once on both replicas, and every audit
// chain verifies against the CA bundle that now holds both roots and against the store's
// anchors.
func TestRotationUnderLoad(t *testing.T) {
	c := startCluster(t, Config{Gateways: 2, Endpoints: 2, Pin: true, Poll: 500 * time.Millisecond})
	ctx := t.Context()
	user, err := c.CreateUserKey(ctx)
	if err != nil {
		t.Fatal(err)
	}
	old, err := c.AssumeRole(ctx, user, "before-rotation")
	if err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		waitFor(t, 5*time.Second, "the session to work", func() bool { return c.Call(ctx, i, old).Status == 200 })
	}
	var mu sync.Mutex
	creds := old
	tally := &Tally{}
	loadCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- c.Load(loadCtx, LoadOptions{Concurrency: 4, Creds: func() aws.Credentials { mu.Lock(); defer mu.Unlock(); return creds }}, tally)
	}()

	var total Stats
	caBefore := caCount(t, c)
	for _, step := range [][]string{{"ca", "rotate"}, {"ca", "rotate", "--root"}, {"keys", "rotate"}} {
		time.Sleep(1500 * time.Millisecond)
		if _, err := c.Phantom(ctx, step...); err != nil {
			t.Fatal(err)
		}
		s := tally.Take()
		total.Add(s)
		t.Logf("before phantom %v finished: %d calls answered 200, %d failed", step, s.OK, s.ErrorCount())
	}
	if n := caCount(t, c); n != caBefore+3 {
		t.Fatalf("CA certificates: %d before, %d after two issuing CAs and a root", caBefore, n)
	}
	// A session sealed under the new token key, used by half the load from now on; the
	// old one by the other half (Creds alternates).
	fresh, err := c.AssumeRole(ctx, user, "after-rotation")
	if err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		if r := c.Call(ctx, i, fresh); r.Status != 200 {
			t.Errorf("a session sealed under the new key through gateway %d: %+v", i, r)
		}
		if r := c.Call(ctx, i, old); r.Status != 200 {
			t.Errorf("a session sealed under the retired key through gateway %d: %+v", i, r)
		}
	}
	var n int
	mu.Lock()
	creds = fresh
	mu.Unlock()
	go func() {
		for loadCtx.Err() == nil {
			mu.Lock()
			if n++; n%2 == 0 {
				creds = fresh
			} else {
				creds = old
			}
			mu.Unlock()
			time.Sleep(10 * time.Millisecond)
		}
	}()
	time.Sleep(3 * time.Second)
	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	st := total
	st.Add(tally.Take())
	t.Logf("calls under rotation: %d answered 200, %d failed %s", st.OK, st.ErrorCount(), st.ErrorSummary())
	if st.OK == 0 {
		t.Fatal("no call was answered")
	}
	if st.ErrorCount() != 0 {
		t.Errorf("%d calls failed during the rotations: %s", st.ErrorCount(), st.ErrorSummary())
	}

	// Every chain verifies across the change: against the bundle of both roots (the
	// writers' keys were certified by issuing CAs of the first) and the store's anchors.
	verifyChains(t, c)
}

// verifyChains runs phantom audit verify on every chain against the CA bundle STS wrote
// (every root and issuing CA trusted now) and the store's anchors.
func verifyChains(t *testing.T, c *Cluster) {
	t.Helper()
	bundle := filepath.Join(t.TempDir(), "ca.pem")
	pem, err := os.ReadFile(filepath.Join(c.cfg.Dir, "data", "sts", "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bundle, pem, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(c.cfg.Bin, "audit", "verify", c.AuditDir(), "--ca", bundle, "--store", c.cfg.StoreURL)
	cmd.Env = c.env()
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("phantom audit verify after the rotations: %v\n%s", err, out)
	}
}

// caCount is the number of CA certificates the store lists.
func caCount(t *testing.T, c *Cluster) int {
	t.Helper()
	out, err := c.Phantom(t.Context(), "ca", "list")
	if err != nil {
		t.Fatal(err)
	}
	var l struct{ CACertificates []struct{ Serial string } }
	if err := json.Unmarshal(out, &l); err != nil {
		t.Fatal(err)
	}
	return len(l.CACertificates)
}
