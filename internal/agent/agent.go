// Package agent is the workload credential agent: it runs on a workload's host, enrolls
// the host as a node of the perimeter with a single-use join token, proves the node's
// identity to STS with its perimeter-CA certificate (renewed before it expires), and
// obtains credentials for the role the spec assigns to the node. It serves them on
// loopback to unmodified AWS SDKs through both protocols they speak: IMDSv2
// (PUT /latest/api/token, GET /latest/meta-data/iam/security-credentials/ROLE) and the
// container credentials provider (AWS_CONTAINER_CREDENTIALS_FULL_URI with
// AWS_CONTAINER_AUTHORIZATION_TOKEN). Credentials are refreshed well before they expire;
// while STS is unreachable the agent keeps serving the current ones until they expire,
// never after.
//
// It does not own the node API it talks to (internal/sts), the CA (internal/pki) or the
// egress proxy (internal/egress); it only hands workloads the proxy URL with the node's
// proxy credentials.
package agent

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/phantom-perimeter/phantom/internal/arn"
)

// Defaults.
const (
	// DefaultRequestTimeout bounds one call to STS.
	DefaultRequestTimeout = 10 * time.Second
	// minRetry and maxRetry bound the backoff after a failed refresh.
	minRetry = 250 * time.Millisecond
	maxRetry = 30 * time.Second
	// maxRetryUnserved bounds the backoff once the agent has no credentials to serve.
	maxRetryUnserved = 5 * time.Second
	// earlyRefresh: a credential is refreshed at 2/3 of its lifetime or this long before
	// it expires, whichever comes first.
	earlyRefresh = 5 * time.Minute
	// maxServeMargin: credentials are not handed out in the last tenth of their lifetime,
	// at most this long: an SDK given them would have no time to use them.
	maxServeMargin = time.Minute
)

// Metrics observes the agent's credential requests to STS (internal/metrics).
type Metrics interface {
	// Refresh is called after each credentials call to STS; err is nil when it brought
	// usable credentials.
	Refresh(err error, d time.Duration)
}

// Config configures an Agent. STS, CABundle and, on a first run, JoinToken are required.
type Config struct {
	// STS is the STS base URL, https://HOST:PORT.
	STS string
	// CABundle is the perimeter CA certificate (PEM): the agent trusts STS only under it.
	CABundle []byte
	// StateDir keeps the node's key (0600) and certificate between runs (node.key,
	// node.crt, ca.crt, as `phantom node enroll --out` writes them). Empty: the node's
	// key lives in memory only and every start enrolls anew.
	StateDir string
	// JoinToken enrolls the node when StateDir holds no certificate. It is never logged
	// or written anywhere.
	JoinToken string
	// SessionDuration is the credentials' lifetime the agent asks for; zero lets STS
	// choose (one hour, capped by the role). STS caps it at the role's maxSessionDuration.
	SessionDuration time.Duration
	// EgressProxy is the egress proxy's HOST:PORT; when set, IMDS serves the proxy URL
	// with the node's credentials at /latest/meta-data/phantom/egress-proxy.
	EgressProxy string
	// EgressTLS is the HOST:PORT of the egress proxy's TLS listener: ServeEgress relays
	// workloads' proxy connections there, authenticated by the node's certificate (the
	// way for nodes on other hosts than the proxy); IMDS then serves the relay's URL.
	EgressTLS string
	// RequestTimeout bounds one call to STS; zero means DefaultRequestTimeout.
	RequestTimeout time.Duration
	Logger         *slog.Logger     // nil: slog.Default()
	Now            func() time.Time // nil: time.Now
	// Rand is the entropy source for keys and tokens; nil means crypto/rand.
	Rand io.Reader
	// Metrics, when set, observes every credentials call.
	Metrics Metrics
	// NoWatch turns the revocation watch off: credentials are then refreshed on schedule
	// only (an STS without the watch call).
	NoWatch bool
}

// Credentials are role credentials as the agent serves them. SecretAccessKey and Token are
// secrets: they go to the workload and nowhere else (never to logs).
type Credentials struct {
	AccessKeyID     string
	SecretAccessKey string
	Token           string
	Expiration      time.Time
	LastUpdated     time.Time
	RoleArn         string
	AccountID       string
}

// session is what one successful credentials call brought.
type session struct {
	creds     Credentials
	proxyPass string
	region    string // the perimeter's region, for IMDS placement
	obtained  time.Time
	refreshAt time.Time
	serveTill time.Time // Expiration minus the serving margin
	// stopped reports that STS said these credentials no longer work (the node was
	// removed): they are not served any more.
	stopped bool
}

