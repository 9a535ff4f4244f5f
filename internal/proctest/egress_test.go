package proctest

import (
	"bufio"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/phantom-perimeter/phantom/internal/audit"
	"github.com/phantom-perimeter/phantom/internal/egress"
	"github.com/phantom-perimeter/phantom/internal/keys"
	"github.com/phantom-perimeter/phantom/internal/store/storetest"
)

// nodeProxyAuthorization is the Proxy-Authorization value of node Node for the egress
// proxy: the password STS hands the node's agent with a role session issued now and valid
// for d, signed here with the key STS signs with (derived from the perimeter's master key,
// which the harness holds as the operator does).
func (c *Cluster) nodeProxyAuthorization(d time.Duration) (string, error) {
	mk, err := base64.StdEncoding.DecodeString(c.masterKey)
	if err != nil {
		return "", err
	}
	key, err := keys.DeriveEd25519(mk, keys.EgressPasswords)
	if err != nil {
		return "", fmt.Errorf("egress password key: %w", err)
	}
	now := time.Now()
	pw := egress.ProxyPassword(key, egress.Credential{Node: Node, Addr: netip.MustParseAddr("127.0.0.1"), Issued: now, Expires: now.Add(d)})
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(Node+":"+pw)), nil
}

// proxyReply is the egress proxy's answer to one request.
type proxyReply struct {
	status int
	code   string // X-Phantom-Egress-Error
	body   string // a forward's response body, or the tunnel's reply through it
	err    error
}

// egressConnect opens a tunnel through the proxy at proxy to the backend and, when it is
// open, sends one HTTP request through it; the reply's body says the tunnel carried it.
func egressConnect(proxy, auth, backend string) proxyReply {
	c, err := net.DialTimeout("tcp", proxy, 5*time.Second)
	if err != nil {
		return proxyReply{err: err}
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(c, "CONNECT "+backend+" HTTP/1.1\r\nHost: "+backend+"\r\nProxy-Authorization: "+auth+"\r\n\r\n")
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil {
		return proxyReply{err: err}
	}
	r := proxyReply{status: resp.StatusCode, code: resp.Header.Get("X-Phantom-Egress-Error")}
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		r.body = string(b)
		return r
	}
	io.WriteString(c, "GET /prod/orders HTTP/1.1\r\nHost: "+backend+"\r\nConnection: close\r\n\r\n")
	in, err := http.ReadResponse(br, nil)
	if err != nil {
		r.err = err
		return r
	}
	b, _ := io.ReadAll(in.Body)
	in.Body.Close()
	r.body = string(b)
	return r
}

