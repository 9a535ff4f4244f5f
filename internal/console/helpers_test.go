package console

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/phantom-perimeter/phantom/internal/audit"
	"github.com/phantom-perimeter/phantom/internal/config"
	"github.com/phantom-perimeter/phantom/internal/detect"
	"github.com/phantom-perimeter/phantom/internal/identity"
	"github.com/phantom-perimeter/phantom/internal/sigv4"
	"github.com/phantom-perimeter/phantom/internal/store"
)

const (
	account   = "123456789012"
	aliceARN  = "arn:aws:iam::123456789012:user/alice"
	bobARN    = "arn:aws:iam::123456789012:user/bob"
	carolARN  = "arn:aws:iam::123456789012:user/carol"
	appARN    = "arn:aws:iam::123456789012:role/app"
	apiARN    = "arn:aws:execute-api:us-east-1:123456789012:a1b2c3d4e5"
	endpoint  = "vpce-0123456789abcdef0"
	findingID = "f0a1b2c3d4e5f60718293a4b5c6d7e8f"
)

var t0 = time.Date(2026, 11, 29, 3, 0, 0, 0, time.UTC)

func loadSpec(t testing.TB) *config.Spec {
	t.Helper()
	b, err := os.ReadFile("testdata/perimeter.yaml")
	if err != nil {
		t.Fatal(err)
	}
	spec, err := config.Parse("testdata/perimeter.yaml", b)
	if err != nil {
		t.Fatal(err)
	}
	return spec
}

// clock is a settable time source.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// fakeIdentity resolves a fixed set of credentials; RevokeSessions refuses the role's
// sessions from then on, as the identity service does.
type fakeIdentity struct {
	mu          sync.Mutex
	creds       map[string]*fakeCred
	revoked     []string
	nodeRevoked map[string]time.Time
	fail        error // every Resolve fails with it when set
}

type fakeCred struct {
	rv    identity.Resolved
	token string
	err   error
}

func (f *fakeIdentity) Resolve(_ context.Context, id, token string) (identity.Resolved, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail != nil {
		return identity.Resolved{}, f.fail
	}
	c, ok := f.creds[id]
	if !ok {
		return identity.Resolved{}, identity.ErrAccessKeyUnknown
	}
	if c.token != token {
		return identity.Resolved{}, identity.ErrTokenMismatch
	}
	if c.err != nil {
		return identity.Resolved{}, c.err
	}
	return c.rv, nil
}

func (f *fakeIdentity) RevokeSessions(_ context.Context, role string) (identity.Revocation, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.revoked = append(f.revoked, role)
	for _, c := range f.creds {
		if c.rv.Claims != nil && c.rv.Claims.RoleName() == role {
			c.err = identity.ErrSessionRevoked
		}
	}
	return identity.Revocation{Role: role, Before: t0}, nil
}

func (f *fakeIdentity) NodeRevocation(node string) (time.Time, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	t, ok := f.nodeRevoked[node]
	return t, ok
}

func (f *fakeIdentity) set(id string, err error) {
	f.mu.Lock()
	f.creds[id].err = err
	f.mu.Unlock()
}

func (f *fakeIdentity) revokedRoles() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.revoked)
}

// fakeStore holds findings and risk levels in memory; sessions and the sign-in limiter
// are a real store's.
type fakeStore struct {
	SessionStore
	mu       sync.Mutex
	findings map[string]store.Finding
	risks    []store.RiskLevel
	nodes    []store.Node
}

func (s *fakeStore) ListNodes(context.Context) ([]store.Node, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.nodes), nil
}

func (s *fakeStore) ListFindings(_ context.Context, f store.FindingFilter) ([]store.Finding, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []store.Finding
	for _, x := range s.findings {
		if f.Archived != nil && x.Archived != *f.Archived {
			continue
		}
		out = append(out, x)
	}
	slices.SortFunc(out, func(a, b store.Finding) int { return strings.Compare(a.ID, b.ID) })
	return out, nil
}

func (s *fakeStore) GetFinding(_ context.Context, id string) (store.Finding, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f, ok := s.findings[id]
	if !ok {
		return store.Finding{}, store.ErrNotFound
	}
	return f, nil
}

func (s *fakeStore) ArchiveFinding(_ context.Context, id string, archived bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	f, ok := s.findings[id]
	if !ok {
		return store.ErrNotFound
	}
	f.Archived = archived
	s.findings[id] = f
	return nil
}

