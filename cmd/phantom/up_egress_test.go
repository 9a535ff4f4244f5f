package main

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/phantom-perimeter/phantom/internal/audit"
)

// nodeProxyPassword asks STS's node API for a role session with the demo node's
// certificate, as the node's agent does, and returns the proxy password that comes with
// it (valid as long as the session, refused once the session is revoked).
func (u *upServer) nodeProxyPassword(t *testing.T) string {
	t.Helper()
	cert, err := tls.LoadX509KeyPair(filepath.Join(u.dataDir, "agent", "node.crt"), filepath.Join(u.dataDir, "agent", "node.key"))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := u.goClient(t, &cert).Post(u.env["PHANTOM_STS_URL"]+"/phantom/node/credentials", "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct{ ProxyPassword, Node string }
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != http.StatusOK || out.ProxyPassword == "" {
		t.Fatalf("node API: %d %+v %v", resp.StatusCode, out, err)
	}
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(out.Node+":"+out.ProxyPassword))
}

// egressTunnel opens a tunnel through the proxy at proxy (with Proxy-Authorization auth
// unless "") to the node's API (PHANTOM_NODE_API_URL) and completes TLS with the
// endpoint in it. It returns the proxy's status and, on 200, the TLS connection.
func (u *upServer) egressTunnel(t *testing.T, proxy, auth string) (int, *tls.Conn) {
	t.Helper()
	api, err := url.Parse(u.env["PHANTOM_NODE_API_URL"])
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.DialTimeout("tcp", proxy, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	req := &http.Request{Method: http.MethodConnect, URL: &url.URL{Opaque: api.Host}, Host: api.Host, Header: http.Header{}}
	if auth != "" {
		req.Header.Set("Proxy-Authorization", auth)
	}
	if err := req.Write(c); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), req)
	if err != nil {
		t.Fatalf("CONNECT %s: %v", api.Host, err)
	}
	if resp.StatusCode != http.StatusOK {
		c.Close()
		return resp.StatusCode, nil
	}
	pem, err := os.ReadFile(u.env["AWS_CA_BUNDLE"])
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pem)
	tc := tls.Client(c, &tls.Config{RootCAs: roots, ServerName: api.Hostname()})
	if err := tc.Handshake(); err != nil {
		t.Fatalf("TLS with the endpoint through the tunnel: %v", err)
	}
	t.Cleanup(func() { tc.Close() })
	return http.StatusOK, tc
}

