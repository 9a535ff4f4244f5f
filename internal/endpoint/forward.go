package endpoint

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"strings"
	"sync/atomic"
	"time"

	"github.com/phantom-perimeter/phantom/internal/admission"
	"github.com/phantom-perimeter/phantom/internal/audit"
	"github.com/phantom-perimeter/phantom/internal/handoff"
	"github.com/phantom-perimeter/phantom/internal/requestid"
	"github.com/phantom-perimeter/phantom/internal/sigv4"
)

// gatewayHost is the URL host of every request to the gateway: one connection pool for
// all replicas, whose dialer picks the replica. It is never sent; Host stays the caller's.
const gatewayHost = "phantom-gateway"

// connInfo is what the endpoint learns about a caller's connection once, at its start.
// The header values are shared, read-only slices: setting them costs no allocation.
type connInfo struct {
	src        netip.AddrPort
	localPort  uint16
	sni        string // the TLS server name the caller sent, "" when none
	version    uint16 // the TLS version and cipher suite, for a Local gateway
	cipher     uint16
	srcIP      []string
	tlsVersion []string
	tlsCipher  []string
}

type connInfoKey struct{}

// connContext is the server's ConnContext: c is a *tls.Conn whose handshake is done.
func connContext(ctx context.Context, c net.Conn) context.Context {
	src, port := admission.Addrs(c)
	ci := &connInfo{src: src, localPort: port, srcIP: []string{src.Addr().String()}}
	if tc, ok := c.(*tls.Conn); ok {
		cs := tc.ConnectionState()
		ci.sni, ci.version, ci.cipher = cs.ServerName, cs.Version, cs.CipherSuite
		ci.tlsVersion = []string{audit.TLSVersionName(cs.Version)}
		ci.tlsCipher = []string{audit.CipherSuiteName(cs.CipherSuite)}
	}
	return context.WithValue(ctx, connInfoKey{}, ci)
}

// ServeHTTP handles one caller request: the security group again (a reload may have
// removed the rule the connection came in by), API selection, then the gateway.
func (e *Endpoint) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ci, _ := r.Context().Value(connInfoKey{}).(*connInfo)
	if ci == nil || ci.tlsVersion == nil {
		// Only connections the endpoint handshook reach here; anything else is a wiring bug.
		e.refuse(w, r, netip.AddrPort{}, http.StatusForbidden, codeAccessDenied, "not a TLS connection of this endpoint", "")
		return
	}
	ep, s := e.endpointSpec()
	if d := securityGroup(ep, ci.src.Addr(), ci.localPort); !d.allowed {
		w.Header().Set("Connection", "close")
		reason, _ := d.detail(ep, ci.localPort)["reason"].(string)
		e.refuse(w, r, ci.src, http.StatusForbidden, codeSecurityGroupDenied, reason, "")
		return
	}
	if r.Method == http.MethodConnect || r.RequestURI == "*" {
		e.refuse(w, r, ci.src, http.StatusBadRequest, codeBadRequest, "CONNECT or asterisk-form request", "")
		return
	}
	api, misdirected, reason := selectAPI(s, ep, ci.sni, r.Host, r.Header[headerAPIID])
	switch {
	case misdirected:
		e.refuse(w, r, ci.src, http.StatusMisdirectedRequest, codeMisdirected, reason, "")
		return
	case api == "":
		e.refuse(w, r, ci.src, http.StatusForbidden, codeAccessDenied, reason, "")
		return
	}
	h := r.Header
	for k := range h {
		if strippedHeader(k) {
			delete(h, k)
		}
	}
	var start time.Time
	if e.cfg.Metrics != nil {
		start = time.Now()
	}
	if e.cfg.Local != nil {
		// In memory: no headers to set, no hop; the gateway reads the body, answers and
		// bounds the exchange itself, as on its own listener.
		e.cfg.Local(w, r, Handover{Endpoint: e.id, SourceIP: ci.src.Addr(), APIID: api, TLSVersion: ci.version, CipherSuite: ci.cipher})
		if m := e.cfg.Metrics; m != nil {
			m.Request(api, "")
			m.Forward(api, time.Since(start))
		}
		return
	}
	h[handoff.HeaderSourceIP] = ci.srcIP
	h[handoff.HeaderAPIID] = []string{api}
	h[handoff.HeaderTLSVersion] = ci.tlsVersion
	h[handoff.HeaderTLSCipher] = ci.tlsCipher
	if r.ContentLength != 0 && r.Body != nil && r.Body != http.NoBody {
		e.forwardWithBody(w, r)
	} else {
		e.proxy.ServeHTTP(w, r)
	}
	if m := e.cfg.Metrics; m != nil {
		m.Forward(api, time.Since(start))
	}
}