func (s *fakeStore) ListRiskLevels(context.Context) ([]store.RiskLevel, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.risks), nil
}

func (s *fakeStore) archived(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.findings[id].Archived
}

// fakeAuditor keeps events in memory.
type fakeAuditor struct {
	mu  sync.Mutex
	evs []audit.Event
	err error
}

func (a *fakeAuditor) Record(_ context.Context, ev *audit.Event) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.err != nil {
		return a.err
	}
	a.evs = append(a.evs, *ev)
	return nil
}

func (a *fakeAuditor) named(name string) []audit.Event {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []audit.Event
	for _, ev := range a.evs {
		if ev.EventName == name {
			out = append(out, ev)
		}
	}
	return out
}

// testFinding is a credential-exfiltration finding about a session of role app.
func testFinding(t testing.TB, id string) store.Finding {
	t.Helper()
	f := detect.Finding{
		SchemaVersion: "2.0", AccountID: account, Region: "us-east-1", Partition: "aws", ID: id,
		ARN:         "arn:aws:guardduty:us-east-1:123456789012:detector/phantom/finding/" + id,
		Type:        "UnauthorizedAccess:IAMUser/InstanceCredentialExfiltration.OutsideAWS",
		Title:       "Credentials of node service-a-1 used from another address",
		Description: "A session of role app issued to node service-a-1 was used from 203.0.113.9.",
		Severity:    8, CreatedAt: t0, UpdatedAt: t0,
		Resource: detect.Resource{ResourceType: "AccessKey", AccessKeyDetails: &detect.AccessKeyDetails{
			AccessKeyID: "ASIAEXAMPLEKEYID0001", UserType: "AssumedRole", UserName: "app",
			PrincipalARN: "arn:aws:sts::123456789012:assumed-role/app/i-0abc"}},
		Service: detect.Service{ServiceName: "guardduty", DetectorID: "phantom", ResourceRole: "TARGET", Count: 3,
			EventFirstSeen: t0, EventLastSeen: t0.Add(time.Minute),
			Action: detect.Action{ActionType: "AWS_API_CALL", AWSAPICallAction: &detect.AWSAPICallAction{
				API: "Invoke", ServiceName: "execute-api.amazonaws.com", CallerType: "Remote IP",
				RemoteIPDetails: &detect.RemoteIPDetails{IPAddressV4: "203.0.113.9"}}},
			Evidence: []string{"00000000-0000-4000-8000-000000000001", "00000000-0000-4000-8000-000000000002"}},
	}
	doc, err := json.Marshal(f)
	if err != nil {
		t.Fatal(err)
	}
	return store.Finding{ID: id, Type: f.Type, Severity: f.Severity, Principal: f.Resource.AccessKeyDetails.PrincipalARN,
		CreatedAt: t0, UpdatedAt: t0, Document: doc}
}

// Credentials of the test principals.
const (
	aliceKey   = "AKIAALICEEXAMPLE0001"
	bobKey     = "AKIABOBEXAMPLE000001"
	carolKey   = "AKIACAROLEXAMPLE0001"
	strayKey   = "AKIASTRAYEXAMPLE0001" // a user the spec does not have
	appKey     = "ASIAAPPSESSION000001"
	appToken   = "token-of-the-app-session"
	secretOf   = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
	appSession = "arn:aws:sts::123456789012:assumed-role/app/console"
)

func longTerm(key, arn, user string) *fakeCred {
	return &fakeCred{rv: identity.Resolved{Credential: sigv4.Credential{AccessKeyID: key, SecretAccessKey: secretOf, Principal: arn},
		Account: account, User: user}}
}

type env struct {
	t    *testing.T
	h    *Handler
	srv  *httptest.Server
	ids  *fakeIdentity
	st   *fakeStore
	db   *store.SQLite
	aud  *fakeAuditor
	clk  *clock
	spec *config.Spec
	dir  string
}

