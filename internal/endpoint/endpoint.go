// Package endpoint owns Phantom's network enforcement point, the analogue of a VPC
// interface endpoint (vpce-…): TLS-only listeners guarded by security-group ingress rules,
// which forward the APIs an endpoint lists to the gateway over mutual TLS, naming the
// endpoint by the certificate it presents and passing the caller's original address over
// that authenticated channel only.
//
// The order on every connection is the order a VPC applies: the security group first
// (source CIDR and destination port, checked at accept, before a byte is read or
// written), then TLS 1.2 or later (a plaintext client is answered with a 400 and closed),
// then, per request, the API the caller addresses must be one the endpoint lists.
//
// It does not authenticate callers or evaluate policies: SigV4, IAM, the endpoint policy
// and aws:SourceVpce are the gateway's, which learns this endpoint's identity from the
// mTLS certificate and nothing else. An endpoint in the gateway's own process
// (Config.Local) crosses no hop: it hands each request over in memory with a typed
// Handover in place of the certificate and the X-Phantom-* headers, after the same checks.
// It does not open listeners either: the caller hands Serve plain TCP listeners, one per
// address of the spec's endpoint.
//
// In a process of its own the endpoint can be a network boundary only (Config.Handoff):
// the security group at accept and the TLS-only check on the first byte, then the caller's
// connection, its TLS bytes untouched, goes to the gateway's process (internal/handoff),
// where an Endpoint with Local serves the handed-off connections as from its own
// listener: the security group again with the caller's address and port from the handoff,
// the TLS handshake with this endpoint's certificate, everything else per request.
//
// # Audit
//
// The endpoint records only its own refusals and failures; a request it forwards is
// recorded by the gateway. Every record has eventSource "vpce.amazonaws.com", eventType
// "AwsVpceEvent", eventCategory "NetworkActivity" (the shape of CloudTrail's VPC endpoint
// network activity events) and vpcEndpointId set:
//
//	eventName  errorCode                  when
//	Connect    SecurityGroupDenied        no ingress rule admits the source address and port
//	Connect    PlaintextRefused           the first byte is not a TLS handshake record
//	Connect    TLSHandshakeFailed         no ClientHello in time, TLS < 1.2, no shared cipher...
//	Connect    ConnectionLimitExceeded    too many handshakes in progress, or the listener or the
//	                                      source address holds its maximum of open connections
//	                                      (endpoints[].limits)
//	Connect    GatewayUnreachable         (Handoff) the connection could not be handed to the gateway
//	Invoke     VpceAccessDenied           the request names no API, or one the endpoint does not list (403)
//	Invoke     MisdirectedRequest         the TLS server name binds another API, or names another endpoint (421)
//	Invoke     SecurityGroupDenied        a reload removed the rule a kept-alive connection came in by (403)
//	Invoke     BadRequest                 a CONNECT or asterisk-form request (400)
//	Invoke     GatewayUnreachable         no gateway replica answered (502)
//
// Connection refusals come from the network, where one scanner can open thousands of
// connections a second, so they are aggregated without being lost: the first refusal of a
// source address for an error code in a window (a minute) is recorded at once, in full;
// the rest of that window are counted and recorded as one summary event with the same
// eventName and errorCode and additionalEventData.summary = true, count, firstSeen and
// lastSeen. Past 4096 distinct sources in a window, new sources share one summary with an
// empty sourceIPAddress. The count of refusals in the events therefore always equals the
// number of refused connections. Request-level events are recorded one per request, before
// the response is written.
package endpoint

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/phantom-perimeter/phantom/internal/admission"
	"github.com/phantom-perimeter/phantom/internal/audit"
	"github.com/phantom-perimeter/phantom/internal/config"
	"github.com/phantom-perimeter/phantom/internal/handoff"
	"github.com/phantom-perimeter/phantom/internal/pki"
)

// Auditor records one audit event. An error fails the request closed: a request the
// endpoint refuses is still refused, and it is logged.
type Auditor interface {
	Record(ctx context.Context, ev *audit.Event) error
}

