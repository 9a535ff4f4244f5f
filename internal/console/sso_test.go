package console

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/phantom-perimeter/phantom/internal/config"
	"github.com/phantom-perimeter/phantom/internal/identity"
	"github.com/phantom-perimeter/phantom/internal/oidc"
	"github.com/phantom-perimeter/phantom/internal/sigv4"
	"github.com/phantom-perimeter/phantom/internal/sso/ssotest"
)

// fakeSTS issues role sessions into the fake identity service, as STS would after its
// trust policy allowed the token; refuse makes it refuse like a trust policy that does not.
type fakeSTS struct {
	ids    *fakeIdentity
	mu     sync.Mutex
	n      int
	refuse error
	roles  []string
}

func (f *fakeSTS) AssumeRoleWithWebIdentity(_ context.Context, role, session, token string, _ time.Duration) (string, string, string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.roles = append(f.roles, role)
	if f.refuse != nil {
		return "", "", "", f.refuse
	}
	if token == "" {
		return "", "", "", errors.New("no token")
	}
	f.n++
	key, tok := fmt.Sprintf("ASIASSOSESSION%06d", f.n), fmt.Sprintf("sso-token-%d", f.n)
	name := role[strings.LastIndexByte(role, '/')+1:]
	arn := "arn:aws:sts::123456789012:assumed-role/" + name + "/" + session
	f.ids.mu.Lock()
	f.ids.creds[key] = &fakeCred{token: tok, rv: identity.Resolved{
		Credential: sigv4.Credential{AccessKeyID: key, SecretAccessKey: secretOf, SessionToken: tok, Principal: arn, Expires: t0.Add(time.Hour)},
		Account:    account,
		Claims:     &identity.Claims{AccessKeyID: key, Principal: arn, Role: role, SessionName: session, IssuedAt: t0, Expires: t0.Add(time.Hour)},
	}}
	f.ids.mu.Unlock()
	return key, secretOf, tok, nil
}

type ssoEnv struct {
	*env
	op  *ssotest.OP
	sts *fakeSTS
}

// newSSOEnv is the console with the test spec plus the test provider as its sign-in
// provider; extra is appended to the spec.
func newSSOEnv(t *testing.T, extra string) *ssoEnv {
	t.Helper()
	op := ssotest.Start(t, ssotest.Options{Users: []ssotest.User{
		{Name: "alice", Password: "pw", Email: "alice@example.com", Roles: []string{"app"}},
		{Name: "dana", Password: "pw", Roles: []string{"app", "arn:aws:iam::123456789012:role/ops"}},
		{Name: "eve", Password: "pw"},
	}})
	base, err := os.ReadFile("testdata/perimeter.yaml")
	if err != nil {
		t.Fatal(err)
	}
	spec, err := config.Parse("sso.yaml", append(base, []byte(`
oidcProviders:
  - url: `+op.URL+`
    clientIds: [phantom]
    signIn: {clientId: phantom, roleClaim: phantom_roles}
`+extra)...))
	if err != nil {
		t.Fatal(err)
	}
	v, err := oidc.New(oidc.Config{Providers: spec.OIDCProviders, AllowInsecureLoopback: true})
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t)
	e.spec = spec
	s := &ssoEnv{env: e, op: op, sts: &fakeSTS{ids: e.ids}}
	e.h.cfg.STS = s.sts
	e.h.cfg.IDTokens = func() IDTokenVerifier { return v }
	return s
}

// startSSO clicks "Sign in with ..." and returns where the browser is sent.
func (s *ssoEnv) startSSO(b *browser) string {
	s.t.Helper()
	page := b.get("/signin")
	if !strings.Contains(page.body, `href="/sso/start"`) {
		s.t.Fatalf("the sign-in page offers no single sign-on:\n%s", page.body)
	}
	r := b.get("/sso/start")
	if r.status != http.StatusSeeOther || !strings.HasPrefix(r.location, s.op.URL+"/authorize?") {
		s.t.Fatalf("/sso/start: %d %s", r.status, r.location)
	}
	return r.location
}

