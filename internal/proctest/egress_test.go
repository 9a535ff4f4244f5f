package proctest

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/phantom-perimeter/phantom/internal/audit"
)

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

// egressServes reports whether both a tunnel and a forward reach the backend.
func egressServes(proxy, auth, backend string) bool {
	const orders = `{"orders":[]}`
	return egressConnect(proxy, auth, backend).body == orders && egressForward(proxy, auth, backend).body == orders
}

// TestEgressStaleStoreRefuses: `phantom egress`, its own process on the cluster's
// PostgreSQL, with --max-stale 3s. The store stops: the proxy keeps deciding from its
// state for --max-stale, then refuses new CONNECTs and absolute-form requests of a node
// with valid credentials with 503 PerimeterStateStale, each refusal audited in the
// proxy's chain; the store starts again and the same credentials work, with no restart.
// (Without the freshness check in the proxy's decision the tunnels and forwards go on
// while the store is down, and the wait for the refusal times out.)
func TestEgressStaleStoreRefuses(t *testing.T) {
	dsn, ctl := privatePostgres(t)
	const maxStale = 3 * time.Second
	c := startClusterOn(t, dsn, Config{Gateways: 1, Endpoints: 1, Egress: true, Poll: 500 * time.Millisecond, MaxStale: maxStale})
	proxy, backend := c.EgressAddr(), c.BackendAddr()
	auth, err := c.NodeProxyAuthorization(time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	pid := c.Egress().PID()
	if !egressServes(proxy, auth, backend) {
		t.Fatalf("before the outage: CONNECT %+v, forward %+v", egressConnect(proxy, auth, backend), egressForward(proxy, auth, backend))
	}

	ctl("stop")
	stopped := time.Now()
	if r := egressConnect(proxy, auth, backend); r.status != http.StatusOK {
		t.Errorf("CONNECT right after the store went away: %+v, want still served from the proxy's state", r)
	}
	// Refusals the client saw, by eventName, to compare with the audit chain.
	refused := map[string]int{}
	var first proxyReply
	var refusedAfter time.Duration
	waitFor(t, maxStale+5*time.Second, "the proxy to refuse a CONNECT on stale state", func() bool {
		first = egressConnect(proxy, auth, backend)
		refusedAfter = time.Since(stopped)
		return first.status == http.StatusServiceUnavailable
	})
	refused["Connect"]++
	if first.code != "PerimeterStateStale" || !strings.HasPrefix(first.body, "PerimeterStateStale: ") {
		t.Errorf("stale CONNECT refusal: %+v", first)
	}
	if refusedAfter < maxStale-time.Second {
		t.Errorf("CONNECT refused %s after the store went away, before --max-stale %s", refusedAfter, maxStale)
	}
	fw := egressForward(proxy, auth, backend)
	if fw.status != http.StatusServiceUnavailable || fw.code != "PerimeterStateStale" {
		t.Errorf("absolute-form request on stale state: %+v, want 503 PerimeterStateStale", fw)
	} else {
		refused["Forward"]++
	}
	// Every request is refused while the store stays down, not only the first.
	for range 3 {
		time.Sleep(300 * time.Millisecond)
		for name, r := range map[string]proxyReply{"Connect": egressConnect(proxy, auth, backend), "Forward": egressForward(proxy, auth, backend)} {
			if r.status != http.StatusServiceUnavailable || r.code != "PerimeterStateStale" {
				t.Errorf("%s while the store is down: %+v, want 503 PerimeterStateStale", name, r)
				continue
			}
			refused[name]++
		}
	}

	ctl("start")
	restarted := time.Now()
	waitFor(t, 15*time.Second, "the proxy to serve again once the store is back", func() bool { return egressServes(proxy, auth, backend) })
	recovered := time.Since(restarted)
	t.Logf("store stopped; the proxy refused %s later (--max-stale %s, --poll 500ms); store started again; the proxy served %s later",
		refusedAfter.Round(time.Millisecond), maxStale, recovered.Round(time.Millisecond))
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
		if ev.EventTime.Before(stopped) || ev.EventTime.After(restarted) {
			t.Errorf("a PerimeterStateStale event at %s, outside the outage (%s to %s)", ev.EventTime, stopped, restarted)
		}
		if n, ok := ev.AdditionalEventData["count"].(float64); ok {
			audited[ev.EventName] += int(n)
		} else {
			audited[ev.EventName]++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"Connect", "Forward"} {
		if audited[name] != refused[name] {
			t.Errorf("%d %s refusals on stale state, the audit chain counts %d", refused[name], name, audited[name])
		}
	}
	verifyAudit(t, c)
}