// Metrics observes the endpoint (internal/metrics). Labels must stay bounded: reason is
// an audit errorCode of the package comment's table, api one of the spec's API ids,
// gateway one of Config.Gateways.
type Metrics interface {
	// Connection is called once per connection: reason "" when its TLS handshake
	// finished, else the refusal's errorCode.
	Connection(reason string)
	// Request is called once per request: reason "" when the gateway answered it, else
	// the errorCode the endpoint refused it with. api is "" when it named none listed.
	Request(api, reason string)
	// Forward is called once per request handed to the gateway, answered or not.
	Forward(api string, d time.Duration)
	// Replica is called after each connection attempt to a gateway replica.
	Replica(gateway string, err error)
}

// Handover is what the endpoint knows of a request it hands to a gateway in its own
// process (Config.Local): everything it would otherwise send as X-Phantom-* headers on
// its mTLS connection, and its own identity, which the certificate of that connection
// would carry.
type Handover struct {
	Endpoint    string     // this endpoint's id, vpce-…
	SourceIP    netip.Addr // the caller's address
	APIID       string     // the API selected for the request
	TLSVersion  uint16     // the caller's TLS connection
	CipherSuite uint16
}

// Config configures an endpoint. Every field but Logger, Now and Metrics is required,
// except that an endpoint with a Local gateway has no Gateways, ClientCert or Verifier.
type Config struct {
	// ID is the endpoint's id in the spec, vpce-….
	ID string
	// Spec returns the current spec; the watcher swaps immutable snapshots on reload. The
	// endpoint reads its rules per connection and its APIs per request.
	Spec func() *config.Spec
	// ServerCert returns the certificate shown to callers.
	ServerCert func(*tls.ClientHelloInfo) (*tls.Certificate, error)
	// ClientCert returns the certificate presented to the gateway: identity
	// spiffe://phantom/<account>/endpoint/<ID>, client usage, from the perimeter CA.
	ClientCert func(*tls.CertificateRequestInfo) (*tls.Certificate, error)
	// Verifier verifies the gateway's certificate, which must name a gateway (and the
	// spec's gateway name, when the spec has one).
	Verifier *pki.Verifier
	// Gateways are the host:port addresses of the gateway replicas. New connections go to
	// them in turn; one that cannot be reached is skipped.
	Gateways []string
	// Local, when set, is a gateway in this process: each request the endpoint admits is
	// handed to it in memory with the endpoint's identity as a typed Handover, instead of
	// crossing an mTLS hop. Gateways, ClientCert and Verifier are then not used and must
	// be left unset.
	Local func(w http.ResponseWriter, r *http.Request, h Handover)
	// Handoff, when set, makes the endpoint a network boundary only: each connection its
	// security group admits and whose first byte is a TLS handshake record is passed, its
	// TLS bytes untouched, to the gateway process that terminates it (internal/handoff:
	// the descriptor over a Unix socket, or a tunnel over mutual TLS), with the caller's
	// address and port in a preamble. Handoff owns c from the call on and closes it; an
	// error means the gateway never got it. The gateway runs this endpoint's per-request
	// checks in its own process (an Endpoint with Local, serving a handoff.Listener).
	// ServerCert, Gateways, ClientCert, Verifier and Local are then not used and must be
	// left unset.
	Handoff func(c net.Conn, p handoff.Preamble) error
	// Auditor records refusals and failures.
	Auditor Auditor
	// Logger receives operational logs; nil means slog.Default().
	Logger *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Metrics, when set, observes connections, requests and gateway replicas.
	Metrics Metrics
}

// Limits and timeouts. Variables of an Endpoint rather than constants so tests can shorten
// them; they are not configuration.
type limits struct {
	handshakeTimeout  time.Duration // accept to finished TLS handshake
	maxHandshakes     int           // handshakes in progress at once
	refusalWindow     time.Duration // aggregation window of connection refusals
	maxRefusalSources int           // distinct sources tracked per window
	downFor           time.Duration // how long a gateway that failed to connect is skipped
	dialTimeout       time.Duration
}

var defaultLimits = limits{
	handshakeTimeout:  10 * time.Second,
	maxHandshakes:     4096,
	refusalWindow:     time.Minute,
	maxRefusalSources: 4096,
	downFor:           2 * time.Second,
	dialTimeout:       5 * time.Second,
}

const (
	// maxHeaderBytes bounds request headers. API Gateway allows 10 KiB of headers; SigV4
	// presigned URLs and session tokens fit easily in 64 KiB.
	maxHeaderBytes = 64 << 10
	// readHeaderTimeout bounds a slow-loris request line and headers.
	readHeaderTimeout = 10 * time.Second
	// idleTimeout closes kept-alive caller connections nobody uses.
	idleTimeout = 2 * time.Minute
	// responseHeaderTimeout is the longest backend timeout the spec allows (5m) plus the
	// gateway's own work; the gateway answers 504 itself before this.
	responseHeaderTimeout = 5*time.Minute + 30*time.Second
)

