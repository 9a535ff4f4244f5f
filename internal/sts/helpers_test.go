package sts

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"encoding/base32"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"encoding/xml"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"

	"github.com/phantom-perimeter/phantom/internal/config"
	"github.com/phantom-perimeter/phantom/internal/sigv4"
	"github.com/phantom-perimeter/phantom/internal/testenv"
)

const testAccount = "123456789012"

// fakeCreds is a map-backed credential source: users' long-term keys and the sessions
// fakeIssuer minted.
type fakeCreds struct {
	mu   sync.RWMutex
	keys map[string]fakeEntry
}

type fakeEntry struct {
	cred sigv4.Credential
	sess *Session
}

func (f *fakeCreds) LookupSession(_ context.Context, id, _ string) (sigv4.Credential, *Session, error) {
	f.mu.RLock()
	e, ok := f.keys[id]
	f.mu.RUnlock()
	if !ok {
		return sigv4.Credential{}, nil, sigv4.ErrUnknownAccessKey
	}
	return e.cred, e.sess, nil
}

func (f *fakeCreds) put(e fakeEntry) {
	f.mu.Lock()
	f.keys[e.cred.AccessKeyID] = e
	f.mu.Unlock()
}

// randomKey returns a prefix and 16 upper-case base32 characters, as AWS key ids look.
func randomKey(prefix string) string {
	var b [10]byte
	_, _ = rand.Read(b[:])
	return prefix + base32.StdEncoding.EncodeToString(b[:])
}

func randomSecret(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return base64.StdEncoding.EncodeToString(b)
}

// fakeIssuer mints real random session credentials and registers them with creds, so
// the credentials it returns sign later calls. The identity package replaces it with
// sealed tokens.
type fakeIssuer struct {
	creds *fakeCreds
	mu    sync.Mutex
	specs []SessionSpec
}

func (f *fakeIssuer) Issue(_ context.Context, s SessionSpec) (SessionCredentials, error) {
	c := SessionCredentials{AccessKeyID: randomKey("ASIA"), SecretAccessKey: randomSecret(30), SessionToken: randomSecret(96), Expiration: s.Expires}
	f.creds.put(fakeEntry{
		cred: sigv4.Credential{AccessKeyID: c.AccessKeyID, SecretAccessKey: c.SecretAccessKey, SessionToken: c.SessionToken, Principal: s.Principal, Expires: s.Expires},
		sess: &Session{Role: s.Role, SessionName: s.SessionName, SourceIdentity: s.SourceIdentity, Tags: s.Tags, TransitiveTagKeys: s.TransitiveTagKeys,
			Policy: s.Policy, PolicyARNs: s.PolicyARNs, IssuedAt: s.IssuedAt, Expires: s.Expires, MFA: s.MFA, MFAAt: s.MFAAt, VPC: s.VPC},
	})
	f.mu.Lock()
	f.specs = append(f.specs, s)
	f.mu.Unlock()
	return c, nil
}

func (f *fakeIssuer) last() SessionSpec {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.specs[len(f.specs)-1]
}

// memAudit keeps events in memory.
type memAudit struct {
	mu     sync.Mutex
	events []*Event
}

func (m *memAudit) Record(_ context.Context, ev *Event) error {
	m.mu.Lock()
	m.events = append(m.events, ev)
	m.mu.Unlock()
	return nil
}

func (m *memAudit) all() []*Event {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]*Event(nil), m.events...)
}

// env is an STS with the test spec, users' keys, and (after serve) an HTTPS server.
type env struct {
	spec   *config.Spec
	h      *Handler
	creds  *fakeCreds
	issuer *fakeIssuer
	audit  *memAudit
	users  map[string]aws.Credentials // user name -> long-term key
	srv    *httptest.Server
	caFile string
}

func newEnv(t testing.TB) *env {
	t.Helper()
	spec, err := config.Load(filepath.Join("testdata", "spec.yaml"))
	if err != nil {
		t.Fatalf("load spec: %v", err)
	}
	e := &env{spec: spec, creds: &fakeCreds{keys: map[string]fakeEntry{}}, audit: &memAudit{}, users: map[string]aws.Credentials{}}
	e.issuer = &fakeIssuer{creds: e.creds}
	for _, u := range spec.Users {
		c := aws.Credentials{AccessKeyID: randomKey("AKIA"), SecretAccessKey: randomSecret(30)}
		e.users[u.Name] = c
		e.creds.put(fakeEntry{cred: sigv4.Credential{AccessKeyID: c.AccessKeyID, SecretAccessKey: c.SecretAccessKey, Principal: u.ARN}})
	}
	e.h, err = New(Config{
		Account:   testAccount,
		Region:    "us-east-1",
		Directory: func() Directory { return spec },
		Logger:    slog.New(slog.NewTextHandler(io.Discard, nil)),
	}, e.creds, e.issuer, e.audit)
	if err != nil {
		t.Fatalf("new handler: %v", err)
	}
	return e
}