// Agent obtains and serves a node's credentials. It is safe for concurrent use.
type Agent struct {
	cfg    Config
	log    *slog.Logger
	now    func() time.Time
	rand   io.Reader
	client *stsClient
	state  *stateDir

	node      atomic.Pointer[nodeIdentity]
	sess      atomic.Pointer[session]
	relayAddr atomic.Value // string: ServeEgress's listener, "" before
	imdsKey   []byte       // MACs IMDS session tokens
	container string       // the container endpoint's authorization token

	startOnce sync.Once
	started   atomic.Bool
	cancel    context.CancelFunc
	done      chan struct{}

	// kick asks the refresh loop for new credentials now (the watch heard they stopped
	// working); sessChanged is closed and replaced whenever a new session is stored.
	kick        chan struct{}
	sessChanged atomic.Pointer[chan struct{}]
	watchMu     sync.Mutex
	watchCancel context.CancelFunc // ends the current watch stream; nil when none
	watchDone   chan struct{}
}

// nodeIdentity is the node's current certificate and key.
type nodeIdentity struct {
	name     string
	roleName string // from the last credentials (RoleArn), "" before them
	cert     *tls.Certificate
	leaf     *x509.Certificate
	renewAt  time.Time
}

// New validates cfg and loads the node's state. It does not contact STS: Start does.
func New(cfg Config) (*Agent, error) {
	var problems []error
	u, err := url.Parse(cfg.STS)
	if err != nil || u.Scheme != "https" || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.User != nil {
		problems = append(problems, fmt.Errorf("sts URL %q is not https://HOST:PORT", cfg.STS))
	}
	roots := x509.NewCertPool()
	if len(cfg.CABundle) == 0 || !roots.AppendCertsFromPEM(cfg.CABundle) {
		problems = append(problems, errors.New("the CA bundle holds no PEM certificate"))
	}
	if cfg.SessionDuration < 0 || cfg.SessionDuration > 12*time.Hour || (cfg.SessionDuration > 0 && cfg.SessionDuration < 15*time.Second) {
		problems = append(problems, fmt.Errorf("session duration %s is outside 15s to 12h", cfg.SessionDuration))
	}
	if cfg.RequestTimeout < 0 {
		problems = append(problems, fmt.Errorf("request timeout %s is negative", cfg.RequestTimeout))
	}
	if cfg.EgressTLS != "" {
		if h, p, err := net.SplitHostPort(cfg.EgressTLS); err != nil || h == "" || p == "" {
			problems = append(problems, fmt.Errorf("egress TLS proxy %q is not HOST:PORT", cfg.EgressTLS))
		}
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("new agent: %w", errors.Join(problems...))
	}
	if cfg.RequestTimeout == 0 {
		cfg.RequestTimeout = DefaultRequestTimeout
	}
	a := &Agent{cfg: cfg, log: cfg.Logger, now: cfg.Now, rand: cfg.Rand, done: make(chan struct{}), kick: make(chan struct{}, 1), watchDone: make(chan struct{})}
	ch := make(chan struct{})
	a.sessChanged.Store(&ch)
	if a.log == nil {
		a.log = slog.Default()
	}
	a.log = a.log.With("component", "agent")
	if a.now == nil {
		a.now = time.Now
	}
	if a.rand == nil {
		a.rand = rand.Reader
	}
	a.imdsKey = make([]byte, 32)
	tok := make([]byte, 32)
	if _, err := io.ReadFull(a.rand, a.imdsKey); err != nil {
		return nil, fmt.Errorf("new agent: read random: %w", err)
	}
	if _, err := io.ReadFull(a.rand, tok); err != nil {
		return nil, fmt.Errorf("new agent: read random: %w", err)
	}
	a.container = "phct_" + b64(tok)
	a.client = newSTSClient(strings.TrimSuffix(cfg.STS, "/"), roots, cfg.RequestTimeout, a.clientCert)
	if cfg.StateDir != "" {
		a.state = &stateDir{dir: cfg.StateDir}
		id, err := a.state.load(a.now())
		if err != nil {
			return nil, fmt.Errorf("new agent: %w", err)
		}
		if id != nil {
			a.setNode(id)
		}
	}
	if a.node.Load() == nil && cfg.JoinToken == "" {
		return nil, errors.New("new agent: the node is not enrolled and no join token was given")
	}
	return a, nil
}

