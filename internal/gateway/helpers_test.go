package gateway

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"

	"github.com/phantom-perimeter/phantom/internal/audit"
	"github.com/phantom-perimeter/phantom/internal/authzmsg"
	"github.com/phantom-perimeter/phantom/internal/config"
	"github.com/phantom-perimeter/phantom/internal/identity"
	"github.com/phantom-perimeter/phantom/internal/keys"
	"github.com/phantom-perimeter/phantom/internal/pki"
	"github.com/phantom-perimeter/phantom/internal/store"
)

const (
	testAccount  = "123456789012"
	testAPI      = "a1b2c3d4e5"
	otherAPI     = "b2c3d4e5f6"
	testEndpoint = "vpce-0123456789abcdef0"
	testVPC      = "vpc-0a1b2c3d4e5f60718"
)

// clock is a settable clock shared by the store, the identity service and the gateway.
type clock struct{ ns atomic.Int64 }

func newClock(t time.Time) *clock        { c := new(clock); c.ns.Store(t.UnixNano()); return c }
func (c *clock) Now() time.Time          { return time.Unix(0, c.ns.Load()).UTC() }
func (c *clock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

// memAudit keeps events in memory; fail makes Record fail.
type memAudit struct {
	mu     sync.Mutex
	events []*audit.Event
	fail   atomic.Bool
}

func (a *memAudit) Record(_ context.Context, ev *audit.Event) error {
	if a.fail.Load() {
		return errors.New("audit log unavailable")
	}
	// A round trip through JSON proves the event marshals and snapshots it.
	b, err := json.Marshal(ev)
	if err != nil {
		return err
	}
	var cp audit.Event
	if err := json.Unmarshal(b, &cp); err != nil {
		return err
	}
	a.mu.Lock()
	a.events = append(a.events, &cp)
	a.mu.Unlock()
	return nil
}

func (a *memAudit) take() []*audit.Event {
	a.mu.Lock()
	defer a.mu.Unlock()
	ev := a.events
	a.events = nil
	return ev
}

// backendHit is what the test backend saw of one request.
type backendHit struct {
	Method, Path, RawPath, Query string
	Header                       http.Header
	Body                         string
	Proto                        string // HTTP/1.1, HTTP/2.0
}

// env is a perimeter in a test: a real identity service over SQLite, a CA, the gateway
// behind a TLS server (the endpoint's view and direct callers share it), and a backend.
type env struct {
	t       testing.TB
	clock   *clock
	spec    atomic.Pointer[config.Spec]
	svc     *identity.Service
	ca      *pki.CA
	gw      *Gateway
	cfg     Config // gw's, for another replica
	audit   *memAudit
	msgs    *authzmsg.Sealer
	server  *httptest.Server // the gateway, TLS with tls.RequestClientCert
	plain   *httptest.Server // the gateway, plain HTTP (direct, no TLS)
	backend *httptest.Server
	hits    chan backendHit
	keys    map[string]aws.Credentials // user -> long-term key
	bundle  *x509.CertPool
	yaml    []byte // the spec file with the backend's address
	risk    *fakeRisk
}

// fakeRisk reports risk levels by principal ARN.
type fakeRisk struct{ m sync.Map }

func (f *fakeRisk) RiskLevel(arn string) string {
	v, _ := f.m.Load(arn)
	s, _ := v.(string)
	return s
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func newEnv(t testing.TB, opts ...func(*Config)) *env {
	t.Helper()
	return newEnvFrom(t, "spec.yaml", nil, http.HandlerFunc(nil), opts...)
}

// newEnvFrom is newEnv over testdata/file, with each key of replace replaced by its value
// and, when backend is not nil, that handler as the backend.
func newEnvFrom(t testing.TB, file string, replace map[string]string, backend http.HandlerFunc, opts ...func(*Config)) *env {
	t.Helper()
	ctx := context.Background()
	e := &env{t: t, clock: newClock(time.Now().UTC().Truncate(time.Second)), audit: &memAudit{}, risk: &fakeRisk{}, hits: make(chan backendHit, 1024), keys: map[string]aws.Credentials{}}

	if backend == nil {
		backend = e.serveBackend
	}
	e.backend = httptest.NewServer(backend)
	t.Cleanup(e.backend.Close)

	data, err := os.ReadFile(filepath.Join("testdata", file))
	if err != nil {
		t.Fatal(err)
	}
	e.yaml = bytes.ReplaceAll(data, []byte("BACKEND_URL"), []byte(e.backend.URL))
	for k, v := range replace {
		e.yaml = bytes.ReplaceAll(e.yaml, []byte(k), []byte(v))
	}
	spec, err := config.Parse("testdata/"+file, e.yaml)
	if err != nil {
		t.Fatalf("parse spec: %v", err)
	}
	e.spec.Store(spec)

	mk := make([]byte, 32)
	rand.Read(mk)
	db, err := store.OpenSQLite(ctx, store.Config{DataDir: t.TempDir(), MasterKey: mk, Now: e.clock.Now})
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(func() { _ = db.Close() })
	e.svc, err = identity.New(identity.Config{Account: testAccount, Logger: quiet, Now: e.clock.Now},
		identity.Deps{AccessKeys: db, SealingKeys: db, Revocations: db, Changes: db})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.RotateSealingKey(ctx); err != nil {
		t.Fatal(err)
	}
	for _, u := range spec.Users {
		k, err := e.svc.CreateAccessKey(ctx, u.Name)
		if err != nil {
			t.Fatal(err)
		}
		e.keys[u.Name] = aws.Credentials{AccessKeyID: k.ID, SecretAccessKey: k.Secret}
	}

	e.ca, err = pki.New(pki.Config{Dir: t.TempDir(), Account: testAccount, Now: e.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	e.bundle = x509.NewCertPool()
	e.bundle.AddCert(e.ca.Certificate())

	ring, err := keys.ForComponent(mk, keys.Gateway)
	if err != nil {
		t.Fatal(err)
	}
	mkey, err := ring.Key(keys.AuthzMessages)
	if err != nil {
		t.Fatal(err)
	}
	if e.msgs, err = authzmsg.NewSealer(mkey, nil); err != nil {
		t.Fatal(err)
	}
	akey, err := ring.Ed25519(keys.Assertion)
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{
		Name:         "gateway",
		Spec:         e.spec.Load,
		Credentials:  e.svc,
		Verifier:     e.ca.Verifier(),
		Auditor:      e.audit,
		Messages:     e.msgs,
		AssertionKey: akey,
		Risk:         e.risk,
		Replay:       db,
		Logger:       quiet,
		Now:          e.clock.Now,
	}
	for _, o := range opts {
		o(&cfg)
	}
	e.cfg = cfg
	if e.gw, err = New(cfg); err != nil {
		t.Fatal(err)
	}

	gwCert, err := e.ca.Issue(pki.Request{
		Identity: pki.Identity{Account: testAccount, Kind: pki.KindGateway, Name: "gateway"},
		DNSNames: []string{"localhost"},
		IPs:      []netip.Addr{netip.MustParseAddr("127.0.0.1")},
		Server:   true,
	})
	if err != nil {
		t.Fatal(err)
	}
	e.server = httptest.NewUnstartedServer(e.gw)
	e.server.TLS = e.gw.TLSConfig(nil)
	e.server.TLS.Certificates = []tls.Certificate{*gwCert}
	e.server.EnableHTTP2 = true
	e.server.Config.ErrorLog = slog.NewLogLogger(quiet.Handler(), slog.LevelError)
	e.server.StartTLS()
	t.Cleanup(e.server.Close)
	e.plain = httptest.NewServer(e.gw)
	t.Cleanup(e.plain.Close)
	return e
}

func parseSpec(e *env) (*config.Spec, error) { return config.Parse("testdata/spec.yaml", e.yaml) }

func (e *env) serveBackend(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	if r.URL.Path == "/slow" {
		select {
		case <-time.After(2 * time.Second):
		case <-r.Context().Done():
		}
	}
	select {
	case e.hits <- backendHit{Method: r.Method, Path: r.URL.Path, RawPath: r.URL.RawPath, Query: r.URL.RawQuery, Header: r.Header.Clone(), Body: string(body), Proto: r.Proto}:
	default:
	}
	w.Header().Set("Content-Type", "text/plain")
	io.WriteString(w, "backend:"+r.Method+" "+r.URL.EscapedPath())
}

// client returns an HTTPS client of the gateway's TLS server, presenting cert when non-nil.
func (e *env) client(cert *tls.Certificate) *http.Client {
	cfg := &tls.Config{RootCAs: e.bundle, MinVersion: tls.VersionTLS12}
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	return &http.Client{Transport: &http.Transport{TLSClientConfig: cfg, ForceAttemptHTTP2: true}, Timeout: 10 * time.Second}
}

// endpointCert issues a client certificate for an endpoint identity from ca.
func endpointCert(t testing.TB, ca *pki.CA, kind pki.Kind, name string) *tls.Certificate {
	t.Helper()
	c, err := ca.Issue(pki.Request{Identity: pki.Identity{Account: testAccount, Kind: kind, Name: name}, Client: true})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// session mints a role session for role (by name) through the identity service.
func (e *env) session(role, name string, d time.Duration, tags ...identity.Tag) aws.Credentials {
	e.t.Helper()
	c, token, err := e.svc.NewSession(identity.Claims{
		Principal:   "arn:aws:sts::" + testAccount + ":assumed-role/" + role + "/" + name,
		Role:        "arn:aws:iam::" + testAccount + ":role/" + role,
		SessionName: name,
		Tags:        tags,
	}, d)
	if err != nil {
		e.t.Fatal(err)
	}
	return aws.Credentials{AccessKeyID: c.AccessKeyID, SecretAccessKey: c.SecretAccessKey, SessionToken: token}
}

// request builds a request to the gateway server base (e.server.URL or e.plain.URL).
func newRequest(t testing.TB, method, url string, body []byte) *http.Request {
	t.Helper()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	r, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// sign signs r with aws-sdk-go-v2's SigV4 signer for execute-api at the env's clock.
func (e *env) sign(r *http.Request, creds aws.Credentials, body []byte) {
	e.t.Helper()
	sum := sha256.Sum256(body)
	if err := v4.NewSigner().SignHTTP(context.Background(), creds, r, hex.EncodeToString(sum[:]), "execute-api", "us-east-1", e.clock.Now()); err != nil {
		e.t.Fatal(err)
	}
}

// do sends r and returns the status, body and headers.
func do(t testing.TB, c *http.Client, r *http.Request) (int, string, http.Header) {
	t.Helper()
	resp, err := c.Do(r)
	if err != nil {
		t.Fatalf("%s %s: %v", r.Method, r.URL, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

// oneEvent asserts exactly one audit event was recorded and returns it.
func (e *env) oneEvent(t testing.TB) *audit.Event {
	t.Helper()
	evs := e.audit.take()
	if len(evs) != 1 {
		t.Fatalf("want exactly one audit event, got %d", len(evs))
	}
	return evs[0]
}

// noHit asserts the backend was not called.
func (e *env) noHit(t testing.TB) {
	t.Helper()
	select {
	case h := <-e.hits:
		t.Fatalf("the backend was called: %s %s", h.Method, h.Path)
	default:
	}
}

func (e *env) hit(t testing.TB) backendHit {
	t.Helper()
	select {
	case h := <-e.hits:
		return h
	case <-time.After(5 * time.Second):
		t.Fatal("the backend was not called")
	}
	return backendHit{}
}

func decodeError(t testing.TB, body string) (msg, enc string) {
	t.Helper()
	var x struct {
		Message string `json:"message"`
		Encoded string `json:"encodedAuthorizationMessage"`
	}
	if err := json.Unmarshal([]byte(body), &x); err != nil {
		t.Fatalf("error body %q is not API Gateway JSON: %v", body, err)
	}
	return x.Message, x.Encoded
}

func hasPrefix(s, p string) bool { return strings.HasPrefix(s, p) }

// assertionKeys is what a backend of api verifies the env gateway's assertions with: the
// API's key (HS256), or the JWKS for an API with assertion: eddsa.
func (e *env) assertionKeys(t testing.TB, api string) verifyKeys {
	t.Helper()
	if a, ok := e.spec.Load().API(api); ok && a.Assertion == config.AssertionEdDSA {
		return verifyKeys{alg: algEdDSA, ed: keysOf(t, e.gw.JWKS())}
	}
	file, err := e.gw.BackendKey(api)
	if err != nil {
		t.Fatal(err)
	}
	k, err := keys.ParseBackendKey(file)
	if err != nil {
		t.Fatal(err)
	}
	return macKeys(k)
}

// backendVerifier is an AssertionVerifier of api as its backend would configure it.
func (e *env) backendVerifier(t testing.TB, api string) *AssertionVerifier {
	t.Helper()
	cfg := AssertionVerifierConfig{Audience: api, Now: e.clock.Now}
	if a, ok := e.spec.Load().API(api); ok && a.Assertion == config.AssertionEdDSA {
		cfg.JWKS = e.gw.JWKS()
	} else {
		file, err := e.gw.BackendKey(api)
		if err != nil {
			t.Fatal(err)
		}
		cfg.Key = file
	}
	v, err := NewAssertionVerifier(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return v
}
