package gateway

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"time"

	"github.com/phantom-perimeter/phantom/internal/accept"
	"github.com/phantom-perimeter/phantom/internal/admission"
	"github.com/phantom-perimeter/phantom/internal/audit"
	"github.com/phantom-perimeter/phantom/internal/pki"
	"github.com/phantom-perimeter/phantom/internal/requestid"
)

// The gateway's listener. Before a byte of HTTP is read, each connection is counted
// against the listener's limits (gateway.limits.maxConnections, and
// maxConnectionsPerSource for its source address) and must finish its TLS handshake
// within gateway.limits.headerTimeout, which then bounds the request line and headers
// too. A connection whose verified client certificate names an endpoint of the spec
// stops counting against its source address: it carries the calls of every caller of
// that endpoint. Refused connections are audited (eventName Connect), aggregated as the
// endpoint aggregates its own.

// Audit errorCodes of refused connections.
const (
	codeConnectionLimit = admission.CodeConnectionLimit
	codeHeaderTimeout   = "HeaderTimeout"
)

// server is one listener the gateway serves.
type server struct {
	ln    net.Listener
	conns *admission.Tracker
	srv   *http.Server
	ready chan net.Conn
	done  chan struct{}
	once  sync.Once

	mu    sync.Mutex
	state map[net.Conn]*gatewayConn // by the *tls.Conn the HTTP server knows
}

// Serve accepts connections on ln, a plain TCP listener, and serves them over TLS with
// tlsCfg (TLSConfig with the certificate source) until Shutdown. It takes ownership of
// ln and returns nil once Shutdown stopped it.
func (g *Gateway) Serve(ln net.Listener, tlsCfg *tls.Config) error {
	spec := g.cfg.Spec()
	headerTimeout := spec.Gateway.Limits.HeaderTimeout
	s := &server{ln: ln, conns: admission.NewTracker(), ready: make(chan net.Conn), done: make(chan struct{}), state: map[net.Conn]*gatewayConn{}}
	s.srv = &http.Server{
		Handler:   g,
		TLSConfig: tlsCfg,
		// The header timeout is read here, at start: http.Server applies it per request.
		ReadHeaderTimeout: headerTimeout,
		// No ReadTimeout or WriteTimeout: a body is bounded by its own rate
		// (gateway.limits.bodyTimeout, minBodyRate) and the exchange by the route's
		// backend timeout; a fixed bound would cut slow legitimate uploads.
		IdleTimeout:    2 * time.Minute,
		MaxHeaderBytes: 64 << 10,
		ConnState:      s.connState,
		ErrorLog:       slog.NewLogLogger(g.log.Handler(), slog.LevelDebug),
	}
	g.mu.Lock()
	if g.closing {
		g.mu.Unlock()
		ln.Close()
		return nil
	}
	g.servers = append(g.servers, s)
	g.refusals.Start()
	g.mu.Unlock()
	go s.acceptLoop(g, headerTimeout)
	err := s.srv.Serve(s)
	s.Close()
	if errors.Is(err, http.ErrServerClosed) || errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}

// Shutdown stops accepting, lets the requests in progress finish until ctx ends (then
// closes what is left) and records the pending refusal summaries.
func (g *Gateway) Shutdown(ctx context.Context) error {
	g.mu.Lock()
	g.closing = true
	servers := g.servers
	g.mu.Unlock()
	var errs []error
	for _, s := range servers {
		s.Close()
		if err := s.srv.Shutdown(ctx); err != nil {
			s.srv.Close()
			errs = append(errs, err)
		}
	}
	g.refusals.Stop(ctx)
	return errors.Join(errs...)
}

// acceptLoop admits connections and hands each to its own handshake.
func (s *server) acceptLoop(g *Gateway, headerTimeout time.Duration) {
	var backoff accept.Backoff
	for {
		c, err := s.ln.Accept()
		if err != nil {
			select {
			case <-s.done:
				return
			default:
			}
			if backoff.Retry(err, s.done) {
				g.log.Warn("gateway accept failed; retrying", "addr", s.ln.Addr().String(), "error", err, "retry_in", backoff.Wait())
				continue
			}
			select {
			case <-s.done:
				return
			default:
			}
			g.log.Error("gateway accept failed; the listener stops", "addr", s.ln.Addr().String(), "error", err)
			s.Close()
			return
		}
		backoff.Reset()
		src, port := admission.Addrs(c)
		spec := g.cfg.Spec()
		if ok, reason := s.conns.Admit(src.Addr(), spec.Gateway.Limits.ConnectionLimits); !ok {
			admission.Reset(c)
			g.refusals.Note(admission.Refusal{Code: codeConnectionLimit, Src: src, LocalPort: port, Detail: map[string]any{"reason": reason}})
			continue
		}
		go s.handshake(g, s.conns.Wrap(c, src.Addr()), src, port, headerTimeout)
	}
}