// askEndpoint sends one unsigned request through the tunnel; any answer of the
// perimeter's (a refusal of the unsigned call included) shows the tunnel carries it.
func (u *upServer) askEndpoint(tc *tls.Conn) error {
	tc.SetDeadline(time.Now().Add(5 * time.Second))
	api, _ := url.Parse(u.env["PHANTOM_NODE_API_URL"])
	req, _ := http.NewRequest(http.MethodGet, api.String(), nil)
	if err := req.Write(tc); err != nil {
		return err
	}
	resp, err := http.ReadResponse(bufio.NewReader(tc), req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	return nil
}

// tunnelClosedWithin waits up to d for the proxy to close the tunnel under tc.
func tunnelClosedWithin(tc *tls.Conn, d time.Duration) bool {
	tc.SetReadDeadline(time.Now().Add(d))
	_, err := tc.Read(make([]byte, 1))
	var ne net.Error
	return err != nil && !(errors.As(err, &ne) && ne.Timeout())
}

// TestUpEgressFollowsRevocation: against the built `phantom up`, the egress proxy follows
// the perimeter's revocations. After the detector's response to stolen credentials and
// after `phantom iam revoke-sessions` on the node's role, new tunnels with the proxy
// password the node was handed before are refused within 2 s and its open tunnel is
// closed; the password that comes with the node's next session works, and so does the
// node's agent relay (the node's certificate) all along. The detector's response also
// raises the node's phantom:RiskLevel to high: a rule with maxRiskLevel low stops
// applying within 2 s, and the tunnel it opened is closed. (On the old code the proxy
// password was an HMAC of the node name: it never changed, and 10 of 10 new tunnels with
// it worked after revoke-sessions.)
func TestUpEgressFollowsRevocation(t *testing.T) {
	if testing.Short() {
		t.Skip("runs phantom up")
	}
	u := startUp(t, buildPhantom(t))
	direct := u.env["PHANTOM_EGRESS_DIRECT"]
	relay, err := url.Parse(u.env["PHANTOM_EGRESS_PROXY"])
	if err != nil || direct == "" {
		t.Fatalf("demo.env: PHANTOM_EGRESS_DIRECT %q, PHANTOM_EGRESS_PROXY %q: %v", direct, u.env["PHANTOM_EGRESS_PROXY"], err)
	}
	elsewhere := u.goClient(t, nil)
	elsewhere.Transport.(*http.Transport).DialContext = (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}}).DialContext

	// A server the node may reach only while its phantom:RiskLevel is at most low: a rule
	// with maxRiskLevel added to the running perimeter's spec. The node's workload holds a
	// tunnel to it open through the agent's relay (the node's certificate, which
	// revoke-sessions does not touch: the detector's risk raise is what closes it).
	echo := echoServer(t)
	addEgressRule(t, u, "{cidr: 127.0.0.1/32, ports: ["+portOf(echo)+"], maxRiskLevel: low}")
	within(t, "the rule with maxRiskLevel in force", 10*time.Second, func() error {
		if line := relayConnect(t, relay.Host, echo); line != "HTTP/1.1 200" {
			var last audit.Event
			for _, e := range auditEvents(t, filepath.Join(u.dataDir, "audit")) {
				if e.EventSource == "egress.phantom.amazonaws.com" && !e.EventTime.Before(last.EventTime) {
					last = e
				}
			}
			return fmt.Errorf("%s (%s %s: %s)", line, last.EventName, last.ErrorCode, last.ErrorMessage)
		}
		return nil
	})
	lowRisk := openTunnel(t, relay.Host, echo)

	revocations := []struct {
		name   string
		revoke func() time.Time // revokes, and returns from when the 2 s count
	}{
		{"the detector's response to stolen credentials", func() time.Time {
			stolen, ok := u.imdsCredentials(t)
			if !ok {
				t.Fatal("the agent serves no credentials")
			}
			start := time.Now()
			if r := u.signedGo(t, elsewhere, stolen, u.env["PHANTOM_API_URL"], nil); r.Status != http.StatusForbidden {
				t.Fatalf("the stolen key from 127.0.0.2: %s", r)
			}
			u.revocationAfter(t, start)
			return time.Now()
		}},
		{"phantom iam revoke-sessions", func() time.Time {
			u.phantom(t, "iam", "revoke-sessions", "--role", "service-a")
			return time.Now()
		}},
	}
	for _, rv := range revocations {
		old := u.nodeProxyPassword(t)
		status, tun := u.egressTunnel(t, direct, old)
		if status != http.StatusOK || u.askEndpoint(tun) != nil {
			t.Fatalf("%s: the tunnel before it: %d", rv.name, status)
		}
		revoked := rv.revoke()
		refusedWithin2s(t, rv.name+": the old proxy password refused", revoked, func() error {
			if status, tc := u.egressTunnel(t, direct, old); status != http.StatusProxyAuthRequired {
				if tc != nil {
					tc.Close()
				}
				return fmt.Errorf("CONNECT answered %d", status)
			}
			return nil
		})
		if !tunnelClosedWithin(tun, 2*time.Second) {
			t.Errorf("%s: the node's open tunnel was not closed", rv.name)
		}
		ev := u.awaitEvent(t, "the refusal of the old proxy password", func(e *audit.Event) bool {
			return e.EventSource == "egress.phantom.amazonaws.com" && e.ErrorCode == "ProxyCredentialsRevoked" && !e.EventTime.Before(revoked.Add(-time.Second))
		})
		if !strings.Contains(ev.UserIdentity.ARN, "assumed-role/service-a/") {
			t.Errorf("%s: refusal audited for %q", rv.name, ev.UserIdentity.ARN)
		}
		u.awaitEvent(t, "the closing of the open tunnel", func(e *audit.Event) bool {
			return e.EventSource == "egress.phantom.amazonaws.com" && e.EventName == "CloseTunnel" && e.ErrorCode == "ProxyCredentialsRevoked" && !e.EventTime.Before(revoked.Add(-time.Second))
		})
		// The node's next session comes with a password that works, and the agent's relay
		// (the node's certificate) carries the node's workloads as before.
		status, tun = u.egressTunnel(t, direct, u.nodeProxyPassword(t))
		if status != http.StatusOK || u.askEndpoint(tun) != nil {
			t.Fatalf("%s: the fresh proxy password: %d", rv.name, status)
		}
		tun.Close()
		status, tun = u.egressTunnel(t, relay.Host, "")
		if status != http.StatusOK || u.askEndpoint(tun) != nil {
			t.Fatalf("%s: the agent's relay: %d", rv.name, status)
		}
		tun.Close()
		if lowRisk == nil {
			continue
		}
		// The detector's response also raised the node's phantom:RiskLevel to high: the
		// rule with maxRiskLevel low no longer applies, to the open tunnel or new ones.
		refusedWithin2s(t, rv.name+": the risk raise refusing the maxRiskLevel low rule", revoked, func() error {
			if line := relayConnect(t, relay.Host, echo); line != "HTTP/1.1 403" {
				return errors.New(line)
			}
			return nil
		})
		u.awaitEvent(t, "the RiskLevelTooHigh refusal", func(e *audit.Event) bool {
			return e.EventSource == "egress.phantom.amazonaws.com" && e.EventName == "Connect" && e.ErrorCode == "RiskLevelTooHigh" && e.AdditionalEventData["riskLevel"] == "high"
		})
		lowRisk.SetReadDeadline(time.Now().Add(2 * time.Second))
		if _, err := lowRisk.Read(make([]byte, 1)); err == nil || isTimeout(err) {
			t.Errorf("%s: the tunnel the maxRiskLevel low rule opened is still open: %v", rv.name, err)
		}
		lowRisk = nil
	}
}

