package egress

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/phantom-perimeter/phantom/internal/config"
)

// Tunnels to endpoints. An endpoint serves several APIs on one address, and picks the API
// of a call by its Host or x-apigw-api-id header, which travel inside TLS where the proxy
// cannot see them. What the proxy can see is the ClientHello's server name (SNI), and the
// endpoint binds every request of a connection to the API that name names
// (config.Spec.BindName). So a tunnel to an endpoint opens, the proxy reads the client's
// ClientHello before anything reaches the endpoint, and lets it through only when its
// server name binds an API the node's api: rules allow and the endpoint serves — the
// private DNS name of the API (a1b2c3d4e5.execute-api.REGION.amazonaws.com), its
// endpoint-specific name, or the endpoint's own private DNS name when the endpoint serves
// that one API. No server name, or another API's, is refused and audited. An `api:` rule
// therefore opens one API, not the endpoint.

// maxClientHello bounds what is read looking for the ClientHello: the largest handshake
// message crypto/tls accepts, in records of at most 16 KiB plus their headers.
const maxClientHello = 64<<10 + 5*(5+256)

// errHelloRead stops the handshake once the ClientHello is in hand.
var errHelloRead = errors.New("client hello read")

// readClientHello reads a TLS ClientHello from r, using crypto/tls's own parser (records
// split anywhere, any extension order), and returns it with every byte it read, which
// must be passed on to the server unchanged. Nothing is written back to the client.
func readClientHello(r io.Reader) (*tls.ClientHelloInfo, []byte, error) {
	var seen bytes.Buffer
	in := io.TeeReader(io.LimitReader(r, maxClientHello), &seen)
	var hello *tls.ClientHelloInfo
	err := tls.Server(helloConn{r: in}, &tls.Config{
		GetConfigForClient: func(h *tls.ClientHelloInfo) (*tls.Config, error) {
			c := *h
			c.Conn = nil
			hello = &c
			return nil, errHelloRead
		},
	}).Handshake()
	if hello == nil {
		if err == nil {
			err = errors.New("no ClientHello")
		}
		return nil, seen.Bytes(), fmt.Errorf("read ClientHello: %w", err)
	}
	return hello, seen.Bytes(), nil
}

// helloConn is the read side of a connection, for readClientHello: writes (the alert the
// aborted handshake sends) are dropped.
type helloConn struct{ r io.Reader }

func (c helloConn) Read(b []byte) (int, error)           { return c.r.Read(b) }
func (c helloConn) Write(b []byte) (int, error)          { return len(b), nil }
func (c helloConn) Close() error                         { return nil }
func (c helloConn) LocalAddr() net.Addr                  { return &net.TCPAddr{} }
func (c helloConn) RemoteAddr() net.Addr                 { return &net.TCPAddr{} }
func (c helloConn) SetDeadline(time.Time) error          { return nil }
func (c helloConn) SetReadDeadline(time.Time) error      { return nil }
func (c helloConn) SetWriteDeadline(time.Time) error     { return nil }
func (c helloConn) String() string                       { return "client hello" }
func (c helloConn) NetConn() net.Conn                    { return nil }
func (c helloConn) ConnectionState() tls.ConnectionState { return tls.ConnectionState{} }

// checkEndpoints finds the endpoints among the addresses a request may dial and refuses
// what cannot be a tunnel to one of them: a forwarded (plain HTTP) request, since
// endpoints speak TLS only, and a node whose api: rules allow none of their APIs.
func (p *Proxy) checkEndpoints(q *request) {
	eps := p.compiledFor(q.spec).endpoints
	for _, a := range q.addrs {
		if e, ok := eps[a]; ok && !slices.Contains(q.endpoints, e) {
			q.endpoints = append(q.endpoints, e)
		}
	}
	if len(q.endpoints) == 0 {
		return
	}
	if q.r.Method != http.MethodConnect {
		q.deny(http.StatusForbidden, CodeDestinationNotAllow, q.host.String()+" is endpoint "+q.endpoints[0].ID+", which speaks TLS only: use CONNECT")
		return
	}
	for _, e := range q.endpoints {
		if !slices.ContainsFunc(e.APIs, q.rules.allowsAPI) {
			q.deny(http.StatusForbidden, CodeDestinationNotAllow, "no api: rule of role "+q.node.Role+" names an API of endpoint "+e.ID)
			return
		}
	}
}

