package proctest

import (
	"context"
	"fmt"
	"os/exec"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/phantom-perimeter/phantom/internal/audit"
	"github.com/phantom-perimeter/phantom/internal/store/storetest"
	"github.com/phantom-perimeter/phantom/internal/testenv"
)

// load calls through the endpoints from workers goroutines until stop is closed; a
// worker whose call got no answer simply calls again (the client's retry).
type load struct {
	mu      sync.Mutex
	replies []timedReply
}

type timedReply struct {
	at time.Time
	Reply
}

func (l *load) run(ctx context.Context, c *Cluster, creds aws.Credentials, workers int, stop <-chan struct{}) {
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				r := c.Call(ctx, (w+i)%len(c.endpoints), creds)
				l.mu.Lock()
				l.replies = append(l.replies, timedReply{time.Now(), r})
				l.mu.Unlock()
				if r.Err != nil {
					time.Sleep(10 * time.Millisecond)
				}
			}
		})
	}
	wg.Wait()
}

// statuses counts replies by status (0: no answer) in [from, to).
func (l *load) statuses(from, to time.Time) map[int]int {
	l.mu.Lock()
	defer l.mu.Unlock()
	m := map[int]int{}
	for _, r := range l.replies {
		if !r.at.Before(from) && r.at.Before(to) {
			m[r.Status]++
		}
	}
	return m
}

// errorTypes counts the refusals by x-amzn-ErrorType and request id, for failure messages.
func (l *load) errorTypes() map[string]int {
	l.mu.Lock()
	defer l.mu.Unlock()
	m := map[string]int{}
	for _, r := range l.replies {
		if r.Err == nil && r.Status != 200 {
			m[r.ErrorType+" "+r.RequestID]++
		}
	}
	return m
}

// eventsByRequestID reads every chain in dir and counts events per requestID.
func eventsByRequestID(t *testing.T, dir string) map[string]int {
	t.Helper()
	chains, err := audit.Chains(dir)
	if err != nil {
		t.Fatal(err)
	}
	n := map[string]int{}
	for _, ch := range chains {
		err := audit.ReadChain(dir, ch, 0, func(e audit.Entry) error {
			ev, err := e.Decode()
			if err != nil {
				return err
			}
			if ev.RequestID != "" {
				n[ev.RequestID]++
			}
			return nil
		})
		if err != nil {
			t.Fatalf("read chain %s: %v", ch, err)
		}
	}
	return n
}

// recordsPerChain counts the records of every chain in dir.
func recordsPerChain(t *testing.T, dir string) map[string]int64 {
	t.Helper()
	chains, err := audit.Chains(dir)
	if err != nil {
		t.Fatal(err)
	}
	n := map[string]int64{}
	for _, ch := range chains {
		if err := audit.ReadChain(dir, ch, 0, func(audit.Entry) error { n[ch]++; return nil }); err != nil {
			t.Fatalf("read chain %s: %v", ch, err)
		}
	}
	return n
}

func verifyAudit(t *testing.T, c *Cluster) {
	t.Helper()
	cmd := exec.Command(c.cfg.Bin, "audit", "verify", c.AuditDir())
	cmd.Env = c.env()
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("phantom audit verify: %v\n%s", err, out)
	}
}