// handshake completes TLS within the header timeout, exempts an endpoint's connection
// from its source's limit and hands the connection to the HTTP server.
func (s *server) handshake(g *Gateway, c *admission.Conn, src netip.AddrPort, port uint16, timeout time.Duration) {
	gc := &gatewayConn{Conn: c, g: g, src: src, port: port}
	tc := tls.Server(gc, s.srv.TLSConfig)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	err := tc.HandshakeContext(ctx)
	cancel()
	if err != nil {
		tc.Close()
		if ctx.Err() != nil {
			g.refusals.Note(admission.Refusal{Code: codeHeaderTimeout, Src: src, LocalPort: port,
				Detail: map[string]any{"reason": "no TLS handshake within gateway.limits.headerTimeout (" + timeout.String() + ")"}})
		} else {
			g.log.Debug("gateway TLS handshake failed", "source_ip", src.Addr().String(), "error", err)
		}
		return
	}
	spec := g.cfg.Spec()
	isEndpoint := false
	if certs := tc.ConnectionState().PeerCertificates; len(certs) > 0 {
		if id, cerr := g.verifyPeer(certs); cerr == nil && id.Kind == pki.KindEndpoint {
			_, isEndpoint = spec.Endpoint(id.Name)
		}
	}
	if ok, reason := c.Settle(spec.Gateway.Limits.ConnectionLimits, isEndpoint); !ok {
		tc.Close()
		g.refusals.Note(admission.Refusal{Code: codeConnectionLimit, Src: src, LocalPort: port, Detail: map[string]any{"reason": reason}})
		return
	}
	gc.h1 = tc.ConnectionState().NegotiatedProtocol != "h2"
	s.mu.Lock()
	s.state[tc] = gc
	s.mu.Unlock()
	select {
	case s.ready <- tc:
	case <-s.done:
		tc.Close()
	}
}

// connState follows each HTTP/1.1 connection between requests. A read deadline that
// expires before its first request, or after part of a later one arrived, is a header
// timeout, audited; one that expires on a quiet kept-alive connection is the idle
// timeout, which is not.
func (s *server) connState(c net.Conn, st http.ConnState) {
	s.mu.Lock()
	gc := s.state[c]
	if st == http.StateClosed || st == http.StateHijacked {
		delete(s.state, c)
	}
	s.mu.Unlock()
	if gc == nil {
		return
	}
	gc.mu.Lock()
	gc.state = st
	gc.partial = 0
	gc.mu.Unlock()
}

// gatewayConn is an admitted connection under TLS: it notices header timeouts.
type gatewayConn struct {
	*admission.Conn
	g    *Gateway
	src  netip.AddrPort
	port uint16
	h1   bool

	mu      sync.Mutex
	state   http.ConnState // as the HTTP server last reported it
	partial int64          // bytes read since then
}

func (c *gatewayConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.mu.Lock()
	c.partial += int64(n)
	// (Bytes read during the TLS handshake may hold the first request already, so a new
	// connection's timeout is a header timeout whatever the count says.)
	timedOut := err != nil && c.h1 && isTimeout(err) && (c.state == http.StateNew || c.state == http.StateIdle && c.partial > 0)
	if timedOut {
		c.state = http.StateClosed // one record per connection
	}
	c.mu.Unlock()
	if timedOut {
		c.g.refusals.Note(admission.Refusal{Code: codeHeaderTimeout, Src: c.src, LocalPort: c.port,
			Detail: map[string]any{"reason": "the request line and headers did not arrive within gateway.limits.headerTimeout"}})
	}
	return n, err
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// Accept yields the connections whose handshake is done.
func (s *server) Accept() (net.Conn, error) {
	select {
	case c := <-s.ready:
		return c, nil
	case <-s.done:
		return nil, net.ErrClosed
	}
}

func (s *server) Close() error {
	s.once.Do(func() {
		close(s.done)
		s.ln.Close()
	})
	return nil
}

func (s *server) Addr() net.Addr { return s.ln.Addr() }

// connectEvent is the audit event of a refused connection.
func (g *Gateway) connectEvent(code string, src netip.Addr, id string) *audit.Event {
	ev := &audit.Event{
		EventVersion:    audit.EventVersion,
		EventTime:       g.now().UTC(),
		EventSource:     "execute-api.amazonaws.com",
		EventName:       "Connect",
		ErrorCode:       code,
		ErrorMessage:    connectMessages[code],
		RequestID:       id,
		EventID:         requestid.New(),
		ReadOnly:        true,
		EventType:       "AwsServiceEvent",
		ManagementEvent: false,
		EventCategory:   "NetworkActivity",
	}
	if src.IsValid() {
		ev.SourceIPAddress = src.String()
	}
	if s := g.cfg.Spec(); s != nil {
		ev.AWSRegion, ev.RecipientAccountID = s.Region, s.Account
	}
	return ev
}

var connectMessages = map[string]string{
	codeConnectionLimit: "The listener or the source address holds its maximum of open connections.",
	codeHeaderTimeout:   "The TLS handshake or the request headers did not arrive in time.",
}