// serve starts the handler on an HTTPS server on 127.0.0.1 and writes its CA certificate
// to a file for AWS_CA_BUNDLE.
func (e *env) serve(t testing.TB) {
	t.Helper()
	e.srv = httptest.NewTLSServer(e.h)
	t.Cleanup(e.srv.Close)
	e.caFile = filepath.Join(t.TempDir(), "ca.pem")
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: e.srv.Certificate().Raw})
	if err := os.WriteFile(e.caFile, pemBytes, 0o600); err != nil {
		t.Fatal(err)
	}
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// signedRequest builds a POST form request signed for sts in us-east-1.
func signedRequest(t testing.TB, creds aws.Credentials, form url.Values) *http.Request {
	t.Helper()
	body := []byte(form.Encode())
	r := httptest.NewRequest(http.MethodPost, "https://sts.us-east-1.amazonaws.com/", bytes.NewReader(body))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")
	r.TLS = &tls.ConnectionState{Version: tls.VersionTLS13}
	if creds.AccessKeyID != "" {
		if err := v4.NewSigner().SignHTTP(context.Background(), creds, r, sha256Hex(body), "sts", "us-east-1", time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	return r
}

// call runs one signed call in process and returns the status and body.
func (e *env) call(t testing.TB, creds aws.Credentials, form url.Values) (int, []byte) {
	t.Helper()
	rec := httptest.NewRecorder()
	e.h.ServeHTTP(rec, signedRequest(t, creds, form))
	return rec.Code, rec.Body.Bytes()
}

func form(action string, kv ...string) url.Values {
	v := url.Values{"Action": {action}, "Version": {"2011-06-15"}}
	for i := 0; i+1 < len(kv); i += 2 {
		v.Set(kv[i], kv[i+1])
	}
	return v
}

type xmlError struct {
	Type, Code, Message string
}

func parseError(t testing.TB, body []byte) xmlError {
	t.Helper()
	var er struct {
		XMLName   xml.Name `xml:"https://sts.amazonaws.com/doc/2011-06-15/ ErrorResponse"`
		Error     xmlError `xml:"Error"`
		RequestID string   `xml:"RequestId"`
	}
	if err := xml.Unmarshal(body, &er); err != nil {
		t.Fatalf("error body %q: %v", body, err)
	}
	if er.RequestID == "" {
		t.Errorf("error without RequestId: %s", body)
	}
	return er.Error
}

type xmlAssume struct {
	Result struct {
		Credentials struct {
			AccessKeyID     string `xml:"AccessKeyId"`
			SecretAccessKey string
			SessionToken    string
			Expiration      string
		} `xml:"Credentials"`
		AssumedRoleUser struct {
			AssumedRoleID string `xml:"AssumedRoleId"`
			Arn           string
		}
		PackedPolicySize *int
		SourceIdentity   string
	} `xml:"AssumeRoleResult"`
	RequestID string `xml:"ResponseMetadata>RequestId"`
}

func (x *xmlAssume) creds() aws.Credentials {
	c := x.Result.Credentials
	return aws.Credentials{AccessKeyID: c.AccessKeyID, SecretAccessKey: c.SecretAccessKey, SessionToken: c.SessionToken}
}

func (e *env) assume(t testing.TB, creds aws.Credentials, kv ...string) *xmlAssume {
	t.Helper()
	code, body := e.call(t, creds, form("AssumeRole", kv...))
	if code != http.StatusOK {
		t.Fatalf("AssumeRole %v: %d %s", kv, code, body)
	}
	var x xmlAssume
	if err := xml.Unmarshal(body, &x); err != nil {
		t.Fatal(err)
	}
	return &x
}

// needTool returns the path of a client the test drives, skipping when it is absent
// unless CI=true, where a missing client is a failure.
func needTool(t testing.TB, name string) string {
	t.Helper()
	return testenv.LookPath(t, name)
}

// noSecrets fails when an audit event contains a secret key or session token.
func noSecrets(t testing.TB, events []*Event, secrets ...string) {
	t.Helper()
	for _, ev := range events {
		b, err := json.Marshal(ev)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range secrets {
			if s != "" && strings.Contains(string(b), s) {
				t.Fatalf("audit event %s contains a secret", ev.EventName)
			}
		}
	}
}

func signGet(t testing.TB, creds aws.Credentials, r *http.Request) {
	t.Helper()
	signBody(t, creds, r, "")
}

func signBody(t testing.TB, creds aws.Credentials, r *http.Request, body string) {
	t.Helper()
	if err := v4.NewSigner().SignHTTP(context.Background(), creds, r, sha256Hex([]byte(body)), "sts", "us-east-1", time.Now()); err != nil {
		t.Fatal(err)
	}
}
