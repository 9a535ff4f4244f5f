package sts

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/phantom-perimeter/phantom/internal/config"
	"github.com/phantom-perimeter/phantom/internal/egress"
	"github.com/phantom-perimeter/phantom/internal/identity"
	"github.com/phantom-perimeter/phantom/internal/keys"
	"github.com/phantom-perimeter/phantom/internal/nodeapi"
	"github.com/phantom-perimeter/phantom/internal/pki"
	"github.com/phantom-perimeter/phantom/internal/store"
)

// nodeEnv is the STS with the node API over the real identity service, SQLite store
// (join tokens, node registry) and CA, served over HTTPS that requests client certificates
// as `phantom sts` does.
type nodeEnv struct {
	spec   *config.Spec
	db     *store.SQLite
	svc    *identity.Service
	ca     *pki.CA
	tokens *pki.Tokens
	audit  *memAudit
	h      *Handler
	srv    *httptest.Server
	roots  *x509.CertPool
	egress ed25519.PrivateKey
}

func newNodeEnv(t testing.TB) *nodeEnv {
	t.Helper()
	ctx := context.Background()
	spec, err := config.Load(filepath.Join("testdata", "node_spec.yaml"))
	if err != nil {
		t.Fatalf("load spec: %v", err)
	}
	mk := make([]byte, 32)
	if _, err := rand.Read(mk); err != nil {
		t.Fatal(err)
	}
	db, err := store.OpenSQLite(ctx, store.Config{DataDir: t.TempDir(), MasterKey: mk})
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(func() { _ = db.Close() })
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	svc, err := identity.New(identity.Config{Account: testAccount, Logger: quiet}, identity.Deps{AccessKeys: db, SealingKeys: db, Revocations: db, Nodes: db, Changes: db})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.RotateSealingKey(ctx); err != nil {
		t.Fatal(err)
	}
	ca, err := pki.New(pki.Config{Dir: t.TempDir(), Account: testAccount})
	if err != nil {
		t.Fatal(err)
	}
	ek, err := keys.DeriveEd25519(mk, keys.EgressPasswords)
	if err != nil {
		t.Fatal(err)
	}
	e := &nodeEnv{spec: spec, db: db, svc: svc, ca: ca, tokens: pki.NewTokens(pki.TokensConfig{}, db), audit: &memAudit{}, egress: ek}
	id := NewIdentity(svc)
	e.h, err = New(Config{
		Account: testAccount, Region: "us-east-1", Directory: func() Directory { return spec }, Logger: quiet,
		Nodes: &NodeConfig{
			CA: ca, Tokens: e.tokens, Verifier: ca.Verifier(), Issuer: id, Registry: db, Sessions: id,
			ProxyPassword:  egress.Passwords(ek),
			WatchHeartbeat: 200 * time.Millisecond, WatchMaxDuration: 3 * time.Second,
		},
	}, id, id, e.audit)
	if err != nil {
		t.Fatal(err)
	}
	e.srv = httptest.NewUnstartedServer(e.h)
	srvCert, err := ca.Issue(pki.Request{Identity: pki.Identity{Account: testAccount, Kind: pki.KindGateway, Name: "sts"}, IPs: []netip.Addr{netip.MustParseAddr("127.0.0.1")}, Server: true})
	if err != nil {
		t.Fatal(err)
	}
	e.srv.TLS = &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{*srvCert}, ClientAuth: tls.RequestClientCert}
	e.srv.StartTLS()
	t.Cleanup(e.srv.Close)
	e.roots = x509.NewCertPool()
	e.roots.AddCert(ca.Certificate())
	return e
}

// token makes a join token for node.
func (e *nodeEnv) token(t testing.TB, node string, ttl time.Duration) string {
	t.Helper()
	tok, _, err := e.tokens.Create(context.Background(), node, ttl)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// client is an HTTPS client trusting the perimeter CA, presenting cert (nil: none).
func (e *nodeEnv) client(cert *tls.Certificate) *http.Client {
	cfg := &tls.Config{RootCAs: e.roots}
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	return &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}, Timeout: 10 * time.Second}
}

type nodeResp struct {
	status int
	body   []byte
	err    struct {
		Type    string `json:"__type"`
		Message string `json:"message"`
	}
}

func (e *nodeEnv) post(t testing.TB, cert *tls.Certificate, path, body string) *nodeResp {
	t.Helper()
	return e.do(t, cert, http.MethodPost, path, body)
}

