package handoff

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/phantom-perimeter/phantom/internal/accept"
	"github.com/phantom-perimeter/phantom/internal/pki"
)

// TunnelProto is the ALPN protocol of a handoff tunnel (RFC 7301): a TLS connection that
// speaks it carries one preamble and then one caller's bytes, never HTTP: inside its TLS,
// or after a raw preamble on its socket outside it. Version 2 added raw tunnels; an
// endpoint and a gateway of different versions refuse each other in the handshake.
const TunnelProto = "phantom-handoff/2"

// Tunnel timing. Variables of the server and the dialer so tests can shorten them.
const (
	// tunnelHandshakeTimeout bounds the mTLS handshake of a tunnel.
	tunnelHandshakeTimeout = 10 * time.Second
	// warmFor is how long an endpoint keeps a pre-dialed tunnel unused; the gateway waits
	// idleFor for its preamble, longer, so it never closes one the endpoint may still use.
	warmFor = time.Minute
	idleFor = 2 * time.Minute
	// maxPending bounds the tunnels in their handshake or waiting for a preamble: peers
	// are not authenticated until their handshake is done, and each holds a goroutine.
	maxPending = 4096
)

// VerifyEndpoint returns the check a gateway applies to a tunnel's peer: a certificate
// chain from the perimeter CA for client auth naming an endpoint, whose id it returns.
// It runs in the handshake (tls.Config.VerifyConnection), on resumed sessions too; an
// empty chain fails.
func VerifyEndpoint(v *pki.Verifier) func(tls.ConnectionState) (string, error) {
	return func(cs tls.ConnectionState) (string, error) {
		id, err := v.Verify(cs.PeerCertificates, x509.ExtKeyUsageClientAuth)
		if err != nil {
			return "", fmt.Errorf("tunnel peer certificate: %w", err)
		}
		if id.Kind != pki.KindEndpoint {
			return "", fmt.Errorf("tunnel peer certificate names %s, not an endpoint", id)
		}
		return id.Name, nil
	}
}

// TunnelServerConfig configures the gateway's end of the tunnels.
type TunnelServerConfig struct {
	// Certificate returns the gateway's certificate for the endpoints.
	Certificate func(*tls.ClientHelloInfo) (*tls.Certificate, error)
	// Peer names the endpoint a tunnel's verified peer is (VerifyEndpoint); an error
	// refuses the tunnel in its handshake.
	Peer func(tls.ConnectionState) (string, error)
	// Endpoints are the endpoints this gateway terminates connections for; a tunnel from
	// any other endpoint is refused.
	Endpoints []string
	// Delivered, when set, is told of each caller delivered, with its endpoint and
	// whether its bytes came raw (metrics.Handoff).
	Delivered func(endpoint string, raw bool)
	// Logger receives refused tunnels; nil is slog.Default().
	Logger *slog.Logger
	// Now is the clock of certificate checks; nil is time.Now.
	Now func() time.Time
}

// TunnelServer accepts tunnels from endpoints on a listener of its own and delivers each
// one, once its preamble is in, to the Listener of the endpoint its certificate names.
type TunnelServer struct {
	cfg    TunnelServerConfig
	ln     net.Listener
	tls    *tls.Config
	by     map[string]*Listener
	log    *slog.Logger
	done   chan struct{}
	once   sync.Once
	wg     sync.WaitGroup
	mu     sync.Mutex
	active map[net.Conn]struct{} // tunnels waiting for their preamble
	idle   time.Duration
}