// relayConnect sends a CONNECT without Proxy-Authorization (the agent's relay presents
// the node's certificate) and returns the status line's first 12 bytes.
func relayConnect(t *testing.T, proxy, target string) string {
	t.Helper()
	c, err := net.Dial("tcp", proxy)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "CONNECT "+target+" HTTP/1.1\r\nHost: "+target+"\r\n\r\n")
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	line := make([]byte, 12)
	io.ReadFull(c, line)
	return string(line)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// echoServer serves an echo on a loopback port and returns its address.
func echoServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); io.Copy(c, c) }()
		}
	}()
	return ln.Addr().String()
}

// addEgressRule adds an allow rule to the demo role's egress rules in the running
// perimeter's spec (it reloads live).
func addEgressRule(t *testing.T, u *upServer, rule string) {
	t.Helper()
	spec := filepath.Join(u.dataDir, "perimeter.yaml")
	b, err := os.ReadFile(spec)
	if err != nil {
		t.Fatal(err)
	}
	const apiRule = "    allow:\n      - api: a1b2c3d4e5\n"
	if !strings.Contains(string(b), apiRule) {
		t.Fatalf("the demo spec has no egress rule %q", apiRule)
	}
	s := strings.Replace(string(b), apiRule, apiRule+"      - "+rule+"\n", 1)
	if err := os.WriteFile(spec, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
}

// openTunnel opens a CONNECT tunnel without credentials (the agent's relay adds the
// node's certificate) and checks it carries bytes to the echo server behind it.
func openTunnel(t *testing.T, proxy, target string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", proxy)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(c, "CONNECT "+target+" HTTP/1.1\r\nHost: "+target+"\r\n\r\n")
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("CONNECT %s through %s: %v %v", target, proxy, resp, err)
	}
	io.WriteString(c, "ping")
	buf := make([]byte, 4)
	if _, err := io.ReadFull(br, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("the tunnel to %s: %q %v", target, buf, err)
	}
	c.SetDeadline(time.Time{})
	return c
}

