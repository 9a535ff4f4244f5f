package gateway

import (
	"bufio"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/phantom-perimeter/phantom/internal/audit"
)

// The request path's limits and rules on the real listener: each refusal is its own
// audited error, and an allowed call's body is held to its signature and its limits.

// post builds alice's (or creds') signed POST of body to path on tr, over a body reader
// the caller controls.
func (h *hostile) post(t *testing.T, tr transport, path string, body io.Reader, size int64, sum [32]byte, declare bool, who string) *http.Request {
	t.Helper()
	r, err := http.NewRequest("POST", h.base(tr)+path, body)
	if err != nil {
		t.Fatal(err)
	}
	r.ContentLength = size
	if who != "" {
		h.signFor(t, r, h.keys[who], sum, declare)
	}
	return r
}

// events returns the audit events recorded so far, waiting briefly for n of them.
func (h *hostile) events(t *testing.T, n int) []*audit.Event {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	var evs []*audit.Event
	for {
		evs = append(evs, h.audit.take()...)
		if len(evs) >= n || time.Now().After(deadline) {
			return evs
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func codes(evs []*audit.Event) []string {
	var out []string
	for _, ev := range evs {
		out = append(out, ev.ErrorCode)
	}
	return out
}

// TestUnverifiedDenial: a denied caller whose signature covers its body is refused on its
// headers; the answer does not say whose key it is and the record names only the claimed
// key. A caller the policies allow has its body read, and then its signature checked.
func TestUnverifiedDenial(t *testing.T) {
	h := newHostile(t)
	tr := transports[0]
	body := []byte(`{"item":1}`)
	sum := sha256.Sum256(body)
	code, out, hdr := do(t, h.client(tr), h.post(t, tr, "/prod/orders", strings.NewReader(string(body)), int64(len(body)), sum, false, "bob"))
	msg, enc := decodeError(t, out)
	if code != 403 || hdr.Get("X-Amzn-Errortype") != "AccessDeniedException" || strings.Contains(msg, "bob") || enc != "" ||
		msg != "The caller is not authorized to perform: execute-api:Invoke on resource: arn:aws:execute-api:us-east-1:123456789012:a1b2c3d4e5/prod/POST/orders" {
		t.Fatalf("%d %s %q %q", code, hdr.Get("X-Amzn-Errortype"), msg, enc)
	}
	ev := h.oneEvent(t)
	if ev.ErrorCode != "AccessDenied" || ev.UserIdentity.ARN != "" || ev.UserIdentity.AccessKeyID != h.keys["bob"].AccessKeyID ||
		ev.AdditionalEventData["signatureVerified"] != false || ev.AdditionalEventData["decision"] != "ImplicitDeny" {
		t.Errorf("event %+v %v", ev.UserIdentity, ev.AdditionalEventData)
	}

	// alice's key with a signature she did not make: the body is read, the signature
	// fails.
	forged := h.post(t, tr, "/prod/orders", strings.NewReader(string(body)), int64(len(body)), sum, false, "")
	forger := h.keys["alice"]
	forger.SecretAccessKey = "not-alices-secret-not-alices-secret-0000"
	h.signFor(t, forged, forger, sum, false)
	code, out, _ = do(t, h.client(tr), forged)
	if code != 403 || !strings.Contains(out, "signature we calculated does not match") {
		t.Fatalf("%d %s", code, out)
	}
	if ev := h.oneEvent(t); ev.ErrorCode != "SignatureDoesNotMatch" || ev.UserIdentity.ARN != "" || ev.AdditionalEventData["decision"] != nil {
		t.Errorf("event %s %+v %v", ev.ErrorCode, ev.UserIdentity, ev.AdditionalEventData)
	}
	h.noHit(t)
}

// TestDeclaredHashStreams: a body whose hash the request declares (and signs) streams to
// the backend; one that does not match its hash is cut off before its last byte, so the
// backend never receives a complete request, the caller gets 400 and the call has a
// second event saying it was aborted.
func TestDeclaredHashStreams(t *testing.T) {
	h := newHostile(t)
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			good := []byte(strings.Repeat("order ", 20000))
			sum := sha256.Sum256(good)
			code, out, _ := do(t, h.client(tr), h.post(t, tr, "/prod/orders", strings.NewReader(string(good)), int64(len(good)), sum, true, "alice"))
			if code != 200 {
				t.Fatalf("%d %s", code, out)
			}
			if hit := h.hit(t); hit.Body != string(good) {
				t.Fatalf("backend got %d bytes", len(hit.Body))
			}
			h.audit.take()

			bad := []byte(strings.Repeat("ORDER ", 20000))
			code, out, hdr := do(t, h.client(tr), h.post(t, tr, "/prod/orders", strings.NewReader(string(bad)), int64(len(bad)), sum, true, "alice"))
			if code != 400 || hdr.Get("X-Amzn-Errortype") != "BadRequestException" {
				t.Fatalf("%d %s %s", code, hdr.Get("X-Amzn-Errortype"), out)
			}
			evs := h.events(t, 2)
			if got := codes(evs); len(got) != 2 || got[0] != "" || got[1] != "XAmzContentSHA256Mismatch" {
				t.Fatalf("events %v", got)
			}
			if evs[0].RequestID != evs[1].RequestID || evs[1].AdditionalEventData["aborted"] == nil || evs[1].UserIdentity.ARN != aliceARN {
				t.Errorf("abort event %+v %v", evs[1].UserIdentity, evs[1].AdditionalEventData)
			}
			h.noHit(t)
		})
	}
}