// TestKillGatewayUnderLoad: under load through two endpoints, one of two gateway
// replicas is killed with SIGKILL and later restarted, and so is the detector. Calls
// keep being answered by the other replica meanwhile; afterwards every call that got an
// answer has exactly one audit event (by x-amzn-RequestId, across every chain), every
// chain verifies, and the detector has consumed every record of every chain exactly
// once (its committed count per chain equals the chain's records).
func TestKillGatewayUnderLoad(t *testing.T) {
	c := startCluster(t, Config{Gateways: 2, Endpoints: 2, Detector: true})
	ctx := t.Context()
	user, err := c.CreateUserKey(ctx)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "the new key to work", func() bool { return c.Call(ctx, 0, user).Status == 200 })
	l := &load{}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() { l.run(ctx, c, user, 8, stop); close(done) }()

	time.Sleep(1500 * time.Millisecond)
	if err := c.Gateway(0).Kill(); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	time.Sleep(time.Second)
	if err := c.Detector().Kill(); err != nil {
		t.Fatal(err)
	}
	if err := c.Detector().Start(ctx); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1500 * time.Millisecond)
	restarting := time.Now()
	if err := c.Gateway(0).Start(ctx); err != nil {
		t.Fatal(err)
	}
	restarted := time.Now()
	time.Sleep(1500 * time.Millisecond)
	close(stop)
	<-done

	before := l.statuses(time.Time{}, killed)
	down := l.statuses(killed.Add(500*time.Millisecond), restarting)
	after := l.statuses(restarted.Add(500*time.Millisecond), time.Now())
	t.Logf("replies before the kill %v, while gateway-1 was down %v, after its restart %v", before, down, after)
	if down[200] == 0 {
		t.Error("no call was answered by the surviving replica while the other was down")
	}
	if after[200] == 0 {
		t.Error("no call was answered after the restart")
	}
	for st, n := range down {
		if st != 200 {
			t.Errorf("%d replies with status %d once the endpoints had skipped the dead replica, want none", n, st)
		}
	}

	// The detector catches up with every chain but its own.
	records := recordsPerChain(t, c.AuditDir())
	var consumed map[string]int64
	deadline := time.Now().Add(20 * time.Second)
	for {
		consumed, err = c.DetectorCursors(ctx)
		if err != nil {
			t.Fatal(err)
		}
		caughtUp := true
		for ch, n := range records {
			if ch != "detector" && consumed[ch] < n {
				caughtUp = false
			}
		}
		if caughtUp || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	for ch, n := range records {
		if ch == "detector" {
			continue
		}
		if consumed[ch] != n {
			t.Errorf("chain %s: the detector consumed %d records, the chain holds %d", ch, consumed[ch], n)
		}
	}
	t.Logf("records per chain %v; consumed by the detector %v", records, consumed)

	// Graceful stop seals the chains; then count.
	c.Close()
	counts := eventsByRequestID(t, c.AuditDir())
	l.mu.Lock()
	defer l.mu.Unlock()
	answered, missing, dup := 0, 0, 0
	for _, r := range l.replies {
		if r.Err != nil {
			continue
		}
		answered++
		if r.RequestID == "" {
			t.Errorf("answer without x-amzn-RequestId: %+v", r.Reply)
			continue
		}
		switch counts[r.RequestID] {
		case 1:
		case 0:
			missing++
		default:
			dup++
		}
	}
	t.Logf("%d calls answered (%d without an answer), %d audit events with a request id", answered, len(l.replies)-answered, len(counts))
	if missing > 0 || dup > 0 {
		t.Errorf("of %d answered calls, %d have no audit event and %d more than one", answered, missing, dup)
	}
	verifyAudit(t, c)
}

// privatePostgres is storetest.PrivatePostgres: a server this test may restart and stop.
func privatePostgres(t *testing.T) (dsn string, ctl func(cmd string)) {
	t.Helper()
	postgresDSN(t)
	return storetest.PrivatePostgres(t)
}