// ServeTunnels serves tunnels on ln until Close.
func ServeTunnels(ln net.Listener, cfg TunnelServerConfig) (*TunnelServer, error) {
	if cfg.Certificate == nil || cfg.Peer == nil || len(cfg.Endpoints) == 0 {
		return nil, errors.New("handoff tunnels: a certificate, a peer check and the endpoints served are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	s := &TunnelServer{cfg: cfg, ln: ln, by: map[string]*Listener{}, log: cfg.Logger, done: make(chan struct{}),
		active: map[net.Conn]struct{}{}, idle: idleFor}
	for _, id := range cfg.Endpoints {
		s.by[id] = NewListener(&net.TCPAddr{IP: net.IPv4zero})
	}
	s.tls = &tls.Config{
		MinVersion:     tls.VersionTLS13,
		GetCertificate: cfg.Certificate,
		ClientAuth:     tls.RequireAnyClientCert,
		NextProtos:     []string{TunnelProto},
		Time:           cfg.Now,
		// Nothing reaches an endpoint's pre-dialed tunnel before its preamble, so the
		// endpoint can tell a closed one by any byte (alive). Tunnels are dialed ahead of
		// callers: resumption would save nobody a wait.
		SessionTicketsDisabled: true,
	}
	s.wg.Add(1)
	go s.acceptLoop()
	return s, nil
}

// Listener returns the listener of endpoint id's connections, nil if it is not served.
func (s *TunnelServer) Listener(id string) *Listener { return s.by[id] }

// Addr is the tunnel listener's address.
func (s *TunnelServer) Addr() net.Addr { return s.ln.Addr() }

// Close stops accepting tunnels and closes those waiting for a preamble and the
// endpoints' listeners; connections already delivered are their endpoints'.
func (s *TunnelServer) Close() error {
	s.once.Do(func() {
		close(s.done)
		s.ln.Close()
		s.mu.Lock()
		for c := range s.active {
			c.Close()
		}
		s.mu.Unlock()
		for _, l := range s.by {
			l.Close()
		}
	})
	s.wg.Wait()
	return nil
}

func (s *TunnelServer) acceptLoop() {
	defer s.wg.Done()
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
				s.log.Warn("handoff tunnel accept failed; retrying", "error", err, "retry_in", backoff.Wait())
				continue
			}
			select {
			case <-s.done:
			default:
				s.log.Error("handoff tunnel accept failed; no more tunnels are accepted", "addr", s.ln.Addr().String(), "error", err)
			}
			return
		}
		backoff.Reset()
		s.mu.Lock()
		select {
		case <-s.done:
			s.mu.Unlock()
			c.Close()
			return
		default:
		}
		if len(s.active) >= maxPending {
			s.mu.Unlock()
			s.log.Warn("handoff tunnel refused: too many tunnels in their handshake or idle", "peer", c.RemoteAddr().String(), "limit", maxPending)
			c.Close()
			continue
		}
		s.active[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go s.serve(c)
	}
}

// serve completes a tunnel's handshake and reads its preamble; the tunnel then belongs to
// its endpoint's listener.
func (s *TunnelServer) serve(raw net.Conn) {
	defer s.wg.Done()
	delivered := false
	defer func() {
		s.mu.Lock()
		delete(s.active, raw)
		s.mu.Unlock()
		if !delivered {
			raw.Close()
		}
	}()
	ex := &exactConn{Conn: raw, exact: true}
	tc := tls.Server(ex, s.tls)
	_ = raw.SetDeadline(time.Now().Add(tunnelHandshakeTimeout))
	if err := tc.Handshake(); err != nil {
		s.log.Warn("handoff tunnel refused", "peer", raw.RemoteAddr().String(), "error", err)
		return
	}
	// Who the peer is decides everything, and is checked before a byte of it is read.
	cs := tc.ConnectionState()
	id, err := s.cfg.Peer(cs)
	if err == nil && s.by[id] == nil {
		err = fmt.Errorf("tunnel peer is endpoint %s, which this gateway does not serve", id)
	}
	if err == nil && cs.NegotiatedProtocol != TunnelProto {
		err = fmt.Errorf("tunnel peer did not negotiate %s", TunnelProto)
	}
	if err != nil {
		s.log.Error("handoff tunnel refused", "peer", raw.RemoteAddr().String(), "error", err)
		return
	}
	// A warm tunnel waits here for its caller.
	_ = raw.SetDeadline(time.Now().Add(s.idle))
	p, err := ReadPreamble(tc)
	if err != nil {
		if !errors.Is(err, io.EOF) {
			s.log.Error("handoff tunnel sent a malformed preamble", "peer", raw.RemoteAddr().String(), "error", err)
		}
		return
	}
	c, err := s.deliverable(tc, ex, p)
	if err != nil {
		s.log.Error("handoff tunnel refused", "peer", raw.RemoteAddr().String(), "endpoint", id, "error", err)
		return
	}
	_ = raw.SetDeadline(time.Time{})
	delivered = true
	s.log.Debug("handoff tunnel delivered a caller", "endpoint", id, "source", p.Source.String(), "raw", p.Raw)
	if s.cfg.Delivered != nil {
		s.cfg.Delivered(id, p.Raw)
	}
	s.by[id].Deliver(c)
}