// TestBodyLimits: the body's size, speed and memory are bounded by gateway.limits, each
// refusal with its own errorCode.
func TestBodyLimits(t *testing.T) {
	h := newHostileWith(t, "{maxBodyBytes: 1048576, bodyBufferBytes: 1048576, bodyTimeout: 2s, minBodyRate: 1000, maxInFlight: 2}", "{}")
	tr := transports[0]
	mb := make([]byte, 1<<20)
	sumMB := sha256.Sum256(mb)

	t.Run("declared length over the limit", func(t *testing.T) {
		big := make([]byte, 1<<20+1)
		code, _, hdr := do(t, h.client(tr), h.post(t, tr, "/prod/orders", failOnRead{t}, int64(len(big)), sha256.Sum256(big), false, "alice"))
		if code != 413 || hdr.Get("X-Amzn-Errortype") != "RequestEntityTooLargeException" {
			t.Fatalf("%d %s", code, hdr.Get("X-Amzn-Errortype"))
		}
		if ev := h.oneEvent(t); ev.ErrorCode != "RequestEntityTooLarge" {
			t.Errorf("errorCode %s", ev.ErrorCode)
		}
	})
	t.Run("chunked body over the limit, streaming", func(t *testing.T) {
		r, _ := http.NewRequest("PUT", h.base(tr)+"/prod/open/upload", io.LimitReader(zeros{}, 2<<20))
		r.ContentLength = -1
		code, out, _ := do(t, h.client(tr), r)
		if code != 413 {
			t.Fatalf("%d %s", code, out)
		}
		if got := codes(h.events(t, 2)); len(got) != 2 || got[0] != "" || got[1] != "RequestEntityTooLarge" {
			t.Errorf("events %v", got)
		}
		h.noHit(t)
	})
	t.Run("body too slow", func(t *testing.T) {
		pr, pw := io.Pipe()
		defer pw.Close()
		go pw.Write(make([]byte, 100))
		start := time.Now()
		code, out, hdr := do(t, h.client(tr), h.post(t, tr, "/prod/orders", pr, 600, sha256.Sum256(make([]byte, 600)), false, "alice"))
		if code != 408 || hdr.Get("X-Amzn-Errortype") != "RequestTimeoutException" {
			t.Fatalf("%d %s %s", code, hdr.Get("X-Amzn-Errortype"), out)
		}
		if d := time.Since(start); d < 2*time.Second {
			t.Errorf("cut off after %s, before bodyTimeout", d)
		}
		if ev := h.oneEvent(t); ev.ErrorCode != "RequestTimeout" {
			t.Errorf("errorCode %s", ev.ErrorCode)
		}
	})
	t.Run("memory budget and requests in flight", func(t *testing.T) {
		// One allowed upload of the maximum size takes the whole body budget while it
		// trickles in; the next needs memory that is not there; a third request is one
		// more than may be in flight.
		pr, pw := io.Pipe()
		defer pw.Close()
		go pw.Write(make([]byte, 200))
		held := make(chan int, 1)
		go func() {
			resp, err := h.client(tr).Do(h.post(t, tr, "/prod/orders", pr, 1<<20, sumMB, false, "alice"))
			if err != nil {
				held <- 0
				return
			}
			resp.Body.Close()
			held <- resp.StatusCode
		}()
		deadline := time.Now().Add(5 * time.Second)
		for h.gw.bodies.used.Load() < 1<<20 && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
		code, _, hdr := do(t, h.client(tr), h.post(t, tr, "/prod/orders", failOnRead{t}, 1<<20, sumMB, false, "alice"))
		if code != 429 || hdr.Get("X-Amzn-Errortype") != "TooManyRequestsException" {
			t.Fatalf("second upload: %d %s", code, hdr.Get("X-Amzn-Errortype"))
		}
		hold2 := make(chan struct{})
		go func() {
			r, _ := http.NewRequest("PUT", h.base(tr)+"/prod/open/x", blockingReader{hold2})
			r.ContentLength = 10
			if resp, err := h.client(tr).Do(r); err == nil {
				resp.Body.Close()
			}
		}()
		for h.gw.inflight.n.Load() < 2 && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
		code, _, _ = do(t, h.client(tr), newRequest(t, "GET", h.base(tr)+"/prod/open/y", nil))
		close(hold2)
		if code != 429 {
			t.Fatalf("third request: %d, want 429", code)
		}
		if c := <-held; c != 408 {
			t.Errorf("the trickling upload: %d, want 408", c)
		}
		got := codes(h.events(t, 4))
		for _, want := range []string{"BodyBufferExhausted", "TooManyRequests", "RequestTimeout"} {
			if !strings.Contains(strings.Join(got, " "), want) {
				t.Errorf("events %v: no %s", got, want)
			}
		}
		if n := h.gw.bodies.used.Load(); n != 0 {
			t.Errorf("%d bytes of the body budget still held", n)
		}
	})
}