// forwardWithBody proxies a request whose body streams to the gateway, which may answer
// before the body is in (the gateway refuses a caller before reading its body). The
// exchange is full duplex, so the answer reaches the caller at once instead of waiting
// behind the body; and a body nobody will read any more stops being read, so the
// connection is closed rather than held for the rest of an upload.
func (e *Endpoint) forwardWithBody(w http.ResponseWriter, r *http.Request) {
	rc := http.NewResponseController(w)
	_ = rc.EnableFullDuplex() // HTTP/2 is always full duplex: ErrNotSupported
	b := &watchedBody{ReadCloser: r.Body}
	// The proxy reads the body through b on a copy of the request: the server's keeps the
	// connection's own, so the server knows when it was left unread.
	out := r.WithContext(r.Context())
	out.Body = b
	if r.ProtoMajor == 1 {
		w = closingWriter{w, b}
	}
	e.proxy.ServeHTTP(w, out)
	if !b.done.Load() {
		// Reads end soon, not at once: the server reads on, discarding, while the answer
		// travels, because closing on a caller still sending resets the connection and a
		// reset can destroy the answer before the caller reads it (RFC 9112 §9.6).
		_ = rc.SetReadDeadline(time.Now().Add(closeLinger))
	}
}

// closeLinger is how long a connection closed on a caller still sending its body stays
// open for reading after the answer (net/http waits as long after its own early answers).
const closeLinger = 500 * time.Millisecond

// closingWriter closes an HTTP/1.x connection after an answer written before the request's
// body was all in. The exchange runs full duplex, so the server neither reads the rest nor
// closes by itself: the rest of the caller's body would be read as the next request.
type closingWriter struct {
	http.ResponseWriter
	body *watchedBody
}