// checkServerName decides a tunnel to an endpoint on its ClientHello's server name: it
// must bind (for every endpoint the tunnel may reach) an API the role's rules allow and
// the endpoint serves. It returns the API, or a refusal reason.
func (p *Proxy) checkServerName(q *request, sni string) (string, string) {
	if sni == "" {
		return "", "the ClientHello names no server (SNI): a tunnel to endpoint " + q.endpoints[0].ID + " must name the API it is for, e.g. " +
			config.ExecuteAPIName(q.endpoints[0].APIs[0], q.spec.Region)
	}
	api := ""
	for _, e := range q.endpoints {
		b := q.spec.BindName(e, sni)
		switch {
		case b.OtherEndpoint != "":
			return "", fmt.Sprintf("the server name %q addresses endpoint %s, not %s", truncate(sni, 128), b.OtherEndpoint, e.ID)
		case b.API == "":
			return "", fmt.Sprintf("the server name %q names no one API of endpoint %s (it serves %s)", truncate(sni, 128), e.ID, strings.Join(e.APIs, ", "))
		case !q.rules.allowsAPI(b.API):
			return "", fmt.Sprintf("the server name %q names API %s, which no api: rule of role %s allows", truncate(sni, 128), b.API, q.node.Role)
		case !slices.Contains(e.APIs, b.API):
			return "", fmt.Sprintf("the server name %q names API %s, which endpoint %s does not serve", truncate(sni, 128), b.API, e.ID)
		}
		api = b.API
	}
	return api, ""
}

// TLS alerts (RFC 8446 §6): a fatal alert record sent in the clear before any key exists,
// so the client's TLS stack reports why the tunnel closed.
var (
	alertAccessDenied  = []byte{21, 3, 3, 0, 2, 2, 49}
	alertInternalError = []byte{21, 3, 3, 0, 2, 2, 80}
)

// connectEndpoint carries out an allowed CONNECT to an endpoint: answer 200, read the
// client's ClientHello, check its server name, and only then dial the endpoint, audit the
// decision and pass the ClientHello on. A refusal after the 200 is a TLS alert and a
// close, audited like every other; in report mode a server name the rules refuse is
// reported and the tunnel goes on.
func (p *Proxy) connectEndpoint(w http.ResponseWriter, q *request) {
	hj, ok := w.(http.Hijacker)
	if !ok {
		q.deny(http.StatusHTTPVersionNotSupported, CodeInvalidRequest, "CONNECT needs HTTP/1.1")
		p.refuse(w, q)
		return
	}
	conn, brw, err := hj.Hijack()
	if err != nil {
		return
	}
	t := newTunnel(q)
	if !p.track(t, conn) {
		conn.Close()
		return
	}
	defer p.untrack(t)
	if _, err := io.WriteString(conn, "HTTP/1.1 200 Connection established\r\n\r\n"); err != nil {
		return
	}
	// Bytes the client sent right after the CONNECT sit in the server's reader.
	var in io.Reader = conn
	if n := brw.Reader.Buffered(); n > 0 {
		b, _ := brw.Reader.Peek(n)
		in = io.MultiReader(bytes.NewReader(b), conn)
	}
	conn.SetReadDeadline(time.Now().Add(p.cfg.ReadHeaderTimeout))
	hello, raw, err := readClientHello(in)
	conn.SetReadDeadline(time.Time{})
	fail := func(status int, code, reason string, alert []byte) {
		q.deny(status, code, reason)
		_ = p.recordRefusal(q)
		conn.SetWriteDeadline(time.Now().Add(time.Second))
		conn.Write(alert)
	}
	if err != nil {
		fail(http.StatusBadRequest, CodeInvalidRequest, "the tunnel to endpoint "+q.endpoints[0].ID+" does not start with a TLS ClientHello: "+truncate(err.Error(), 200), alertAccessDenied)
		return
	}
	q.ev.RequestParameters["serverName"] = truncate(hello.ServerName, 256)
	api, reason := p.checkServerName(q, hello.ServerName)
	if addrs := q.addrs; reason != "" {
		q.deny(http.StatusForbidden, CodeServerNameNotAllow, reason)
		p.explainRisk(q)
		if q.report == "" {
			fail(q.status, q.code, q.reason, alertAccessDenied)
			return
		}
		q.would = &refusal{q.status, q.code, q.reason}
		q.status, q.code, q.reason = 0, "", ""
		q.rule = "none: forwarded in report mode (" + q.report + ")"
		q.addrs = addrs
	} else {
		q.rule = "api:" + api + " via " + q.endpoints[0].ID
		q.ev.RequestParameters["apiId"] = api
		q.bound = min(noRiskBound, q.rules.apis[api])
		t.bound = q.bound
	}
	c, addr, err := p.dial(q.r.Context(), q.addrs)
	if err != nil {
		fail(http.StatusBadGateway, CodeConnectFailed, "connect to "+q.host.String()+": "+err.Error(), alertInternalError)
		return
	}
	if !t.add(c) {
		c.Close()
		return
	}
	if err := p.record(q, map[string]any{"connectedAddress": addr.String()}); err != nil {
		conn.Write(alertInternalError)
		return
	}
	c.SetWriteDeadline(time.Now().Add(p.cfg.IdleTimeout))
	if _, err := c.Write(raw); err != nil {
		return
	}
	splice(conn, c, p.cfg.IdleTimeout, &p.buffers)
}