// TestCutBodyClosesConnection: a streamed body the gateway stops reading (over
// maxBodyBytes) is answered on an HTTP/1.1 connection that is then closed, the gateway's
// and, through an endpoint, the caller's. The exchange
// runs full duplex, so the server neither drains nor closes by itself: before, the
// connection stayed open and the rest of the caller's body was read as its next request
// (a 400 here, where the rest is zeros; a request the caller wrote into its body
// otherwise, and on an endpoint's connection one whose X-Phantom-* headers are believed).
func TestCutBodyClosesConnection(t *testing.T) {
	h := newHostileWith(t, "{maxBodyBytes: 1048576}", "{}")
	for _, tr := range []transport{transports[0], transports[2]} {
		t.Run(tr.name, func(t *testing.T) { cutBodyCloses(t, h, tr) })
	}
}

// cutBodyCloses sends a chunked upload over the limit on a connection of its own to tr's
// listener and expects the answer, then the connection's end. The caller sends 1.5 MiB,
// waits for the answer and only then sends the rest, so neither the gateway nor an
// endpoint can have read the whole body (framing intact) before answering.
func cutBodyCloses(t *testing.T, h *hostile, tr transport) {
	c := h.dial(t, tr)
	answered := make(chan struct{})
	go func() {
		// The caller goes on sending after the answer; writes fail once the gateway closes.
		io.WriteString(c, "PUT /prod/open/upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
		chunk := make([]byte, 4096)
		for n := 0; n < 2<<20; n += len(chunk) {
			if n == 3<<19 {
				<-answered
			}
			if _, err := fmt.Fprintf(c, "%x\r\n%s\r\n", len(chunk), chunk); err != nil {
				return
			}
		}
		io.WriteString(c, "0\r\n\r\n")
	}()
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	close(answered)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 413 || !resp.Close {
		t.Errorf("%d, Connection: close %v; want 413 and the connection closed", resp.StatusCode, resp.Close)
	}
	// Then nothing: the end of the stream, or a reset when the caller's bytes were still
	// arriving; or, kept open, an idle connection.
	c.SetReadDeadline(time.Now().Add(time.Second))
	rest, err := io.ReadAll(br)
	if len(rest) != 0 || resp.Close && err != nil && !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("the connection went on after the cut body: %q %v", rest, err)
	}
	if got := codes(h.events(t, 2)); len(got) != 2 || got[0] != "" || got[1] != "RequestEntityTooLarge" {
		t.Errorf("events %v", got)
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }

// failOnRead is a body the gateway must refuse before reading.
type failOnRead struct{ t *testing.T }

func (f failOnRead) Read([]byte) (int, error) {
	time.Sleep(5 * time.Second) // a gateway that waits for it times the test out
	return 0, io.ErrUnexpectedEOF
}

type blockingReader struct{ hold chan struct{} }

func (b blockingReader) Read([]byte) (int, error) { <-b.hold; return 0, io.ErrUnexpectedEOF }

// TestUpgradeAllowed: a route that allows WebSocket lets a signed, allowed upgrade
// through, audited like any call, once the backend completes the handshake; an unsigned
// one is refused as any unsigned call; a backend that answers 101 without completing the
// handshake opens no tunnel.
func TestUpgradeAllowed(t *testing.T) {
	h := newHostile(t)
	for _, tr := range []transport{transports[0], transports[2]} {
		t.Run(tr.name, func(t *testing.T) {
			upgrade := func(path string, sign bool) (*http.Response, *bufio.Reader, net.Conn) {
				c := h.dial(t, tr)
				r := newRequest(t, "GET", h.base(tr)+path, nil)
				r.Header.Set("Connection", "Upgrade")
				r.Header.Set("Upgrade", "websocket")
				r.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
				r.Header.Set("Sec-WebSocket-Version", "13")
				if sign {
					h.sign(r, h.keys["alice"], nil)
				}
				if err := r.Write(c); err != nil {
					t.Fatal(err)
				}
				br := bufio.NewReader(c)
				resp, _ := readResponse(t, br, "GET")
				return resp, br, c
			}
			resp, br, c := upgrade("/prod/public/ws", true)
			if resp.StatusCode != 101 || resp.Header.Get("Sec-Websocket-Accept") != "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" {
				t.Fatalf("%d %v", resp.StatusCode, resp.Header)
			}
			ev := h.oneEvent(t)
			if ev.ErrorCode != "" || ev.AdditionalEventData["upgrade"] != "websocket" || ev.AdditionalEventData["decision"] != "Allow" || ev.UserIdentity.ARN != aliceARN {
				t.Errorf("event %s %v", ev.ErrorCode, ev.AdditionalEventData)
			}
			// The tunnel carries bytes both ways.
			io.WriteString(c, "GET /frame HTTP/1.1\r\nHost: x\r\n\r\n")
			if resp, body := readResponse(t, br, "GET"); resp.StatusCode != 200 || body != "done\r\n" {
				t.Errorf("through the tunnel: %d %q", resp.StatusCode, body)
			}
			for range 2 {
				h.hit(t)
			}

			if resp, _, _ := upgrade("/prod/public/ws", false); resp.StatusCode != 403 {
				t.Errorf("unsigned upgrade: %d", resp.StatusCode)
			}
			if ev := h.oneEvent(t); ev.ErrorCode != "MissingAuthenticationToken" {
				t.Errorf("unsigned upgrade: %s", ev.ErrorCode)
			}
			if resp, _, _ := upgrade("/prod/public/fakews", true); resp.StatusCode != 502 {
				t.Errorf("backend without the handshake: %d, want 502", resp.StatusCode)
			}
			h.audit.take()
			h.hit(t) // the backend saw the upgrade request, and nothing after it
			h.noHit(t)
		})
	}
}

// TestOnePath: what is authorized is byte for byte what the backend receives; a route
// may accept ";" parameters, and even then not after a dot segment.
func TestOnePath(t *testing.T) {
	h := newHostile(t)
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			for _, c := range []struct{ path, backend string }{
				{"/prod/public/a%20b/%7Ex/caf%C3%A9", "/public/a%20b/%7Ex/caf%C3%A9"},
				{"/prod/public/x/../y", "/public/y"},
				{"/prod/public/files/a;v=2", "/public/files/a;v=2"},
			} {
				r := newRequest(t, "GET", h.base(tr)+c.path, nil)
				h.sign(r, h.keys["alice"], nil)
				code, out, _ := do(t, h.client(tr), r)
				if code != 200 {
					t.Fatalf("%s: %d %s", c.path, code, out)
				}
				hit := h.hit(t)
				if hit.RawPath != c.backend {
					t.Errorf("%s reached the backend as %s, want %s", c.path, hit.RawPath, c.backend)
				}
				a, err := verifyWith(hit.Header.Get(hdrIdentity), h.assertionKeys(t, testAPI), testAPI, h.clock.Now())
				if err != nil || "/"+strings.TrimPrefix(c.backend, "/") != a.Path {
					t.Errorf("assertion path %q, want %q (%v)", a.Path, c.backend, err)
				}
				h.audit.take()
			}
			for _, p := range []string{"/prod/public/files/..;v=2", "/prod/public/other;v=2"} {
				r := newRequest(t, "GET", h.base(tr)+p, nil)
				h.sign(r, h.keys["alice"], nil)
				if code, _, _ := do(t, h.client(tr), r); code != 400 {
					t.Errorf("%s: %d, want 400", p, code)
				}
				h.audit.take()
			}
			h.noHit(t)
		})
	}
}