// TestPostgresRestartMidLoad: PostgreSQL restarts while calls flow; the gateways keep
// answering from their state meanwhile, then reconnect by themselves: a key created
// after the restart works and a revocation after it is enforced within 2 s, with no
// component restarted.
func TestPostgresRestartMidLoad(t *testing.T) {
	dsn, ctl := privatePostgres(t)
	c := startClusterOn(t, dsn, Config{Gateways: 2, Endpoints: 2, Pin: true})
	ctx := t.Context()
	user, err := c.CreateUserKey(ctx)
	if err != nil {
		t.Fatal(err)
	}
	session, err := c.AssumeRole(ctx, user, "before")
	if err != nil {
		t.Fatal(err)
	}
	// Both gateways know the key (they hear of it through the store) before the load.
	waitFor(t, 5*time.Second, "the new key to work through both gateways", func() bool {
		return c.Call(ctx, 0, user).Status == 200 && c.Call(ctx, 1, user).Status == 200
	})
	pids := map[string]int{}
	for _, p := range c.procs() {
		pids[p.Name] = p.PID()
	}

	l := &load{}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() { l.run(ctx, c, user, 4, stop); close(done) }()
	time.Sleep(time.Second)
	ctl("restart")
	restarted := time.Now()
	time.Sleep(2 * time.Second)
	close(stop)
	<-done
	all := l.statuses(time.Time{}, time.Now())
	t.Logf("replies across the restart: %v", all)
	for st, n := range all {
		if st != 200 {
			t.Errorf("%d replies with status %d across the PostgreSQL restart (%v), want every call answered 200 from the replicas' state", n, st, l.errorTypes())
		}
	}

	// Reconnected: state written after the restart reaches every replica.
	newKey, err := c.CreateUserKey(ctx)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "a key created after the restart to work through both gateways", func() bool {
		return c.Call(ctx, 0, newKey).Status == 200 && c.Call(ctx, 1, newKey).Status == 200
	})
	for i := range 2 {
		if r := c.Call(ctx, i, session); r.Status != 200 {
			t.Fatalf("session through gateway %d before the revocation: %+v", i, r)
		}
	}
	revokedAt, err := c.RevokeSessions(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		d, r := untilDenied(ctx, c, i, session, revokedAt)
		if r.Status != 403 {
			t.Errorf("revocation after the restart, gateway %d: last reply %+v after %s, want 403", i, r, d)
			continue
		}
		testenv.Latency(t, fmt.Sprintf("PostgreSQL restarted at %s; revocation reaching gateway %d", restarted.Format(time.TimeOnly), i), d, 2*time.Second, revocationLimit)
	}
	for _, p := range c.procs() {
		if !p.Running() || p.PID() != pids[p.Name] {
			t.Errorf("%s was restarted or died (pid %d, was %d)", p.Name, p.PID(), pids[p.Name])
		}
	}
}

// TestStoreOutageFailsClosed: with the store gone, gateways keep serving for their
// --max-stale, then refuse every call with 503 (audited), and serve again once the
// store is back, without a restart.
func TestStoreOutageFailsClosed(t *testing.T) {
	dsn, ctl := privatePostgres(t)
	const maxStale = 3 * time.Second
	c := startClusterOn(t, dsn, Config{Gateways: 1, Endpoints: 1, Poll: 500 * time.Millisecond, MaxStale: maxStale})
	ctx := t.Context()
	user, err := c.CreateUserKey(ctx)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "the new key to work", func() bool { return c.Call(ctx, 0, user).Status == 200 })

	// The store goes away when the stop begins (pg_ctl's fast mode cuts every
	// connection first, then checkpoints, which can take seconds on a loaded host), so
	// the time away is counted from there.
	stopped := time.Now()
	ctl("stop")
	t.Logf("the store's stop took %s", time.Since(stopped).Round(time.Millisecond))
	if r := c.Call(ctx, 0, user); r.Status != 200 {
		t.Errorf("right after the store went away: %+v, want still served", r)
	}
	var refusedAfter time.Duration
	var last Reply
	waitFor(t, maxStale+5*time.Second, "the gateway to refuse on stale state", func() bool {
		last = c.Call(ctx, 0, user)
		refusedAfter = time.Since(stopped)
		return last.Status == 503
	})
	if last.ErrorType != "ServiceUnavailableException" {
		t.Errorf("stale refusal: %+v", last)
	}
	if refusedAfter < maxStale-time.Second {
		t.Errorf("refused %s after the store went away, before --max-stale %s", refusedAfter, maxStale)
	}
	t.Logf("store stopped; gateway refused %s later (--max-stale %s, --poll 500ms)", refusedAfter.Round(time.Millisecond), maxStale)

	ctl("start")
	waitFor(t, 15*time.Second, "the gateway to serve again once the store is back", func() bool { return c.Call(ctx, 0, user).Status == 200 })
	c.Close()
	counts := eventsByRequestID(t, c.AuditDir())
	if counts[last.RequestID] != 1 {
		t.Errorf("the stale refusal %s has %d audit events, want 1", last.RequestID, counts[last.RequestID])
	}
}

func waitFor(t *testing.T, d time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
