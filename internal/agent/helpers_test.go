package agent

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/phantom-perimeter/phantom/internal/audit"
	"github.com/phantom-perimeter/phantom/internal/config"
	"github.com/phantom-perimeter/phantom/internal/egress"
	"github.com/phantom-perimeter/phantom/internal/identity"
	"github.com/phantom-perimeter/phantom/internal/keys"
	"github.com/phantom-perimeter/phantom/internal/pki"
	"github.com/phantom-perimeter/phantom/internal/store"
	"github.com/phantom-perimeter/phantom/internal/sts"
	"github.com/phantom-perimeter/phantom/internal/testenv"
)

const testAccount = "123456789012"

// perimeter is a real STS (query API and node API) over the real identity service, SQLite
// store and CA, on HTTPS that requests client certificates as `phantom sts` does. down
// makes it answer 503 to everything, as an STS being restarted would.
type perimeter struct {
	srv      *httptest.Server
	ca       *pki.CA
	tokens   *pki.Tokens
	bundle   []byte
	caFile   string
	egress   ed25519.PrivateKey
	down     atomic.Bool
	nodeHits atomic.Int64
	// holdWatch, set, holds each watch request until the channel closes.
	holdWatch atomic.Pointer[chan struct{}]
	audit     *memAudit
	ids       *identity.Service
}

type memAudit struct {
	mu     sync.Mutex
	events []*audit.Event
}

func (m *memAudit) Record(_ context.Context, ev *audit.Event) error {
	m.mu.Lock()
	m.events = append(m.events, ev)
	m.mu.Unlock()
	return nil
}

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func newPerimeter(t testing.TB) *perimeter { return newPerimeterCA(t, 0) }

// newPerimeterCA is newPerimeter whose CA issues certificates valid for certValidity
// (zero: the CA's default).
func newPerimeterCA(t testing.TB, certValidity time.Duration) *perimeter {
	t.Helper()
	ctx := context.Background()
	spec, err := config.Load(filepath.Join("testdata", "spec.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	mk := make([]byte, 32)
	if _, err := rand.Read(mk); err != nil {
		t.Fatal(err)
	}
	db, err := store.OpenSQLite(ctx, store.Config{DataDir: t.TempDir(), MasterKey: mk})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	svc, err := identity.New(identity.Config{Account: testAccount, Logger: quietLog()}, identity.Deps{AccessKeys: db, SealingKeys: db, Revocations: db, Nodes: db, Changes: db})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.RotateSealingKey(ctx); err != nil {
		t.Fatal(err)
	}
	ca, err := pki.New(pki.Config{Dir: t.TempDir(), Account: testAccount, Validity: certValidity})
	if err != nil {
		t.Fatal(err)
	}
	ek, err := keys.DeriveEd25519(mk, keys.EgressPasswords)
	if err != nil {
		t.Fatal(err)
	}
	p := &perimeter{ca: ca, tokens: pki.NewTokens(pki.TokensConfig{}, db), bundle: ca.BundlePEM(), egress: ek, audit: &memAudit{}, ids: svc}
	id := sts.NewIdentity(svc)
	h, err := sts.New(sts.Config{
		Account: testAccount, Region: "us-east-1", Directory: func() sts.Directory { return spec }, Logger: quietLog(),
		Nodes: &sts.NodeConfig{
			CA: ca, Tokens: p.tokens, Verifier: ca.Verifier(), Issuer: id, Registry: db, Sessions: id,
			ProxyPassword: egress.Passwords(ek),
		},
	}, id, id, p.audit)
	if err != nil {
		t.Fatal(err)
	}
	p.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if p.down.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		if r.URL.Path == "/phantom/node/credentials" {
			p.nodeHits.Add(1)
		}
		if hold := p.holdWatch.Load(); hold != nil && r.URL.Path == "/phantom/node/watch" {
			<-*hold
		}
		h.ServeHTTP(w, r)
	}))
	cert, err := ca.Issue(pki.Request{Identity: pki.Identity{Account: testAccount, Kind: pki.KindGateway, Name: "sts"}, IPs: []netip.Addr{netip.MustParseAddr("127.0.0.1")}, Server: true})
	if err != nil {
		t.Fatal(err)
	}
	p.srv.TLS = &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{*cert}, ClientAuth: tls.RequestClientCert}
	p.srv.StartTLS()
	t.Cleanup(p.srv.Close)
	p.caFile = filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(p.caFile, p.bundle, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func (p *perimeter) token(t testing.TB, node string) string {
	t.Helper()
	tok, _, err := p.tokens.Create(context.Background(), node, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// servedAgent is a started agent serving IMDS and the container endpoint on loopback.
type servedAgent struct {
	*Agent
	imds, container string // http://ADDR
}

// startAgent enrolls a new agent for node and serves it until the test ends.
func startAgent(t testing.TB, p *perimeter, node string, mut func(*Config)) *servedAgent {
	t.Helper()
	cfg := Config{STS: p.srv.URL, CABundle: p.bundle, StateDir: filepath.Join(t.TempDir(), "state"), JoinToken: p.token(t, node), Logger: quietLog(), EgressProxy: "127.0.0.1:3128"}
	if mut != nil {
		mut(&cfg)
	}
	a, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := a.Start(ctx); err != nil {
		cancel()
		t.Fatalf("start agent: %v", err)
	}
	imds := listen(t)
	cont := listen(t)
	done := make(chan error, 1)
	go func() { done <- a.Serve(ctx, imds, cont) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
		a.Close()
	})
	return &servedAgent{Agent: a, imds: "http://" + imds.Addr().String(), container: "http://" + cont.Addr().String()}
}

func listen(t testing.TB) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

// needPython returns python3 with boto3: skipped when absent, a failure when CI=true.
func needPython(t testing.TB) string {
	t.Helper()
	return testenv.Python(t, "boto3", "botocore")
}

// sdkEnv is the environment an unmodified SDK process gets: no keys, no profile, only
// the agent's address through the SDK's standard variables.
func sdkEnv(p *perimeter, extra ...string) []string {
	env := []string{
		"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"),
		"AWS_CONFIG_FILE=/nonexistent", "AWS_SHARED_CREDENTIALS_FILE=/nonexistent",
		"AWS_REGION=us-east-1", "AWS_CA_BUNDLE=" + p.caFile, "STS_URL=" + p.srv.URL,
	}
	return append(env, extra...)
}