func (e *nodeEnv) do(t testing.TB, cert *tls.Certificate, method, path, body string) *nodeResp {
	t.Helper()
	req, err := http.NewRequest(method, e.srv.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := e.client(cert).Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	r := &nodeResp{status: resp.StatusCode}
	r.body, _ = io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		if err := json.Unmarshal(r.body, &r.err); err != nil {
			t.Fatalf("%s %s: error body %q is not AWS JSON: %v", method, path, r.body, err)
		}
	}
	return r
}

// newCSR returns a fresh P-256 key and its PEM certificate request.
func newCSR(t testing.TB) (*ecdsa.PrivateKey, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "ignored"}}, key)
	if err != nil {
		t.Fatal(err)
	}
	return key, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
}

func jsonBody(t testing.TB, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// enroll redeems a join token for node and returns its certificate.
func (e *nodeEnv) enroll(t testing.TB, node string) *tls.Certificate {
	t.Helper()
	key, csr := newCSR(t)
	r := e.post(t, nil, "/phantom/node/enroll", jsonBody(t, map[string]string{"token": e.token(t, node, time.Hour), "csr": csr}))
	if r.status != 200 {
		t.Fatalf("enroll %s: %d %s", node, r.status, r.body)
	}
	return certFrom(t, r.body, key)
}

func certFrom(t testing.TB, body []byte, key *ecdsa.PrivateKey) *tls.Certificate {
	t.Helper()
	var out nodeapi.Certificate
	if err := json.Unmarshal(body, &out); err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode([]byte(out.Certificate))
	if block == nil {
		t.Fatalf("no certificate in %s", body)
	}
	leaf, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Certificate{Certificate: [][]byte{block.Bytes}, PrivateKey: key, Leaf: leaf}
}

func (e *nodeEnv) lastEvent(t testing.TB) *Event {
	t.Helper()
	evs := e.audit.all()
	if len(evs) == 0 {
		t.Fatal("no audit event")
	}
	return evs[len(evs)-1]
}

// TestNodeLifecycle: enroll with a join token, get node-bound credentials that sign STS
// calls as the node's role session, renew the certificate (the old one stops working),
// every step audited without secrets.
func TestNodeLifecycle(t *testing.T) {
	e := newNodeEnv(t)
	cert := e.enroll(t, "service-a-1")
	id, err := pki.IdentityFromCert(cert.Leaf)
	if err != nil || id.Name != "service-a-1" || id.Kind != pki.KindNode {
		t.Fatalf("enrolled identity %v, %v", id, err)
	}
	if ev := e.lastEvent(t); ev.EventName != "EnrollNode" || ev.ErrorCode != "" || ev.UserIdentity.PrincipalID != "service-a-1" {
		t.Fatalf("enroll event %+v", ev)
	}
	rec, err := e.db.GetNode(context.Background(), "service-a-1")
	if err != nil || rec.CertSerial != cert.Leaf.SerialNumber.Text(16) || rec.Role != "app" {
		t.Fatalf("registry %+v, %v", rec, err)
	}

	r := e.post(t, cert, "/phantom/node/credentials", `{"durationSeconds": 900}`)
	if r.status != 200 {
		t.Fatalf("credentials: %d %s", r.status, r.body)
	}
	var c nodeapi.Credentials
	if err := json.Unmarshal(r.body, &c); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(c.AccessKeyID, "ASIA") || c.RoleArn != "arn:aws:iam::123456789012:role/app" || c.Node != "service-a-1" ||
		c.ProxyPassword == "" || c.AccountID != testAccount {
		t.Fatalf("credentials response %+v", c)
	}
	exp, err := time.Parse(time.RFC3339, c.Expiration)
	if err != nil || exp.Sub(time.Now()) > 900*time.Second || exp.Sub(time.Now()) < 890*time.Second {
		t.Fatalf("expiration %q (%v), want ~15 minutes from now", c.Expiration, err)
	}
	// The sealed claims carry the node's network.
	res, err := e.svc.Resolve(context.Background(), c.AccessKeyID, c.Token)
	if err != nil {
		t.Fatal(err)
	}
	cl := res.Claims
	if cl.Node != "service-a-1" || cl.VPC != "vpc-0a1b2c3d4e5f60718" || cl.PrivateIP != netip.MustParseAddr("10.0.1.15") ||
		cl.Endpoint != "vpce-0123456789abcdef0" || cl.Principal != "arn:aws:sts::123456789012:assumed-role/app/service-a-1" {
		t.Fatalf("claims %+v", cl)
	}
	// The proxy password is the node's for its address and this session's validity: it
	// shares the session's expiry and revocation.
	if want := egress.ProxyPassword(e.egress, egress.Credential{Node: "service-a-1", Addr: netip.MustParseAddr("10.0.1.15"), Issued: cl.IssuedAt, Expires: cl.Expires}); c.ProxyPassword != want {
		t.Fatalf("proxy password %q, want %q (issued %s, expires %s)", c.ProxyPassword, want, cl.IssuedAt, cl.Expires)
	}
	ev := e.lastEvent(t)
	if ev.EventName != "AssumeRole" || ev.ErrorCode != "" || ev.UserIdentity.Type != "PhantomNode" || ev.UserIdentity.SessionContext == nil ||
		ev.UserIdentity.SessionContext.EC2RoleDelivery != "2.0" || ev.RequestParameters["durationSeconds"] != 900 {
		t.Fatalf("credentials event %+v", ev)
	}
	// The credentials sign query-API calls as the node's role session.
	env := &env{h: e.h, srv: e.srv}
	code, body := env.call(t, aws.Credentials{AccessKeyID: c.AccessKeyID, SecretAccessKey: c.SecretAccessKey, SessionToken: c.Token}, form("GetCallerIdentity"))
	if code != 200 || callerARN(t, body) != "arn:aws:sts::123456789012:assumed-role/app/service-a-1" {
		t.Fatalf("GetCallerIdentity with node credentials: %d %s", code, body)
	}

	// Renewal: a new key, the same identity; the superseded certificate is refused.
	key, csr := newCSR(t)
	r = e.post(t, cert, "/phantom/node/renew", jsonBody(t, map[string]string{"csr": csr}))
	if r.status != 200 {
		t.Fatalf("renew: %d %s", r.status, r.body)
	}
	renewed := certFrom(t, r.body, key)
	if rid, _ := pki.IdentityFromCert(renewed.Leaf); rid != id || renewed.Leaf.SerialNumber.Cmp(cert.Leaf.SerialNumber) == 0 {
		t.Fatalf("renewed identity %v serial %v", rid, renewed.Leaf.SerialNumber)
	}
	if ev := e.lastEvent(t); ev.EventName != "RenewNodeCertificate" || ev.ErrorCode != "" {
		t.Fatalf("renew event %+v", ev)
	}
	if r := e.post(t, renewed, "/phantom/node/credentials", ``); r.status != 200 {
		t.Fatalf("credentials with the renewed certificate: %d %s", r.status, r.body)
	}
	if r := e.post(t, cert, "/phantom/node/credentials", ``); r.status != 403 || r.err.Type != "InvalidClientCertificate" {
		t.Fatalf("credentials with the superseded certificate: %d %s", r.status, r.body)
	}
	noSecrets(t, e.audit.all(), c.SecretAccessKey, c.Token, c.ProxyPassword)
}

// TestNodeRefusals: every way a node call is refused, each answered in AWS's JSON error
// shape and audited with its error code.
func TestNodeRefusals(t *testing.T) {
	e := newNodeEnv(t)
	otherVPC := e.enroll(t, "other-vpc")
	peopleOnly := e.enroll(t, "people-only")
	otherCA, err := pki.New(pki.Config{Dir: t.TempDir(), Account: testAccount})
	if err != nil {
		t.Fatal(err)
	}
	foreign, err := otherCA.Issue(pki.Request{Identity: pki.Identity{Account: testAccount, Kind: pki.KindNode, Name: "service-a-1"}, Client: true})
	if err != nil {
		t.Fatal(err)
	}
	gatewayCert, err := e.ca.Issue(pki.Request{Identity: pki.Identity{Account: testAccount, Kind: pki.KindGateway, Name: "gateway"}, Client: true})
	if err != nil {
		t.Fatal(err)
	}
	ghost, err := e.ca.Issue(pki.Request{Identity: pki.Identity{Account: testAccount, Kind: pki.KindNode, Name: "ghost"}, Client: true})
	if err != nil {
		t.Fatal(err)
	}
	// A genuine certificate for a node of the spec that never enrolled (no registry record).
	unenrolled, err := e.ca.Issue(pki.Request{Identity: pki.Identity{Account: testAccount, Kind: pki.KindNode, Name: "ec2-style"}, Client: true})
	if err != nil {
		t.Fatal(err)
	}
	spent := e.token(t, "service-a-1", time.Hour)
	_, csr := newCSR(t)
	if r := e.post(t, nil, "/phantom/node/enroll", jsonBody(t, map[string]string{"token": spent, "csr": csr})); r.status != 200 {
		t.Fatalf("first use of the token: %d %s", r.status, r.body)
	}
	enrolled := e.enroll(t, "service-a-1") // after the above: re-enrolling supersedes a certificate
	expired := e.token(t, "service-a-1", time.Millisecond)
	time.Sleep(5 * time.Millisecond)
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	rsaDER, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, rsaKey)
	rsaCSR := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: rsaDER}))
	kept := e.token(t, "service-a-1", time.Hour)

	tests := []struct {
		name   string
		cert   *tls.Certificate
		method string
		path   string
		body   string
		status int
		code   string
	}{
		{"credentials without a certificate", nil, "POST", "/phantom/node/credentials", ``, 403, "InvalidClientCertificate"},
		{"certificate from another CA", foreign, "POST", "/phantom/node/credentials", ``, 403, "InvalidClientCertificate"},
		{"certificate of a gateway, not a node", gatewayCert, "POST", "/phantom/node/credentials", ``, 403, "InvalidClientCertificate"},
		{"node not in the spec", ghost, "POST", "/phantom/node/credentials", ``, 403, "AccessDenied"},
		{"node in the spec but never enrolled", unenrolled, "POST", "/phantom/node/credentials", ``, 403, "AccessDenied"},
		{"renew without a certificate", nil, "POST", "/phantom/node/renew", jsonBody(t, map[string]string{"csr": csr}), 403, "InvalidClientCertificate"},
		{"renew with a foreign certificate", foreign, "POST", "/phantom/node/renew", jsonBody(t, map[string]string{"csr": csr}), 403, "InvalidClientCertificate"},
		{"trust policy requires another VPC", otherVPC, "POST", "/phantom/node/credentials", ``, 403, "AccessDenied"},
		{"trust policy admits only a user", peopleOnly, "POST", "/phantom/node/credentials", ``, 403, "AccessDenied"},
		{"duration below 15 seconds", enrolled, "POST", "/phantom/node/credentials", `{"durationSeconds": 14}`, 400, "ValidationError"},
		{"duration above 12 hours", enrolled, "POST", "/phantom/node/credentials", `{"durationSeconds": 43201}`, 400, "ValidationError"},
		{"credentials with a csr", enrolled, "POST", "/phantom/node/credentials", jsonBody(t, map[string]string{"csr": csr}), 400, "ValidationError"},
		{"malformed JSON", enrolled, "POST", "/phantom/node/credentials", `{"durationSeconds": `, 400, "SerializationException"},
		{"unknown member", enrolled, "POST", "/phantom/node/credentials", `{"roleArn": "x"}`, 400, "SerializationException"},
		{"two objects", enrolled, "POST", "/phantom/node/credentials", `{} {}`, 400, "SerializationException"},
		{"wrong type", enrolled, "POST", "/phantom/node/credentials", `{"durationSeconds": "900"}`, 400, "SerializationException"},
		{"body too large", enrolled, "POST", "/phantom/node/credentials", `{"csr": "` + strings.Repeat("A", DefaultNodeMaxBodyBytes) + `"}`, 413, "RequestEntityTooLarge"},
		{"GET", enrolled, "GET", "/phantom/node/credentials", ``, 405, "InvalidAction"},
		{"unknown operation", enrolled, "POST", "/phantom/node/delete", ``, 404, "UnknownOperationException"},
		{"spent join token", nil, "POST", "/phantom/node/enroll", jsonBody(t, map[string]string{"token": spent, "csr": csr}), 403, "InvalidClientTokenId"},
		{"expired join token", nil, "POST", "/phantom/node/enroll", jsonBody(t, map[string]string{"token": expired, "csr": csr}), 403, "ExpiredToken"},
		{"made-up join token", nil, "POST", "/phantom/node/enroll", jsonBody(t, map[string]string{"token": "phjt_0123456789abcdef0123456789abcdef.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "csr": csr}), 403, "InvalidClientTokenId"},
		{"enroll without a token", nil, "POST", "/phantom/node/enroll", jsonBody(t, map[string]string{"csr": csr}), 400, "ValidationError"},
		{"malformed CSR", nil, "POST", "/phantom/node/enroll", jsonBody(t, map[string]string{"token": kept, "csr": "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"}), 400, "ValidationError"},
		{"CSR that is a certificate", nil, "POST", "/phantom/node/enroll", jsonBody(t, map[string]string{"token": kept, "csr": string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: enrolled.Leaf.Raw}))}), 400, "ValidationError"},
		{"CSR with trailing data", nil, "POST", "/phantom/node/enroll", jsonBody(t, map[string]string{"token": kept, "csr": csr + "junk"}), 400, "ValidationError"},
		{"CSR with an RSA key", nil, "POST", "/phantom/node/enroll", jsonBody(t, map[string]string{"token": kept, "csr": rsaCSR}), 400, "ValidationError"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := len(e.audit.all())
			r := e.do(t, tc.cert, tc.method, tc.path, tc.body)
			if r.status != tc.status || r.err.Type != tc.code {
				t.Fatalf("got %d %s (%s), want %d %s", r.status, r.err.Type, r.err.Message, tc.status, tc.code)
			}
			evs := e.audit.all()
			if len(evs) != before+1 || evs[len(evs)-1].ErrorCode != tc.code {
				t.Fatalf("audit: %d new events, last %+v; want one with errorCode %s", len(evs)-before, evs[len(evs)-1], tc.code)
			}
		})
	}
	// The malformed requests did not spend the token they carried.
	_, csr2 := newCSR(t)
	if r := e.post(t, nil, "/phantom/node/enroll", jsonBody(t, map[string]string{"token": kept, "csr": csr2})); r.status != 200 {
		t.Fatalf("token after refused malformed requests: %d %s", r.status, r.body)
	}
	for _, ev := range e.audit.all() {
		b, _ := json.Marshal(ev)
		for _, secret := range []string{strings.SplitN(spent, ".", 2)[1], strings.SplitN(kept, ".", 2)[1]} {
			if bytes.Contains(b, []byte(secret)) {
				t.Fatalf("a join token's secret is in the audit event %s", b)
			}
		}
	}
}