// TestReplayGuard: with gateway.replayProtection on, a captured signed POST replayed
// five times creates one order, on this gateway and on a replica sharing its store; a
// GET (not guarded by default) is not limited.
func TestReplayGuard(t *testing.T) {
	h := newHostileWith(t, "{}", "{enabled: true}")
	tr := transports[0]
	body := []byte(`{"order":1}`)
	sum := sha256.Sum256(body)
	captured := h.post(t, tr, "/prod/orders", nil, int64(len(body)), sum, false, "alice")
	replay := func(base string) int {
		r, _ := http.NewRequest("POST", base+"/prod/orders", strings.NewReader(string(body)))
		r.Header = captured.Header.Clone()
		r.Host = captured.Host
		code, _, _ := do(t, h.client(tr), r)
		return code
	}
	var ok, reused int
	for range 5 {
		switch replay(h.base(tr)) {
		case 200:
			ok++
		case 403:
			reused++
		}
	}
	if ok != 1 || reused != 4 {
		t.Fatalf("%d accepted, %d refused; want 1 and 4", ok, reused)
	}
	h.hit(t)
	h.noHit(t)
	evs := h.audit.take()
	if got := codes(evs); got[1] != "SignatureReused" {
		t.Errorf("events %v", got)
	}
	// A replica on the same store refuses it too.
	g2, err := New(h.cfg)
	if err != nil {
		t.Fatal(err)
	}
	other := serveGateway(t, &env{t: t, ca: h.ca, gw: g2})
	if code := replay("https://" + other); code != 403 {
		t.Errorf("replay on the replica: %d, want 403", code)
	}
	// GET is not guarded.
	get := newRequest(t, "GET", h.base(tr)+"/prod/public/x", nil)
	h.sign(get, h.keys["alice"], nil)
	for range 3 {
		r := get.Clone(context.Background())
		if code, _, _ := do(t, h.client(tr), r); code != 200 {
			t.Fatalf("GET replay: %d", code)
		}
	}
}