// callback delivers the provider's redirect (an absolute URL) to the console.
func (b *browser) callback(loc string) resp {
	b.e.t.Helper()
	u, err := url.Parse(loc)
	if err != nil || u.Path != "/sso/callback" {
		b.e.t.Fatalf("the provider redirected to %s", loc)
	}
	return b.get(u.RequestURI())
}

// TestSSOSignIn: single sign-on end to end at the console (a real OIDC provider, the
// verifier, PKCE): signed in as a session of the role the token names, audited as an SSO
// ConsoleLogin, and signed out as soon as the role's sessions are revoked.
func TestSSOSignIn(t *testing.T) {
	s := newSSOEnv(t, "")
	b := s.browser()
	loc := s.op.SignIn(t, s.startSSO(b), "alice", "pw")
	r := b.callback(loc)
	if r.status != http.StatusOK || !strings.Contains(r.body, `http-equiv="refresh" content="0;url=/"`) {
		t.Fatalf("callback: %d\n%s", r.status, r.body)
	}
	home := b.get("/findings") // what role app may see
	if home.status != http.StatusOK || !strings.Contains(home.body, "arn:aws:sts::123456789012:assumed-role/app/alice") {
		t.Fatalf("after SSO, /: %d %s\n%.600s", home.status, home.location, home.body)
	}
	if got := s.sts.roles; len(got) != 1 || got[0] != appARN {
		t.Errorf("STS was asked for %v", got)
	}
	logins := s.aud.named("ConsoleLogin")
	last := logins[len(logins)-1]
	if last.ErrorCode != "" || last.AdditionalEventData["signInMethod"] != "SSO" || last.AdditionalEventData["subject"] != "alice" ||
		last.UserIdentity.ARN != "arn:aws:sts::123456789012:assumed-role/app/alice" {
		t.Errorf("ConsoleLogin event: %+v", last)
	}
	// The console session is bound to the role session: revoked, it ends.
	if _, err := s.ids.RevokeSessions(context.Background(), "app"); err != nil {
		t.Fatal(err)
	}
	if r := b.get("/findings"); r.status != http.StatusSeeOther || r.location != "/signin?ended=1" {
		t.Fatalf("after revoking the role's sessions: %d %s", r.status, r.location)
	}
}

// TestSSOLoginCSRF: a callback this browser did not start (an attacker's own code and
// state, delivered to the victim's browser to sign it in as the attacker) is refused, and
// a callback cannot be used twice.
func TestSSOLoginCSRF(t *testing.T) {
	s := newSSOEnv(t, "")
	attacker := s.browser()
	loc := s.op.SignIn(t, s.startSSO(attacker), "alice", "pw")

	victim := s.browser()
	if r := victim.callback(loc); r.status != http.StatusForbidden {
		t.Fatalf("a callback started elsewhere: %d", r.status)
	}
	if r := victim.get("/"); r.status != http.StatusSeeOther {
		t.Fatal("the victim's browser was signed in")
	}
	evs := s.aud.named("ConsoleLogin")
	if ev := evs[len(evs)-1]; ev.ErrorCode != "InvalidCsrfToken" {
		t.Errorf("audit: %+v", ev)
	}
	if len(s.sts.roles) != 0 {
		t.Error("STS was asked for a session for a forged callback")
	}
	// The attacker's own browser: once, not twice.
	if r := attacker.callback(loc); r.status != http.StatusOK {
		t.Fatalf("the real callback: %d %s", r.status, r.body)
	}
	if r := attacker.callback(loc); r.status != http.StatusForbidden {
		t.Fatalf("the callback replayed: %d", r.status)
	}
}