func (w closingWriter) WriteHeader(code int) {
	if !w.body.done.Load() {
		w.Header().Set("Connection", "close")
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w closingWriter) Write(p []byte) (int, error) {
	if !w.body.done.Load() {
		w.Header().Set("Connection", "close") // (no effect once the header is written)
	}
	return w.ResponseWriter.Write(p)
}

// Unwrap lets http.ResponseController reach the server's writer (flush, deadlines).
func (w closingWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// watchedBody notes when a request body has been read to its end.
type watchedBody struct {
	io.ReadCloser
	done atomic.Bool
}

func (b *watchedBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF {
		b.done.Store(true)
	}
	return n, err
}

// strippedHeader reports whether a caller-sent header must not reach the gateway: the
// X-Phantom-* headers only the endpoint may set, and every forwarding header, which the
// gateway would otherwise have to tell apart from the endpoint's. Header names compare
// case-insensitively (RFC 9110 §5.1); a name Go did not canonicalize is caught too.
func strippedHeader(k string) bool {
	if len(k) < 9 {
		return false
	}
	// Most headers are ruled out by their first byte, before any case folding.
	switch k[0] | 0x20 {
	case 'x':
		return len(k) >= 10 && strings.EqualFold(k[:10], "x-phantom-") ||
			len(k) >= 12 && strings.EqualFold(k[:12], "x-forwarded-")
	case 'f':
		return strings.EqualFold(k, "forwarded")
	}
	return false
}

// rewrite points the outgoing request at the gateway and keeps the request-target byte
// for byte: the SigV4 canonical request is computed over the path and query as sent, so
// no re-escaping, dot-segment removal or query re-encoding may happen on the way.
// URL.Opaque is written out verbatim; a path starting with // cannot be opaque (Go would
// read it as an authority) and goes through RawPath, exact for every valid escaping.
func (e *Endpoint) rewrite(pr *httputil.ProxyRequest) {
	u := pr.Out.URL
	u.Scheme, u.Host, u.User, u.Fragment, u.RawFragment = "https", gatewayHost, nil, "", ""
	path, query, hasQuery := sigv4.RequestTarget(pr.In)
	switch {
	case path == "":
		u.Opaque, u.Path, u.RawPath = "/", "/", ""
	case strings.HasPrefix(path, "//"):
		u.Opaque, u.RawPath = "", path
	default:
		u.Opaque = path
	}
	u.RawQuery, u.ForceQuery = query, hasQuery && query == ""
	pr.Out.Host = pr.In.Host
	// ServeHTTP set the endpoint's headers on the incoming request; set them again here,
	// after the proxy removed the hop-by-hop headers, or a caller's "Connection:
	// X-Phantom-Source-Ip" would have the proxy delete them on the way out.
	for _, k := range [...]string{handoff.HeaderSourceIP, handoff.HeaderAPIID, handoff.HeaderTLSVersion, handoff.HeaderTLSCipher} {
		pr.Out.Header[k] = pr.In.Header[k]
	}
}

// bodies answered by the endpoint itself, in API Gateway's shapes.
var (
	bodyForbidden  = []byte(`{"message":"Forbidden"}`)
	bodyMisdirect  = []byte(`{"message":"Misdirected Request"}`)
	bodyBadRequest = []byte(`{"message":"Bad Request"}`)
	bodyBadGateway = []byte(`{"message":"Internal server error"}`)
	bodyTimeout    = []byte(`{"message":"Endpoint request timed out"}`)
)

// refuse records and answers a request the endpoint does not forward. The record comes
// first: the answer is never written unaudited (a failed record is logged; the request is
// refused either way).
func (e *Endpoint) refuse(w http.ResponseWriter, r *http.Request, src netip.AddrPort, status int, code, reason, api string) {
	id := requestid.New()
	ev := e.newEvent(eventInvoke, code, src.Addr(), id)
	ev.UserAgent = r.UserAgent()
	ev.TLSDetails = tlsDetails(r)
	params := map[string]any{"httpMethod": r.Method, "host": r.Host}
	if api != "" {
		params["apiId"] = api
	}
	ev.RequestParameters = params
	ev.AdditionalEventData = map[string]any{"reason": reason}
	if src.IsValid() {
		ev.AdditionalEventData["sourcePort"] = src.Port()
	}
	if err := e.cfg.Auditor.Record(r.Context(), ev); err != nil {
		e.log.Error("endpoint audit record failed", "request_id", id, "error_code", code, "error", err)
	}
	if m := e.cfg.Metrics; m != nil {
		m.Request(api, code)
	}
	e.log.Info("endpoint refused a request", "request_id", id, "error_code", code, "source_ip", ev.SourceIPAddress,
		"host", r.Host, "reason", reason)
	var body []byte
	typ := ""
	switch status {
	case http.StatusForbidden:
		body, typ = bodyForbidden, "ForbiddenException"
	case http.StatusMisdirectedRequest:
		body, typ = bodyMisdirect, "MisdirectedRequestException"
	case http.StatusBadRequest:
		body, typ = bodyBadRequest, "BadRequestException"
	case http.StatusGatewayTimeout:
		body, typ = bodyTimeout, "InternalServerErrorException"
	default:
		body, typ = bodyBadGateway, "InternalServerErrorException"
	}
	wh := w.Header()
	wh.Set("Content-Type", "application/json")
	// API Gateway's spelling; names are case-insensitive, but the exact bytes cost nothing.
	wh["x-amzn-RequestId"] = []string{id}
	wh["x-amzn-ErrorType"] = []string{typ}
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// proxyError answers a request the gateway did not: 502, or 504 when it timed out.
func (e *Endpoint) proxyError(w http.ResponseWriter, r *http.Request, err error) {
	if r.Context().Err() != nil {
		// The caller went away or the endpoint is shutting down hard; nobody to answer.
		e.log.Debug("endpoint request canceled", "error", err)
		w.WriteHeader(http.StatusBadGateway)
		return
	}
	ci, _ := r.Context().Value(connInfoKey{}).(*connInfo)
	var src netip.AddrPort
	if ci != nil {
		src = ci.src
	}
	status, code := http.StatusBadGateway, codeGatewayUnreachable
	var ne net.Error
	if errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout() {
		status, code = http.StatusGatewayTimeout, codeGatewayTimeout
	}
	e.log.Warn("endpoint could not forward to the gateway", "error", err)
	e.refuse(w, r, src, status, code, err.Error(), r.Header.Get(handoff.HeaderAPIID))
}

// newProxy builds the reverse proxy to the gateway.
func (e *Endpoint) newProxy() *httputil.ReverseProxy {
	return &httputil.ReverseProxy{
		Rewrite:      e.rewrite,
		Transport:    e.gw.transport,
		BufferPool:   newBufferPool(),
		ErrorHandler: e.proxyError,
		ModifyResponse: func(resp *http.Response) error {
			if m := e.cfg.Metrics; m != nil {
				m.Request(resp.Request.Header.Get(handoff.HeaderAPIID), "")
			}
			return nil
		},
		ErrorLog: slog.NewLogLogger(e.log.Handler(), slog.LevelWarn),
	}
}

// gateways dials the gateway replicas: round-robin over new connections, skipping for a
// moment a replica that could not be reached (refused, timed out or failed the mTLS
// handshake). Requests are retried on another connection only by http.Transport's own
// rule: the connection was reused and nothing of the request was written, or the request
// is idempotent and its body can be replayed.
type gateways struct {
	addrs     []string
	tls       []*tls.Config // per replica: ServerName differs
	down      []atomic.Int64
	next      atomic.Uint64
	dialer    net.Dialer
	lim       limits
	log       *slog.Logger
	transport *http.Transport
	metrics   Metrics // nil: none
}

func newGateways(cfg Config, log *slog.Logger, lim limits, verify func(tls.ConnectionState) error) *gateways {
	g := &gateways{
		addrs:   cfg.Gateways,
		tls:     make([]*tls.Config, len(cfg.Gateways)),
		down:    make([]atomic.Int64, len(cfg.Gateways)),
		dialer:  net.Dialer{Timeout: lim.dialTimeout, KeepAlive: 30 * time.Second},
		lim:     lim,
		log:     log,
		metrics: cfg.Metrics,
	}
	sessions := tls.NewLRUClientSessionCache(len(cfg.Gateways) * 64)
	for i, a := range cfg.Gateways {
		host, _, _ := net.SplitHostPort(a)
		g.tls[i] = &tls.Config{
			MinVersion:           tls.VersionTLS12,
			ServerName:           host,
			GetClientCertificate: cfg.ClientCert,
			// The gateway's certificate is checked by verifyGateway against the perimeter
			// CA and its SPIFFE identity, not against a host name: the gateway is known by
			// what it is, wherever it runs. Go's own verification is off only so this one
			// can replace it; VerifyConnection runs on every handshake, resumed ones too.
			InsecureSkipVerify: true,
			VerifyConnection:   verify,
			NextProtos:         []string{"http/1.1"},
			ClientSessionCache: sessions,
			Time:               cfg.Now,
		}
	}
	g.transport = &http.Transport{
		Proxy:                 nil, // never an environment proxy between endpoint and gateway
		DialTLSContext:        g.dialTLS,
		TLSNextProto:          map[string]func(string, *tls.Conn) http.RoundTripper{}, // HTTP/1.1: many connections
		MaxIdleConns:          2048,
		MaxIdleConnsPerHost:   2048,
		IdleConnTimeout:       90 * time.Second,
		ResponseHeaderTimeout: responseHeaderTimeout,
		ExpectContinueTimeout: time.Second,
		// Compression would add Accept-Encoding to a request the caller signed.
		DisableCompression: true,
		WriteBufferSize:    16 << 10,
		ReadBufferSize:     16 << 10,
	}
	return g
}

func (g *gateways) dialTLS(ctx context.Context, _, _ string) (net.Conn, error) {
	n := len(g.addrs)
	start := int(g.next.Add(1) % uint64(n))
	now := time.Now().UnixNano()
	var errs []error
	// First the replicas not recently failed, in turn; then, if all failed, those too.
	for pass := range 2 {
		for i := range n {
			j := (start + i) % n
			if (g.down[j].Load() > now) != (pass == 1) {
				continue
			}
			c, err := g.dialOne(ctx, j)
			if g.metrics != nil && (err == nil || ctx.Err() == nil) {
				g.metrics.Replica(g.addrs[j], err)
			}
			if err == nil {
				g.down[j].Store(0)
				return c, nil
			}
			errs = append(errs, err)
			if ctx.Err() != nil {
				return nil, errors.Join(errs...)
			}
			g.down[j].Store(time.Now().Add(g.lim.downFor).UnixNano())
			g.log.Warn("gateway replica unreachable; trying the next", "gateway", g.addrs[j], "error", err)
		}
	}
	return nil, errors.Join(errs...)
}

func (g *gateways) dialOne(ctx context.Context, j int) (net.Conn, error) {
	raw, err := g.dialer.DialContext(ctx, "tcp", g.addrs[j])
	if err != nil {
		return nil, fmt.Errorf("dial gateway %s: %w", g.addrs[j], err)
	}
	tc := tls.Client(raw, g.tls[j])
	hctx, cancel := context.WithTimeout(ctx, g.lim.handshakeTimeout)
	defer cancel()
	if err := tc.HandshakeContext(hctx); err != nil {
		raw.Close()
		return nil, fmt.Errorf("mTLS handshake with gateway %s: %w", g.addrs[j], err)
	}
	return tc, nil
}

// bufferPool is a bounded free list of copy buffers for the proxy; unlike sync.Pool it
// hands slices back without boxing them, so a response copy allocates nothing.
type bufferPool chan []byte

func newBufferPool() bufferPool { return make(bufferPool, 1024) }

func (p bufferPool) Get() []byte {
	select {
	case b := <-p:
		return b
	default:
		return make([]byte, 32<<10)
	}
}

func (p bufferPool) Put(b []byte) {
	select {
	case p <- b:
	default:
	}
}