// Endpoint is a running VPC-endpoint analogue. It serves any number of listeners.
type Endpoint struct {
	cfg    Config
	id     string
	log    *slog.Logger
	now    func() time.Time
	lim    limits
	tlsCfg *tls.Config
	srv    *http.Server
	proxy  *httputil.ReverseProxy // nil with a Local gateway
	gw     *gateways              // nil with a Local gateway
	ref    *admission.Recorder

	slots chan struct{} // handshake slots

	mu        sync.Mutex
	listeners map[*connListener]struct{}
	closing   atomic.Bool
	loops     sync.WaitGroup // accept loops; Add only under mu before closing
	inflight  sync.WaitGroup // handshakes; Add only on an accept loop

	baseCtx    context.Context
	cancelBase context.CancelFunc
}

// New validates cfg and builds an endpoint. Nothing listens until Serve.
func New(cfg Config) (*Endpoint, error) {
	return newEndpoint(cfg, defaultLimits)
}

func newEndpoint(cfg Config, lim limits) (*Endpoint, error) {
	var problems []string
	if !config.IsVPCEID(cfg.ID) {
		problems = append(problems, fmt.Sprintf("id %q is not an endpoint id like vpce-0123456789abcdef0", cfg.ID))
	}
	if cfg.Spec == nil {
		problems = append(problems, "no Spec")
	} else if s := cfg.Spec(); s == nil {
		problems = append(problems, "Spec returned no spec")
	} else if _, ok := s.Endpoint(cfg.ID); !ok && config.IsVPCEID(cfg.ID) {
		problems = append(problems, fmt.Sprintf("the spec has no endpoint %s", cfg.ID))
	}
	if cfg.ServerCert == nil && cfg.Handoff == nil {
		problems = append(problems, "no ServerCert")
	}
	switch {
	case cfg.Handoff != nil:
		if cfg.Local != nil || len(cfg.Gateways) > 0 || cfg.ClientCert != nil || cfg.Verifier != nil || cfg.ServerCert != nil {
			problems = append(problems, "an endpoint that hands connections off takes no ServerCert, Gateways, ClientCert, Verifier or Local: the gateway terminates TLS")
		}
	case cfg.Local != nil:
		if len(cfg.Gateways) > 0 || cfg.ClientCert != nil || cfg.Verifier != nil {
			problems = append(problems, "a Local gateway takes no Gateways, ClientCert or Verifier: requests never leave the process")
		}
	default:
		if cfg.ClientCert == nil {
			problems = append(problems, "no ClientCert for the mTLS connection to the gateway")
		}
		if cfg.Verifier == nil {
			problems = append(problems, "no Verifier for the gateway's certificate")
		}
		if len(cfg.Gateways) == 0 {
			problems = append(problems, "no Gateways")
		}
	}
	for _, g := range cfg.Gateways {
		if h, p, err := net.SplitHostPort(g); err != nil || h == "" || p == "" {
			problems = append(problems, fmt.Sprintf("gateway %q is not host:port", g))
		}
	}
	if cfg.Auditor == nil {
		problems = append(problems, "no Auditor")
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("endpoint %s: %s", cfg.ID, strings.Join(problems, "; "))
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	e := &Endpoint{
		cfg:       cfg,
		id:        cfg.ID,
		log:       cfg.Logger.With("vpce_id", cfg.ID),
		now:       cfg.Now,
		lim:       lim,
		slots:     make(chan struct{}, lim.maxHandshakes),
		listeners: map[*connListener]struct{}{},
	}
	e.baseCtx, e.cancelBase = context.WithCancel(context.Background())
	e.tlsCfg = &tls.Config{
		// A plaintext or TLS 1.0/1.1 listener is not an option (DESIGN: encryption on
		// every channel); Go's defaults for 1.2 offer only ECDHE AEAD suites.
		MinVersion:     tls.VersionTLS12,
		GetCertificate: cfg.ServerCert,
		NextProtos:     []string{"h2", "http/1.1"},
		Time:           cfg.Now,
	}
	if cfg.Local == nil && cfg.Handoff == nil {
		e.gw = newGateways(cfg, e.log, lim, e.verifyGateway)
		e.proxy = e.newProxy()
	}
	e.ref = admission.NewRecorder(admission.RecorderConfig{
		Auditor: cfg.Auditor,
		Event: func(code string, src netip.Addr, id string) *audit.Event {
			return e.newEvent(eventConnect, code, src, id)
		},
		Observe: func(code string) {
			if m := cfg.Metrics; m != nil {
				m.Connection(code)
			}
		},
		Window:     lim.refusalWindow,
		MaxSources: lim.maxRefusalSources,
		Logger:     e.log,
		Now:        cfg.Now,
	})
	e.srv = &http.Server{
		Handler:           e,
		ReadHeaderTimeout: readHeaderTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		// No ReadTimeout or WriteTimeout: bodies stream both ways and a backend may take
		// up to five minutes; the gateway bounds the exchange.
		ConnContext: connContext,
		BaseContext: func(net.Listener) context.Context { return e.baseCtx },
		ErrorLog:    slog.NewLogLogger(e.log.Handler(), slog.LevelDebug),
	}
	return e, nil
}

// Serve accepts connections on ln, a plain TCP listener, and serves them until Shutdown
// or until ctx is done; then it stops accepting on ln and returns nil (connections in
// progress are Shutdown's to drain). It takes ownership of ln. Serve may be called for
// several listeners at once.
func (e *Endpoint) Serve(ctx context.Context, ln net.Listener) error {
	cl := newConnListener(ln)
	e.mu.Lock()
	if e.closing.Load() {
		e.mu.Unlock()
		ln.Close()
		return nil
	}
	e.listeners[cl] = struct{}{}
	e.loops.Add(1)
	e.ref.Start()
	e.mu.Unlock()
	defer func() {
		e.mu.Lock()
		delete(e.listeners, cl)
		e.mu.Unlock()
	}()
	stop := context.AfterFunc(ctx, func() { cl.Close() })
	defer stop()
	go func() {
		defer e.loops.Done()
		e.acceptLoop(ln, cl)
	}()
	err := e.srv.Serve(cl)
	cl.Close()
	if errors.Is(err, http.ErrServerClosed) || errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}

// Shutdown stops accepting, finishes the handshakes and requests in progress and records
// the pending refusal summaries. If ctx ends first, the remaining connections are closed
// and ctx's error is returned.
func (e *Endpoint) Shutdown(ctx context.Context) error {
	e.mu.Lock()
	e.closing.Store(true)
	for cl := range e.listeners {
		cl.Close()
	}
	e.mu.Unlock()
	err := e.srv.Shutdown(ctx)
	if err != nil {
		e.cancelBase()
		e.srv.Close()
	}
	// The accept loops end first (their listeners are closed), so no handshake can start
	// once the wait for handshakes begins.
	done := make(chan struct{})
	go func() { e.loops.Wait(); e.inflight.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		if err == nil {
			err = ctx.Err()
		}
	}
	e.cancelBase()
	e.ref.Stop(ctx)
	if e.gw != nil {
		e.gw.transport.CloseIdleConnections()
	}
	return err
}

// verifyGateway is the gateway connection's VerifyConnection (VerifyGateway).
func (e *Endpoint) verifyGateway(cs tls.ConnectionState) error {
	return VerifyGateway(e.cfg.Verifier, e.cfg.Spec)(cs)
}

// VerifyGateway returns the check of a gateway's certificate on a connection an endpoint
// opens: the chain must verify to the perimeter CA for server auth and name a gateway of
// this perimeter (the spec's gateway name, when it has one). As a VerifyConnection it runs
// on resumed sessions too, and an empty chain fails, so the check cannot be skipped.
func VerifyGateway(v *pki.Verifier, spec func() *config.Spec) func(tls.ConnectionState) error {
	return func(cs tls.ConnectionState) error {
		id, err := v.Verify(cs.PeerCertificates, x509.ExtKeyUsageServerAuth)
		if err != nil {
			return fmt.Errorf("gateway certificate: %w", err)
		}
		if id.Kind != pki.KindGateway {
			return fmt.Errorf("gateway certificate names %s, not a gateway", id)
		}
		if s := spec(); s != nil && s.Gateway.Name != "" && id.Name != s.Gateway.Name {
			return fmt.Errorf("gateway certificate names %s, not the spec's gateway %q", id, s.Gateway.Name)
		}
		return nil
	}
}