// deliverable is the caller's connection a tunnel carries after preamble p: inside the
// tunnel's TLS, or, raw, on its socket, where the next byte is the caller's first after
// its ClientHello (exactConn kept crypto/tls from reading it).
func (s *TunnelServer) deliverable(tc *tls.Conn, ex *exactConn, p Preamble) (*Conn, error) {
	ex.exact = false
	if !p.Raw {
		return NewConn(tc, p), nil
	}
	groups, err := helloShares(p.Consumed)
	if err != nil {
		return nil, fmt.Errorf("raw tunnel: %w", err)
	}
	tcp, ok := ex.Conn.(*net.TCPConn)
	if !ok {
		return nil, fmt.Errorf("raw tunnel over a %T, not TCP", ex.Conn)
	}
	// tc is dropped unclosed: its close_notify would land in the caller's stream.
	c := NewConn(&rawConn{TCPConn: tcp}, p)
	c.groups = groups
	return c, nil
}

// ReadPreamble reads exactly one preamble from r, refusing a malformed, oversized or
// truncated one. io.EOF means r ended before its first byte.
func ReadPreamble(r io.Reader) (Preamble, error) {
	var h [headerLen]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		if err == io.ErrUnexpectedEOF {
			return Preamble{}, fmt.Errorf("%w: truncated header", ErrPreamble)
		}
		return Preamble{}, err
	}
	n, err := bodyLen(h[:])
	if err != nil {
		return Preamble{}, err
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		return Preamble{}, fmt.Errorf("%w: truncated body: %v", ErrPreamble, err)
	}
	return parseBody(body)
}

// TunnelDialerConfig configures the endpoint's end of the tunnels.
type TunnelDialerConfig struct {
	// Gateways are the host:port addresses of the gateways' tunnel listeners, used in turn.
	Gateways []string
	// ClientCert is the endpoint's certificate, naming it, for client auth.
	ClientCert func(*tls.CertificateRequestInfo) (*tls.Certificate, error)
	// VerifyGateway checks the gateway's certificate (the endpoint's check of today's hop).
	VerifyGateway func(tls.ConnectionState) error
	// Warm is how many tunnels are kept dialed ahead; 0 means 16.
	Warm int
	// Logger receives dial failures; nil is slog.Default().
	Logger *slog.Logger
	// Now is the clock of certificate checks; nil is time.Now.
	Now func() time.Time
}

// TunnelDialer keeps tunnels to the gateways dialed ahead, so a caller never waits for an
// mTLS handshake, and splices each caller connection through one of them.
type TunnelDialer struct {
	cfg     TunnelDialerConfig
	tls     []*tls.Config
	dialer  net.Dialer
	warm    chan warmTunnel
	log     *slog.Logger
	next    int
	ctx     context.Context
	cancel  context.CancelFunc
	fill    sync.WaitGroup
	splices sync.WaitGroup
	mu      sync.Mutex
	open    map[net.Conn]struct{} // callers being spliced
	bufs    chan []byte
	warmFor time.Duration
}

type warmTunnel struct {
	c     *tls.Conn
	raw   net.Conn
	since time.Time
}

// NewTunnelDialer starts keeping cfg.Warm tunnels dialed.
func NewTunnelDialer(cfg TunnelDialerConfig) (*TunnelDialer, error) {
	if len(cfg.Gateways) == 0 || cfg.ClientCert == nil || cfg.VerifyGateway == nil {
		return nil, errors.New("handoff tunnels: gateways, a client certificate and a gateway check are required")
	}
	if cfg.Warm <= 0 {
		cfg.Warm = 16
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	d := &TunnelDialer{cfg: cfg, dialer: net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second},
		warm: make(chan warmTunnel, cfg.Warm), log: cfg.Logger, open: map[net.Conn]struct{}{},
		bufs: make(chan []byte, 256), warmFor: warmFor}
	for _, a := range cfg.Gateways {
		host, _, err := net.SplitHostPort(a)
		if err != nil {
			return nil, fmt.Errorf("gateway %q is not host:port", a)
		}
		d.tls = append(d.tls, &tls.Config{
			MinVersion:           tls.VersionTLS13,
			ServerName:           host,
			GetClientCertificate: cfg.ClientCert,
			// VerifyGateway replaces Go's host-name check: a gateway is known by the
			// identity its certificate from the perimeter CA names, wherever it runs.
			InsecureSkipVerify: true,
			VerifyConnection:   cfg.VerifyGateway,
			NextProtos:         []string{TunnelProto},
			Time:               cfg.Now,
		})
	}
	d.ctx, d.cancel = context.WithCancel(context.Background())
	d.fill.Add(1)
	go d.filler()
	return d, nil
}