// TestSSORoles: a token listing several roles gets a chooser (only those roles); one
// listing none, or a session STS refuses, gets no console session.
func TestSSORoles(t *testing.T) {
	s := newSSOEnv(t, "")
	b := s.browser()
	r := b.callback(s.op.SignIn(t, s.startSSO(b), "dana", "pw"))
	if r.status != http.StatusOK || !strings.Contains(r.body, "Choose a role") || !strings.Contains(r.body, "arn:aws:iam::123456789012:role/ops") {
		t.Fatalf("chooser: %d\n%s", r.status, r.body)
	}
	choice := regexpFind(t, `name="choice" value="([^"]+)"`, r.body)
	if r := b.post("/sso/role", url.Values{"choice": {choice}, "role": {"arn:aws:iam::123456789012:role/admin"}}); r.status != http.StatusForbidden {
		t.Fatalf("a role not offered: %d", r.status)
	}
	// The refused attempt spent the choice: the person signs in again.
	r = b.callback(s.op.SignIn(t, s.startSSO(b), "dana", "pw"))
	choice = regexpFind(t, `name="choice" value="([^"]+)"`, r.body)
	if r := b.post("/sso/role", url.Values{"choice": {choice}, "role": {appARN}}); r.status != http.StatusOK {
		t.Fatalf("choosing app: %d %s", r.status, r.body)
	}
	if r := b.get("/findings"); !strings.Contains(r.body, "assumed-role/app/dana") {
		t.Fatalf("after choosing: %d %s", r.status, r.location)
	}

	none := s.browser()
	if r := none.callback(s.op.SignIn(t, s.startSSO(none), "eve", "pw")); r.status != http.StatusForbidden || !strings.Contains(r.body, "names no role") {
		t.Fatalf("no roles: %d\n%s", r.status, r.body)
	}
	s.sts.refuse = errors.New("An error occurred (AccessDenied) when calling the AssumeRoleWithWebIdentity operation: Not authorized to perform sts:AssumeRoleWithWebIdentity")
	refused := s.browser()
	if r := refused.callback(s.op.SignIn(t, s.startSSO(refused), "alice", "pw")); r.status != http.StatusForbidden {
		t.Fatalf("STS refusing: %d", r.status)
	}
	if r := refused.get("/"); r.status != http.StatusSeeOther {
		t.Fatal("signed in though STS refused the session")
	}
	evs := s.aud.named("ConsoleLogin")
	if ev := evs[len(evs)-1]; ev.ErrorCode != "AccessDenied" || !strings.Contains(ev.AdditionalEventData["reason"].(string), "STS refused") {
		t.Errorf("audit: %+v", ev)
	}
}

// TestKeySignInRefused: with console.keySignIn: refuse the page offers single sign-on
// only, and a valid key and secret are refused (audited) without being looked at.
func TestKeySignInRefused(t *testing.T) {
	s := newSSOEnv(t, "console:\n  keySignIn: refuse\n")
	b := s.browser()
	page := b.get("/signin")
	if strings.Contains(page.body, `name="secretAccessKey"`) || !strings.Contains(page.body, `href="/sso/start"`) {
		t.Fatalf("the sign-in page:\n%s", page.body)
	}
	var csrf string
	u, _ := url.Parse(s.srv.URL)
	for _, c := range b.c.Jar.Cookies(u) {
		if c.Name == signinCookie {
			csrf = c.Value
		}
	}
	r := b.post("/signin", url.Values{"csrf": {csrf}, "accessKeyId": {aliceKey}, "secretAccessKey": {secretOf}})
	if r.status != http.StatusForbidden || !strings.Contains(r.body, "switched off") {
		t.Fatalf("a key sign-in: %d\n%s", r.status, r.body)
	}
	if r := b.get("/"); r.status != http.StatusSeeOther {
		t.Fatal("signed in with a key though key sign-in is off")
	}
	evs := s.aud.named("ConsoleLogin")
	if ev := evs[len(evs)-1]; ev.ErrorCode == "" || !strings.Contains(ev.AdditionalEventData["reason"].(string), "keySignIn") {
		t.Errorf("audit: %+v", ev)
	}
	if r := b.callback(s.op.SignIn(t, s.startSSO(b), "alice", "pw")); r.status != http.StatusOK {
		t.Fatalf("SSO with key sign-in off: %d", r.status)
	}
}

func regexpFind(t *testing.T, re, s string) string {
	t.Helper()
	m := regexp.MustCompile(re).FindStringSubmatch(s)
	if m == nil {
		t.Fatalf("no %s in:\n%s", re, s)
	}
	return m[1]
}