func newEnv(t *testing.T) *env {
	t.Helper()
	e := &env{t: t, clk: &clock{t: t0}, aud: &fakeAuditor{}, spec: loadSpec(t), dir: t.TempDir()}
	e.ids = &fakeIdentity{creds: map[string]*fakeCred{
		aliceKey: longTerm(aliceKey, aliceARN, "alice"),
		bobKey:   longTerm(bobKey, bobARN, "bob"),
		carolKey: longTerm(carolKey, carolARN, "carol"),
		strayKey: longTerm(strayKey, "arn:aws:iam::123456789012:user/stray", "stray"),
		appKey: {token: appToken, rv: identity.Resolved{
			Credential: sigv4.Credential{AccessKeyID: appKey, SecretAccessKey: secretOf, SessionToken: appToken, Principal: appSession, Expires: t0.Add(time.Hour)},
			Account:    account,
			Claims: &identity.Claims{AccessKeyID: appKey, Principal: appSession, Role: appARN, SessionName: "console",
				IssuedAt: t0.Add(-time.Minute), Expires: t0.Add(time.Hour)}}},
	}}
	e.db = openSQLite(t, t.TempDir())
	e.st = &fakeStore{SessionStore: e.db, findings: map[string]store.Finding{findingID: testFinding(t, findingID)}}
	e.serve()
	return e
}

// serve builds e's handler over e.st and serves it.
func (e *env) serve() {
	e.t.Helper()
	h, err := New(Config{
		Spec:     func() *config.Spec { return e.spec },
		Store:    e.st,
		Identity: e.ids,
		AuditDir: e.dir,
		Auditor:  e.aud,
		Logger:   slog.New(slog.DiscardHandler),
		Now:      e.clk.Now,
	})
	if err != nil {
		e.t.Fatal(err)
	}
	e.h = h
	e.srv = httptest.NewTLSServer(h)
	e.t.Cleanup(e.srv.Close)
}

// browser is a cookie-keeping client that does not follow redirects.
type browser struct {
	e *env
	c *http.Client
}

func (e *env) browser() *browser {
	jar, _ := cookiejar.New(nil)
	c := new(http.Client)
	*c = *e.srv.Client() // a copy: each browser its own jar
	c.Jar = jar
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &browser{e: e, c: c}
}

type resp struct {
	status   int
	body     string
	location string
	header   http.Header
}

func (b *browser) do(req *http.Request) resp {
	b.e.t.Helper()
	r, err := b.c.Do(req)
	if err != nil {
		b.e.t.Fatal(err)
	}
	defer r.Body.Close()
	body, _ := io.ReadAll(r.Body)
	return resp{status: r.StatusCode, body: string(body), location: r.Header.Get("Location"), header: r.Header}
}

func (b *browser) get(path string) resp {
	b.e.t.Helper()
	req, _ := http.NewRequest("GET", b.e.srv.URL+path, nil)
	return b.do(req)
}

func (b *browser) post(path string, form url.Values) resp {
	b.e.t.Helper()
	req, _ := http.NewRequest("POST", b.e.srv.URL+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return b.do(req)
}

var csrfRe = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

func csrfOf(t *testing.T, body string) string {
	t.Helper()
	m := csrfRe.FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no CSRF token in the page:\n%s", body)
	}
	return m[1]
}

// signIn submits the sign-in form and returns the answer.
func (b *browser) signIn(key, secret, token string) resp {
	b.e.t.Helper()
	form := b.get("/signin")
	return b.post("/signin", url.Values{"csrf": {csrfOf(b.e.t, form.body)}, "accessKeyId": {key},
		"secretAccessKey": {secret}, "sessionToken": {token}})
}

// signedIn returns a browser signed in with key.
func (e *env) signedIn(key string) *browser {
	e.t.Helper()
	b := e.browser()
	token := ""
	if key == appKey {
		token = appToken
	}
	if r := b.signIn(key, secretOf, token); r.status != http.StatusSeeOther || r.location != "/" {
		e.t.Fatalf("sign-in with %s: %d %s\n%s", key, r.status, r.location, r.body)
	}
	return b
}

// csrf is the signed-in session's token, read from a page.
func (b *browser) csrf() string {
	b.e.t.Helper()
	return csrfOf(b.e.t, b.get("/findings/"+findingID).body)
}

func randomKey(t testing.TB) []byte {
	k := make([]byte, 32)
	if _, err := rand.Read(k); err != nil {
		t.Fatal(err)
	}
	return k
}

// openSQLite opens a SQLite store in dir (the same file for every replica of a test).
func openSQLite(t testing.TB, dir string) *store.SQLite {
	t.Helper()
	db, err := store.OpenSQLite(t.Context(), store.Config{DataDir: dir, MasterKey: testMasterKey})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

var testMasterKey = []byte("0123456789abcdef0123456789abcdef")