// filler keeps the warm pool full, backing off while no gateway can be reached.
func (d *TunnelDialer) filler() {
	defer d.fill.Done()
	var backoff time.Duration
	for {
		c, err := d.dial(d.ctx)
		if err != nil {
			if d.ctx.Err() != nil {
				return
			}
			backoff = min(max(2*backoff, 50*time.Millisecond), 2*time.Second)
			d.log.Warn("handoff tunnel dial failed", "error", err, "retry_in", backoff)
			select {
			case <-time.After(backoff):
			case <-d.ctx.Done():
				return
			}
			continue
		}
		backoff = 0
		select {
		case d.warm <- warmTunnel{c, c.NetConn(), time.Now()}:
		case <-d.ctx.Done():
			c.Close()
			return
		}
	}
}

// dial opens one tunnel, trying each gateway in turn from the next one.
func (d *TunnelDialer) dial(ctx context.Context) (*tls.Conn, error) {
	var errs []error
	d.mu.Lock()
	start := d.next
	d.next = (d.next + 1) % len(d.tls)
	d.mu.Unlock()
	for i := range d.tls {
		j := (start + i) % len(d.tls)
		raw, err := d.dialer.DialContext(ctx, "tcp", d.cfg.Gateways[j])
		if err != nil {
			errs = append(errs, err)
			continue
		}
		tc := tls.Client(raw, d.tls[j])
		hctx, cancel := context.WithTimeout(ctx, tunnelHandshakeTimeout)
		err = tc.HandshakeContext(hctx)
		cancel()
		if err == nil && tc.ConnectionState().NegotiatedProtocol != TunnelProto {
			err = fmt.Errorf("the gateway at %s does not speak %s", d.cfg.Gateways[j], TunnelProto)
		}
		if err != nil {
			raw.Close()
			errs = append(errs, fmt.Errorf("tunnel handshake with %s: %w", d.cfg.Gateways[j], err))
			continue
		}
		return tc, nil
	}
	return nil, errors.Join(errs...)
}

// take returns a warm tunnel, or dials one when none is ready.
func (d *TunnelDialer) take() (*tls.Conn, error) {
	for {
		select {
		case w := <-d.warm:
			// A gateway that restarted closed the tunnels dialed to it before.
			if time.Since(w.since) > d.warmFor || !alive(w.raw) {
				w.c.Close()
				continue
			}
			return w.c, nil
		default:
			ctx, cancel := context.WithTimeout(d.ctx, 5*time.Second)
			defer cancel()
			return d.dial(ctx)
		}
	}
}

// Handoff passes c, a caller's connection, through a tunnel with p: it writes the
// preamble and then splices the two connections both ways until the gateway closes its
// side. It owns c; an error means the gateway never got it (c is closed).
//
// When the caller's first TLS record is a whole ClientHello offering TLS 1.3 with a key
// share the gateway can use, which it reads here, the preamble carries that record and
// is raw: the rest of the caller's bytes cross outside the tunnel's TLS, spliced by the
// kernel both ways, and TLS 1.3 between caller and gateway protects them (rawConn says
// why that is enough). Otherwise they cross inside it.
func (d *TunnelDialer) Handoff(c net.Conn, p Preamble) error {
	p = d.readHello(c, p)
	msg, err := p.Append(make([]byte, 0, 64+len(p.Consumed)))
	if err != nil {
		c.Close()
		return err
	}
	t, err := d.take()
	if err != nil {
		c.Close()
		return err
	}
	_ = t.SetWriteDeadline(time.Now().Add(writeTimeout))
	if _, err := t.Write(msg); err != nil {
		t.Close()
		c.Close()
		return fmt.Errorf("write the preamble: %w", err)
	}
	_ = t.SetWriteDeadline(time.Time{})
	d.mu.Lock()
	if d.ctx.Err() != nil {
		d.mu.Unlock()
		t.Close()
		c.Close()
		return errors.New("handoff tunnels closed")
	}
	d.open[c] = struct{}{}
	d.splices.Add(1)
	d.mu.Unlock()
	if p.Raw {
		go d.spliceRaw(c, t.NetConn())
	} else {
		go d.splice(c, t)
	}
	return nil
}

// helloWait bounds the wait for the rest of a caller's first TLS record once its first
// byte has come; a caller slower than that is tunnelled, under the gateway's handshake
// timeout from then on.
const helloWait = 2 * time.Second