// TestUpEgressAuditHonestAndBounded: against the built `phantom up`, a flood of CONNECTs
// without credentials leaves a bounded number of audit records whose counts add up to
// the refusals (the summaries are written by the graceful stop at the latest), and an
// absolute-form forward to a closed port — a rule allowing it added to the running
// perimeter's spec — is audited as failed, in the one event of the request. (On the old
// code every refusal was a full record — 5,163 records/s from one client — and the
// forward was audited as allowed, with no errorCode, before the dial.)
func TestUpEgressAuditHonestAndBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("runs phantom up")
	}
	u := startUp(t, buildPhantom(t))
	direct := u.env["PHANTOM_EGRESS_DIRECT"]
	target := "a1b2c3d4e5.execute-api.us-east-1.amazonaws.com:" + portOf(u.env["PHANTOM_ENDPOINT_ADDR"])
	const flood = 300
	for i := range flood {
		if line := rawProxyConnect(t, direct, target, ""); line != "HTTP/1.1 407" {
			t.Fatalf("CONNECT %d without credentials: %q", i, line)
		}
	}

	// A rule for a closed port on loopback, added to the running perimeter.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()
	addEgressRule(t, u, "{cidr: 127.0.0.1/32, ports: ["+portOf(closed)+"]}")
	auth := u.nodeProxyPassword(t)
	var reqID string
	within(t, "the forward to the closed port answered 502", 10*time.Second, func() error {
		c, err := net.Dial("tcp", direct)
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		io.WriteString(c, "GET http://"+closed+"/ HTTP/1.1\r\nHost: "+closed+"\r\nProxy-Authorization: "+auth+"\r\nConnection: close\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadGateway {
			return fmt.Errorf("%s (the spec not reloaded yet?)", resp.Status)
		}
		reqID = resp.Header.Get("X-Amzn-Requestid")
		return nil
	})
	ev := u.awaitEvent(t, "the failed forward", func(e *audit.Event) bool {
		return e.EventSource == "egress.phantom.amazonaws.com" && e.EventName == "Forward" && e.RequestParameters["port"] == float64(mustPort(t, closed)) &&
			(reqID == "" || e.RequestID == reqID) && e.ErrorCode != "DestinationNotAllowed" && e.ErrorCode != "PortNotAllowed" && e.ErrorCode != "AddressNotAllowed"
	})
	if ev.ErrorCode != "ConnectFailed" || ev.ResponseElements["connectedAddress"] != nil {
		t.Fatalf("the forward to a closed port audited as %q %v", ev.ErrorCode, ev.ResponseElements)
	}
	n := 0
	for _, e := range auditEvents(t, filepath.Join(u.dataDir, "audit")) {
		if e.RequestID == ev.RequestID {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("the failed forward has %d events, want 1", n)
	}

	u.stop(t)
	records, counted := 0, 0
	for _, e := range auditEvents(t, filepath.Join(u.dataDir, "audit")) {
		if e.EventSource != "egress.phantom.amazonaws.com" || e.ErrorCode != "ProxyAuthenticationRequired" {
			continue
		}
		records++
		if s, _ := e.AdditionalEventData["summary"].(bool); s {
			c, _ := e.AdditionalEventData["count"].(float64)
			counted += int(c)
		} else {
			counted++
		}
	}
	t.Logf("%d refusals without credentials: %d audit records", flood, records)
	if records > 11 {
		t.Errorf("%d refusals left %d records, want at most 11 (10 in full, one summary)", flood, records)
	}
	if counted != flood {
		t.Errorf("the records count %d refusals, want %d", counted, flood)
	}
}

func mustPort(t *testing.T, addr string) int {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	n, err2 := strconv.Atoi(p)
	if err != nil || err2 != nil {
		t.Fatalf("address %q", addr)
	}
	return n
}