// egressForward sends one absolute-form request through the proxy to the backend.
func egressForward(proxy, auth, backend string) proxyReply {
	c, err := net.DialTimeout("tcp", proxy, 5*time.Second)
	if err != nil {
		return proxyReply{err: err}
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(c, "GET http://"+backend+"/prod/orders HTTP/1.1\r\nHost: "+backend+"\r\nProxy-Authorization: "+auth+"\r\nConnection: close\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return proxyReply{err: err}
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return proxyReply{status: resp.StatusCode, code: resp.Header.Get("X-Phantom-Egress-Error"), body: string(b)}
}

// TestEgressStaleStoreRefuses: `phantom egress`, its own process on a PostgreSQL server
// of the test's own, with --max-stale 3s. The server stops: the proxy keeps deciding from
// its state for --max-stale, then refuses new CONNECTs and absolute-form requests of a
// node with valid credentials with 503 PerimeterStateStale, each refusal audited in the
// proxy's chain; the server starts again and the same credentials work, with no restart.
// (Without the freshness check in the proxy's decision the tunnels and forwards go on
// while the store is down, and the wait for the refusal times out.)
func TestEgressStaleStoreRefuses(t *testing.T) {
	dsn, ctl := privatePostgres(t)
	staleStoreRefuses(t, dsn, "PostgreSQL stopped", func() { ctl("stop") }, func() { ctl("start") })
}

// TestEgressUnreachableStoreRefuses is TestEgressStaleStoreRefuses with a store that stops
// answering instead of refusing connections: the components reach PostgreSQL through a
// link that, cut, holds every byte either way and every new connection unanswered (a
// network partition), and delivers them again once restored.
func TestEgressUnreachableStoreRefuses(t *testing.T) {
	postgresDSN(t)
	dsn, _ := storetest.PostgresSchema(t, "cluster")
	l := newLink(t, dsn)
	staleStoreRefuses(t, l.dsn, "the store unreachable", l.cut, l.restore)
}

// staleStoreRefuses runs the cluster with the egress proxy on the store at dsn, takes the
// store away with down and brings it back with up, and checks the proxy refuses on stale
// state meanwhile and serves again after.
func staleStoreRefuses(t *testing.T, dsn, outage string, down, up func()) {
	const maxStale = 3 * time.Second
	c := startClusterOn(t, dsn, Config{Gateways: 1, Endpoints: 1, Egress: true, Poll: 500 * time.Millisecond, MaxStale: maxStale})
	proxy, backend := c.EgressAddr(), c.BackendAddr()
	auth, err := c.nodeProxyAuthorization(time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	pid := c.Egress().PID()
	// Every stale refusal the client sees, by eventName, to compare with the audit chain.
	refused := map[string]int{}
	count := func(name string, r proxyReply) proxyReply {
		if r.status == http.StatusServiceUnavailable && r.code == "PerimeterStateStale" {
			refused[name]++
		}
		return r
	}
	connect := func() proxyReply { return count("Connect", egressConnect(proxy, auth, backend)) }
	forward := func() proxyReply { return count("Forward", egressForward(proxy, auth, backend)) }
	const orders = `{"orders":[]}`
	serves := func() bool { return connect().body == orders && forward().body == orders }
	if !serves() {
		t.Fatalf("before the outage: CONNECT %+v, forward %+v", egressConnect(proxy, auth, backend), egressForward(proxy, auth, backend))
	}

	// Counted from the outage's start: a store stopped goes away when its stop begins
	// (connections cut first, a checkpoint after, seconds on a loaded host).
	stopped := time.Now()
	down()
	away := true
	t.Cleanup(func() { // before the cluster's stop: a failed test leaves no store away
		if away {
			up()
		}
	})
	if r := connect(); r.status != http.StatusOK {
		t.Errorf("CONNECT right after the store went away: %+v, want still served from the proxy's state", r)
	}
	var first proxyReply
	var refusedAfter time.Duration
	waitFor(t, maxStale+5*time.Second, "the proxy to refuse a CONNECT on stale state", func() bool {
		first = connect()
		refusedAfter = time.Since(stopped)
		return first.status == http.StatusServiceUnavailable
	})
	if first.code != "PerimeterStateStale" || !strings.HasPrefix(first.body, "PerimeterStateStale: ") {
		t.Errorf("stale CONNECT refusal: %+v", first)
	}
	// The state is as old as its last confirmation, up to a --poll before the outage.
	if refusedAfter < maxStale-time.Second {
		t.Errorf("CONNECT refused %s after the store went away, before --max-stale %s", refusedAfter, maxStale)
	}
	// Every request is refused while the store stays away, not only the first.
	for i := range 4 {
		if i > 0 {
			time.Sleep(300 * time.Millisecond)
		}
		for name, r := range map[string]proxyReply{"Connect": connect(), "Forward": forward()} {
			if r.status != http.StatusServiceUnavailable || r.code != "PerimeterStateStale" {
				t.Errorf("%s while the store is away: %+v, want 503 PerimeterStateStale", name, r)
			}
		}
	}

	restoring := time.Now()
	up()
	away = false
	restored := time.Now()
	waitFor(t, 15*time.Second, "the proxy to serve again once the store is back", serves)
	recovered := time.Now()
	t.Logf("%s: the proxy refused %s later (--max-stale %s, --poll 500ms); the store back (%s to bring it back), the proxy served %s later; %v stale refusals",
		outage, refusedAfter.Round(time.Millisecond), maxStale, restored.Sub(restoring).Round(time.Millisecond), recovered.Sub(restored).Round(time.Millisecond), refused)
	if p := c.Egress().PID(); p != pid || !c.Egress().Running() {
		t.Errorf("phantom egress was restarted or died (pid %d, was %d)", p, pid)
	}

	// Each refusal is in the proxy's audit chain (the graceful stop writes summaries).
	c.Close()
	audited := map[string]int{}
	err = audit.ReadChain(c.AuditDir(), "egress", 0, func(e audit.Entry) error {
		ev, err := e.Decode()
		if err != nil {
			return err
		}
		if ev.EventSource != "egress.phantom.amazonaws.com" || ev.ErrorCode != "PerimeterStateStale" {
			return nil
		}
		if n, ok := ev.AdditionalEventData["count"].(float64); ok {
			audited[ev.EventName] += int(n) // a summary, written when its window ends
			return nil
		}
		if ev.EventTime.Before(stopped) || ev.EventTime.After(recovered) {
			t.Errorf("a PerimeterStateStale event at %s, outside the outage (%s to %s)", ev.EventTime, stopped, recovered)
		}
		audited[ev.EventName]++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"Connect", "Forward"} {
		if audited[name] != refused[name] || refused[name] == 0 {
			t.Errorf("%d %s refusals on stale state, the audit chain counts %d", refused[name], name, audited[name])
		}
	}
	verifyAudit(t, c)
}