// readHello reads the rest of the caller's first TLS record after p.Consumed, its first
// byte, and returns p with what it read, raw when the record is one a raw tunnel takes
// (helloShares). Whatever goes wrong leaves p as it is, with the bytes read, for the
// gateway's handshake to judge inside the tunnel.
func (d *TunnelDialer) readHello(c net.Conn, p Preamble) Preamble {
	if len(p.Consumed) != 1 || p.Consumed[0] != recordHandshake {
		return p
	}
	var hdr [recordHeaderLen]byte
	hdr[0] = p.Consumed[0]
	_ = c.SetReadDeadline(time.Now().Add(helloWait))
	defer c.SetReadDeadline(time.Time{})
	n, err := io.ReadFull(c, hdr[1:])
	if err != nil {
		p.Consumed = append([]byte(nil), hdr[:1+n]...)
		return p
	}
	body := int(hdr[3])<<8 | int(hdr[4])
	if recordHeaderLen+body > MaxConsumed {
		p.Consumed = append([]byte(nil), hdr[:]...)
		return p
	}
	// Sized to the record, not to the largest one: a ClientHello is some 0.5–2 KiB.
	rec := make([]byte, recordHeaderLen+body)
	copy(rec, hdr[:])
	n, err = io.ReadFull(c, rec[recordHeaderLen:])
	p.Consumed = rec[:recordHeaderLen+n]
	if err == nil {
		_, herr := helloShares(rec)
		p.Raw = herr == nil
	}
	return p
}

// spliceRaw copies caller to gateway and gateway to caller on a raw tunnel's socket, t,
// in the kernel (splice(2)) where both are TCP, with splice's ends. The tunnel's TLS is
// never closed: its close_notify would land in the caller's stream.
func (d *TunnelDialer) spliceRaw(c net.Conn, t net.Conn) {
	defer d.splices.Done()
	src := c
	if h, ok := c.(interface{ TCP() *net.TCPConn }); ok && h.TCP() != nil {
		src = h.TCP() // the socket under an admitted connection, which c still closes
	}
	go func() {
		_, _ = io.Copy(t, src)
		if cw, ok := t.(interface{ CloseWrite() error }); ok {
			_ = cw.CloseWrite()
		}
	}()
	_, _ = io.Copy(src, t)
	d.ended(c, t)
}

// splice copies caller to gateway and gateway to caller. The caller's end of stream is
// passed on (close_notify); the gateway's ends the exchange: the gateway is the server,
// and nothing it will not read need be carried.
func (d *TunnelDialer) splice(c net.Conn, t *tls.Conn) {
	defer d.splices.Done()
	go func() {
		buf := d.buf()
		_, _ = io.CopyBuffer(t, onlyReader{c}, buf)
		d.putBuf(buf)
		_ = t.CloseWrite()
	}()
	buf := d.buf()
	_, _ = io.CopyBuffer(onlyWriter{c}, t, buf)
	d.putBuf(buf)
	d.ended(c, t)
}

// ended ends the relay of caller c once the gateway's side, t, has ended: the caller's
// side is half-closed where it can be, then both are closed.
func (d *TunnelDialer) ended(c net.Conn, t io.Closer) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
	c.Close()
	t.Close()
	d.mu.Lock()
	delete(d.open, c)
	d.mu.Unlock()
}

func (d *TunnelDialer) buf() []byte {
	select {
	case b := <-d.bufs:
		return b
	default:
		return make([]byte, 32<<10)
	}
}

func (d *TunnelDialer) putBuf(b []byte) {
	select {
	case d.bufs <- b:
	default:
	}
}

// onlyReader and onlyWriter hide ReadFrom/WriteTo so CopyBuffer uses the pooled buffer.
type onlyReader struct{ io.Reader }
type onlyWriter struct{ io.Writer }

// Close stops dialing and closes the warm tunnels, then waits for the spliced
// connections to end until ctx does, and closes those left.
func (d *TunnelDialer) Close(ctx context.Context) error {
	d.mu.Lock()
	d.cancel()
	d.mu.Unlock()
	d.fill.Wait()
	for {
		select {
		case w := <-d.warm:
			w.c.Close()
			continue
		default:
		}
		break
	}
	done := make(chan struct{})
	go func() { d.splices.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		d.mu.Lock()
		for c := range d.open {
			c.Close()
		}
		d.mu.Unlock()
		<-done
		return ctx.Err()
	}
}