// Start enrolls the node when it has no certificate yet, obtains the first credentials,
// and starts refreshing them (and renewing the node certificate) in the background until
// ctx ends or Close is called. It returns the first failure, in which case nothing runs.
func (a *Agent) Start(ctx context.Context) error {
	if !a.started.CompareAndSwap(false, true) {
		return errors.New("agent already started")
	}
	if a.node.Load() == nil {
		if err := a.enroll(ctx); err != nil {
			return err
		}
	}
	if err := a.maybeRenew(ctx); err != nil {
		return err
	}
	if err := a.refresh(ctx); err != nil {
		var e *Error
		if !errors.As(err, &e) || e.Code != codeNodeRefused || a.cfg.JoinToken == "" {
			return err
		}
		// The saved certificate is refused (the node was removed, or its certificate
		// superseded elsewhere) and a join token was given: enroll anew with it.
		a.log.Warn("the saved node certificate is refused; enrolling again with the join token", "node", a.Node(), "error", err)
		if err := a.enroll(ctx); err != nil {
			return err
		}
		if err := a.refresh(ctx); err != nil {
			return err
		}
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	a.cancel = cancel
	stop := context.AfterFunc(ctx, cancel)
	go func() {
		defer close(a.done)
		defer stop()
		a.run(runCtx)
	}()
	if a.cfg.NoWatch {
		close(a.watchDone)
	} else {
		go func() {
			defer close(a.watchDone)
			a.watch(runCtx)
		}()
	}
	return nil
}

// Close stops the background refresh and the watch, and waits for them.
func (a *Agent) Close() error {
	if a.cancel != nil {
		a.cancel()
		<-a.done
		<-a.watchDone
	}
	a.client.close()
	return nil
}

// Node returns the node's name ("" before enrollment).
func (a *Agent) Node() string {
	if n := a.node.Load(); n != nil {
		return n.name
	}
	return ""
}

// Role returns the name of the role the node's credentials are for ("" before the first
// credentials).
func (a *Agent) Role() string {
	if s := a.sess.Load(); s != nil {
		return arn.RoleName(s.creds.RoleArn)
	}
	return ""
}

// Credentials returns the credentials the agent serves now, and false when it has none it
// may hand out (none yet, or the last ones are about to expire and STS has not answered).
func (a *Agent) Credentials() (Credentials, bool) {
	s := a.current()
	if s == nil {
		return Credentials{}, false
	}
	return s.creds, true
}

// ContainerToken is the authorization token the container credentials endpoint requires
// (AWS_CONTAINER_AUTHORIZATION_TOKEN). It is a secret.
func (a *Agent) ContainerToken() string { return a.container }

// ProxyURL returns the egress proxy URL for HTTPS_PROXY/HTTP_PROXY: the agent's relay to
// the proxy's TLS listener, http://RELAY, when it serves one (ServeEgress); else the
// proxy at proxyAddr with the node's proxy credentials, http://NODE:PASSWORD@proxyAddr,
// a secret; "" before the first credentials.
func (a *Agent) ProxyURL(proxyAddr string) string {
	if r, _ := a.relayAddr.Load().(string); r != "" {
		return "http://" + r
	}
	s := a.sess.Load()
	n := a.node.Load()
	if s == nil || n == nil || s.proxyPass == "" || proxyAddr == "" {
		return ""
	}
	return (&url.URL{Scheme: "http", User: url.UserPassword(n.name, s.proxyPass), Host: proxyAddr}).String()
}

// current returns the session that may be served now, or nil.
func (a *Agent) current() *session {
	s := a.sess.Load()
	if s == nil || s.stopped || !a.now().Before(s.serveTill) {
		return nil
	}
	return s
}

// setSession makes s current, wakes whoever waits for a new session and ends the watch
// stream of the previous one (the watch reopens for s).
func (a *Agent) setSession(s *session) {
	a.sess.Store(s)
	ch := make(chan struct{})
	close(*a.sessChanged.Swap(&ch))
	a.restartWatch()
}

func (a *Agent) clientCert(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	if n := a.node.Load(); n != nil {
		return n.cert, nil
	}
	return &tls.Certificate{}, nil // no certificate: only enrollment works
}

// setNode makes id current; it is renewed at 2/3 of the life it has left from now (the CA
// backdates NotBefore for clock skew, so the nominal lifetime would renew too early).
func (a *Agent) setNode(id *nodeIdentity) {
	base := a.now()
	if id.leaf.NotBefore.After(base) {
		base = id.leaf.NotBefore
	}
	id.renewAt = base.Add(id.leaf.NotAfter.Sub(base) * 2 / 3)
	if old := a.node.Load(); old != nil && id.roleName == "" {
		id.roleName = old.roleName
	}
	a.node.Store(id)
}

// run refreshes credentials and renews the certificate on schedule, retrying failures
// with capped exponential backoff.
func (a *Agent) run(ctx context.Context) {
	backoff := time.Duration(0)
	for {
		wait := a.nextWork().Sub(a.now())
		if backoff > 0 {
			wait = backoff
		}
		t := time.NewTimer(max(wait, 0))
		forced := false
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		case <-a.kick:
			t.Stop()
			forced = true
		}
		err := a.maybeRenew(ctx)
		if err == nil && (forced || !a.now().Before(a.sess.Load().refreshAt)) {
			err = a.refresh(ctx)
		}
		if err == nil {
			backoff = 0
			continue
		}
		if ctx.Err() != nil {
			return
		}
		backoff = a.nextBackoff(backoff)
		s := a.sess.Load()
		if nodeRefused(err) {
			// Not an outage to ride out: the perimeter no longer admits this node.
			if !s.stopped {
				a.log.Error("STS refuses this node's certificate; no longer serving its credentials", "node", a.Node(), "error", err, "retry_in", backoff.String())
				a.stopServing(s)
			}
			continue
		}
		a.log.Warn("refresh failed; serving the current credentials until they expire",
			"node", a.Node(), "error", err, "retry_in", backoff.String(), "credentials_valid_until", s.serveTill.UTC().Format(time.RFC3339))
	}
}