// TestGatewayConnectionLimits: the gateway's listener resets connections past its limits
// and audits them; an endpoint's connections do not count against their source address.
func TestGatewayConnectionLimits(t *testing.T) {
	h := newHostileWith(t, "{maxConnections: 6, maxConnectionsPerSource: 2}", "{}")
	var held []*tls.Conn
	for range 2 {
		c, err := tls.Dial("tcp", h.gwAddr, &tls.Config{RootCAs: h.bundle})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		held = append(held, c)
	}
	if c, err := tls.Dial("tcp", h.gwAddr, &tls.Config{RootCAs: h.bundle}); err == nil {
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		if _, err := c.Read(make([]byte, 1)); err == nil {
			t.Fatal("a third connection from one address was served")
		}
		c.Close()
	}
	// The endpoint's connections to the gateway come from the same address, and are
	// exempt from its limit.
	for i := range 3 {
		tr := transports[2]
		r := newRequest(t, "GET", h.base(tr)+"/prod/public/x", nil)
		h.sign(r, h.keys["alice"], nil)
		if code, out, _ := do(t, h.client(tr), r); code != 200 {
			t.Fatalf("call %d through the endpoint: %d %s", i, code, out)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		for _, ev := range h.audit.take() {
			if ev.EventName == "Connect" && ev.ErrorCode == "ConnectionLimitExceeded" && ev.SourceIPAddress == "127.0.0.1" {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("no audited ConnectionLimitExceeded")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestHeaderTimeout: a connection that stalls in its TLS handshake, or in its request
// headers, is closed after gateway.limits.headerTimeout and audited.
func TestHeaderTimeout(t *testing.T) {
	h := newHostileWith(t, "{headerTimeout: 1s}", "{}")
	raw, err := net.Dial("tcp", h.gwAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	c, err := tls.Dial("tcp", h.gwAddr, &tls.Config{RootCAs: h.bundle, NextProtos: []string{"http/1.1"}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "GET /prod/public/x HTTP/1.1\r\nHost: x\r\n")
	for _, conn := range []net.Conn{raw, c} {
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.ReadAll(conn); err != nil && isTimeout(err) {
			t.Fatal("the stalled connection was not closed")
		}
	}
	// Refusals of one source are aggregated per minute: stopping the gateway records the
	// summary of the second one.
	time.Sleep(1500 * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	h.gw.Shutdown(ctx)
	n := 0
	var reasons []any
	for _, ev := range h.audit.take() {
		if ev.EventName != "Connect" || ev.ErrorCode != "HeaderTimeout" || ev.SourceIPAddress != "127.0.0.1" {
			continue
		}
		reasons = append(reasons, ev.AdditionalEventData["reason"])
		if c, ok := ev.AdditionalEventData["count"].(float64); ok {
			n += int(c)
		} else {
			n++
		}
	}
	if n != 2 {
		t.Fatalf("audited header timeouts: %d (%v), want the handshake's and the headers'", n, reasons)
	}
}