// TestNodeTrust: the trust policy decides with the node's network; a Service
// ec2.amazonaws.com statement admits nodes as it admits instances; the role caps the
// duration rather than refusing.
func TestNodeTrust(t *testing.T) {
	e := newNodeEnv(t)
	ec2 := e.enroll(t, "ec2-style")
	r := e.post(t, ec2, "/phantom/node/credentials", `{"durationSeconds": 43200}`)
	if r.status != 200 {
		t.Fatalf("ec2-style node: %d %s", r.status, r.body)
	}
	var c nodeapi.Credentials
	_ = json.Unmarshal(r.body, &c)
	exp, _ := time.Parse(time.RFC3339, c.Expiration)
	if d := time.Until(exp); d > 2*time.Hour || d < 2*time.Hour-time.Minute {
		t.Fatalf("expiration in %s, want the role's maxSessionDuration 2h", d)
	}
	if c.RoleArn != "arn:aws:iam::123456789012:role/instance" {
		t.Fatalf("role %s", c.RoleArn)
	}
	app := e.enroll(t, "service-a-1")
	r = e.post(t, app, "/phantom/node/credentials", ``)
	_ = json.Unmarshal(r.body, &c)
	exp, _ = time.Parse(time.RFC3339, c.Expiration)
	if d := time.Until(exp); r.status != 200 || d > time.Hour || d < time.Hour-time.Minute {
		t.Fatalf("default duration: %d, expires in %s; want 1h", r.status, d)
	}
}

// TestNodeAPIDisabled: without a NodeConfig the paths are not served.
func TestNodeAPIDisabled(t *testing.T) {
	e := newEnv(t)
	rec := httptest.NewRecorder()
	e.h.ServeHTTP(rec, httptest.NewRequest("POST", "/phantom/node/credentials", strings.NewReader(`{}`)))
	if rec.Code != 404 || !strings.Contains(rec.Body.String(), "UnknownOperationException") {
		t.Fatalf("%d %s", rec.Code, rec.Body)
	}
}

// TestNodeConfigValidated: an incomplete NodeConfig is refused by New.
func TestNodeConfigValidated(t *testing.T) {
	_, err := New(Config{Account: testAccount, Region: "us-east-1", Directory: func() Directory { return nil }, Nodes: &NodeConfig{}},
		&fakeCreds{}, &fakeIssuer{}, &memAudit{})
	if err == nil || !strings.Contains(err.Error(), "node API") {
		t.Fatalf("New with an empty NodeConfig: %v", err)
	}
}