// nextBackoff doubles the delay within [minRetry, maxRetry]. While credentials are still
// valid it stays within a quarter of the time they have left, so several retries fit in;
// once there are none to serve, within maxRetryUnserved, since workloads are failing.
func (a *Agent) nextBackoff(prev time.Duration) time.Duration {
	d := max(prev*2, minRetry)
	limit := maxRetry
	if s := a.current(); s == nil {
		limit = maxRetryUnserved
	} else if left := s.serveTill.Sub(a.now()) / 4; left < limit {
		limit = max(left, minRetry)
	}
	d = min(d, limit)
	// Jitter in the upper half, so a fleet of agents does not retry in step.
	return d/2 + randDuration(a.rand, d/2)
}

func (a *Agent) nextWork() time.Time {
	next := a.sess.Load().refreshAt
	if n := a.node.Load(); n != nil && n.renewAt.Before(next) {
		next = n.renewAt
	}
	return next
}

// refresh obtains new credentials from STS.
func (a *Agent) refresh(ctx context.Context) error {
	if m := a.cfg.Metrics; m != nil {
		start := time.Now()
		err := a.obtain(ctx)
		m.Refresh(err, time.Since(start))
		return err
	}
	return a.obtain(ctx)
}

// Expiration is when the credentials the agent serves now expire; zero when it has none
// it may hand out.
func (a *Agent) Expiration() time.Time {
	if s := a.current(); s != nil {
		return s.creds.Expiration
	}
	return time.Time{}
}

func (a *Agent) obtain(ctx context.Context) error {
	start := a.now()
	resp, err := a.client.credentials(ctx, a.cfg.SessionDuration)
	if err != nil {
		return err
	}
	exp, err := time.Parse(time.RFC3339, resp.Expiration)
	if err != nil {
		return fmt.Errorf("sts credentials: expiration %q: %w", truncate(resp.Expiration, 40), err)
	}
	now := a.now()
	if resp.AccessKeyID == "" || resp.SecretAccessKey == "" || resp.Token == "" || !exp.After(now) {
		return errors.New("sts credentials: incomplete or already expired credentials in the response")
	}
	life := exp.Sub(start)
	refreshIn := life * 2 / 3
	if early := life - earlyRefresh; early > 0 && early < refreshIn {
		refreshIn = early
	}
	// Up to 5% earlier, so agents started together do not all refresh together.
	refreshIn -= randDuration(a.rand, life/20)
	margin := min(life/10, maxServeMargin)
	s := &session{
		creds: Credentials{
			AccessKeyID: resp.AccessKeyID, SecretAccessKey: resp.SecretAccessKey, Token: resp.Token,
			Expiration: exp.UTC(), LastUpdated: now.UTC(), RoleArn: resp.RoleArn, AccountID: resp.AccountID,
		},
		proxyPass: resp.ProxyPassword,
		region:    resp.Region,
		obtained:  now,
		refreshAt: start.Add(refreshIn),
		serveTill: exp.Add(-margin),
	}
	a.setSession(s)
	a.log.Info("credentials refreshed", "node", a.Node(), "role_arn", resp.RoleArn, "access_key_id", resp.AccessKeyID,
		"expiration", s.creds.Expiration.Format(time.RFC3339), "next_refresh", s.refreshAt.UTC().Format(time.RFC3339), "latency_ms", now.Sub(start).Milliseconds())
	return nil
}

func randDuration(r io.Reader, n time.Duration) time.Duration {
	if n <= 0 {
		return 0
	}
	v, err := rand.Int(r, big.NewInt(int64(n)))
	if err != nil {
		return 0
	}
	return time.Duration(v.Int64())
}

func truncate(s string, n int) string {
	if len(s) > n {
		s = s[:n]
	}
	return strings.ToValidUTF8(s, "?")
}
