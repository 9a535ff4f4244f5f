package console

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/phantom-perimeter/phantom/internal/audit"
	"github.com/phantom-perimeter/phantom/internal/identity"
	"github.com/phantom-perimeter/phantom/internal/keys"
	"github.com/phantom-perimeter/phantom/internal/store"
)

// TestSignIn: only a valid, active credential of a principal the spec has signs in, and
// every refusal looks the same to the person trying; every attempt is audited.
func TestSignIn(t *testing.T) {
	tests := []struct {
		name        string
		key, secret string
		token       string
		setup       func(e *env)
		want        int
		wantReason  string
	}{
		{name: "user with the right secret", key: aliceKey, secret: secretOf, want: http.StatusSeeOther},
		{name: "role session with its token", key: appKey, secret: secretOf, token: appToken, want: http.StatusSeeOther},
		{name: "wrong secret", key: aliceKey, secret: "not-the-secret", want: http.StatusUnauthorized, wantReason: "does not match"},
		{name: "empty secret", key: aliceKey, secret: "", want: http.StatusUnauthorized, wantReason: "does not match"},
		{name: "unknown key", key: "AKIAUNKNOWNEXAMPLE01", secret: secretOf, want: http.StatusUnauthorized, wantReason: "not known"},
		{name: "inactive key", key: aliceKey, secret: secretOf, setup: func(e *env) { e.ids.set(aliceKey, identity.ErrAccessKeyInactive) },
			want: http.StatusUnauthorized, wantReason: "inactive"},
		{name: "revoked session", key: appKey, secret: secretOf, token: appToken,
			setup: func(e *env) { e.ids.RevokeSessions(context.Background(), "app") }, want: http.StatusUnauthorized, wantReason: "revoked"},
		{name: "expired session", key: appKey, secret: secretOf, token: appToken,
			setup: func(e *env) { e.ids.set(appKey, identity.ErrTokenExpired) }, want: http.StatusUnauthorized, wantReason: "expired"},
		{name: "session without its token", key: appKey, secret: secretOf, want: http.StatusUnauthorized},
		{name: "principal not in the spec", key: strayKey, secret: secretOf, want: http.StatusUnauthorized, wantReason: "not a user or role"},
		{name: "oversized secret", key: aliceKey, secret: strings.Repeat("s", 500), want: http.StatusUnauthorized},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			if tt.setup != nil {
				tt.setup(e)
			}
			r := e.browser().signIn(tt.key, tt.secret, tt.token)
			if r.status != tt.want {
				t.Fatalf("status %d, want %d\n%s", r.status, tt.want, r.body)
			}
			evs := e.aud.named("ConsoleLogin")
			if len(evs) != 1 {
				t.Fatalf("%d ConsoleLogin events, want 1", len(evs))
			}
			ev := evs[0]
			if ev.EventSource != EventSource || ev.EventType != "AwsConsoleSignIn" {
				t.Errorf("event source %q type %q", ev.EventSource, ev.EventType)
			}
			if tt.want == http.StatusSeeOther {
				if r.location != "/" || ev.ResponseElements["ConsoleLogin"] != "Success" || ev.ErrorCode != "" {
					t.Errorf("success: location %q, event %+v", r.location, ev)
				}
				return
			}
			// The same answer whatever was wrong: nothing tells a guesser which part was.
			if !strings.Contains(r.body, "The access key ID, secret access key or session token is not valid.") {
				t.Errorf("refusal does not carry the one generic message:\n%s", r.body)
			}
			if ev.ResponseElements["ConsoleLogin"] != "Failure" || ev.ErrorMessage != "Failed authentication" {
				t.Errorf("failure event %+v", ev)
			}
			if reason, _ := ev.AdditionalEventData["reason"].(string); tt.wantReason != "" && !strings.Contains(reason, tt.wantReason) {
				t.Errorf("audited reason %q, want it to mention %q", reason, tt.wantReason)
			}
			if strings.Contains(r.body, tt.secret) && tt.secret != "" {
				t.Error("the page echoes the secret")
			}
		})
	}
}

// TestSignInCookie: the session cookie is __Host-, Secure, HttpOnly, SameSite=Strict.
func TestSignInCookie(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	form := b.get("/signin")
	req, _ := http.NewRequest("POST", e.srv.URL+"/signin", strings.NewReader(url.Values{"csrf": {csrfOf(t, form.body)},
		"accessKeyId": {aliceKey}, "secretAccessKey": {secretOf}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r := b.do(req)
	var c string
	for _, v := range r.header.Values("Set-Cookie") {
		if strings.HasPrefix(v, sessionCookie+"=") {
			c = v
		}
	}
	if c == "" {
		t.Fatalf("no session cookie: %v", r.header.Values("Set-Cookie"))
	}
	for _, want := range []string{"Path=/", "Secure", "HttpOnly", "SameSite=Strict", "Max-Age=3600"} {
		if !strings.Contains(c, want) {
			t.Errorf("cookie %q lacks %s", c, want)
		}
	}
	id := strings.TrimPrefix(strings.SplitN(c, ";", 2)[0], sessionCookie+"=")
	if len(id) != 43 { // 32 bytes, base64url
		t.Errorf("session id %q is not 256 bits", id)
	}
}

// TestSignInCSRF: the sign-in form needs its double-submit token (login CSRF).
func TestSignInCSRF(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	r := b.post("/signin", url.Values{"accessKeyId": {aliceKey}, "secretAccessKey": {secretOf}})
	if r.status != http.StatusForbidden {
		t.Errorf("no token: %d, want 403", r.status)
	}
	b.get("/signin")
	r = b.post("/signin", url.Values{"csrf": {"forged"}, "accessKeyId": {aliceKey}, "secretAccessKey": {secretOf}})
	if r.status != http.StatusForbidden {
		t.Errorf("wrong token: %d, want 403", r.status)
	}
	if evs := e.aud.named("ConsoleLogin"); len(evs) != 2 || evs[0].ErrorCode != "InvalidCsrfToken" {
		t.Errorf("refusals audited as %+v", evs)
	}
}

// TestSignInRateLimit: failures are limited per source address; once limited, even the
// right secret is refused until the bucket refills.
func TestSignInRateLimit(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	for i := 0; i < signinBurst; i++ {
		if r := b.signIn(aliceKey, "wrong", ""); r.status != http.StatusUnauthorized {
			t.Fatalf("attempt %d: %d", i, r.status)
		}
	}
	r := b.signIn(aliceKey, secretOf, "")
	if r.status != http.StatusTooManyRequests || r.header.Get("Retry-After") == "" {
		t.Fatalf("after %d failures: %d, want 429 with Retry-After", signinBurst, r.status)
	}
	if evs := e.aud.named("ConsoleLogin"); evs[len(evs)-1].ErrorCode != "Throttling" {
		t.Errorf("throttled attempt audited as %+v", evs[len(evs)-1])
	}
	e.clk.Advance(signinRefill)
	if r := b.signIn(aliceKey, secretOf, ""); r.status != http.StatusSeeOther {
		t.Errorf("after a refill: %d, want 303", r.status)
	}
}

// TestAnonymousDenied: every page and action sends an anonymous caller to sign in.
func TestAnonymousDenied(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	for _, p := range []string{"/", "/decisions", "/findings", "/findings/" + findingID, "/simulate"} {
		if r := b.get(p); r.status != http.StatusSeeOther || r.location != "/signin" {
			t.Errorf("GET %s: %d %q, want 303 to /signin", p, r.status, r.location)
		}
	}
	for _, p := range []string{"/findings/" + findingID + "/archive", "/findings/" + findingID + "/unarchive",
		"/findings/" + findingID + "/revoke", "/simulate", "/signout"} {
		if r := b.post(p, url.Values{"csrf": {"x"}}); r.status != http.StatusSeeOther || r.location != "/signin" {
			t.Errorf("POST %s: %d %q, want 303 to /signin", p, r.status, r.location)
		}
	}
	if r := b.get("/decisions.json"); r.status != http.StatusUnauthorized {
		t.Errorf("GET /decisions.json: %d, want 401", r.status)
	}
	// A made-up session id is no session.
	b.c.Jar.SetCookies(mustURL(e.srv.URL), []*http.Cookie{{Name: sessionCookie, Value: newToken(32), Path: "/"}})
	if r := b.get("/"); r.status != http.StatusSeeOther {
		t.Errorf("forged session: %d, want 303", r.status)
	}
	if e.st.archived(findingID) || len(e.ids.revokedRoles()) > 0 {
		t.Error("an anonymous POST had an effect")
	}
}

func mustURL(s string) *url.URL {
	u, err := url.Parse(s)
	if err != nil {
		panic(err)
	}
	return u
}

// TestCSRF: a signed-in POST without the session's token, or with another, is refused
// with 403 and has no effect.
func TestCSRF(t *testing.T) {
	e := newEnv(t)
	alice := e.signedIn(aliceKey)
	other := e.signedIn(aliceKey) // another session of the same user: another token
	foreign := other.csrf()
	for _, tt := range []struct {
		name string
		form url.Values
	}{
		{"missing", url.Values{}},
		{"empty", url.Values{"csrf": {""}}},
		{"another session's", url.Values{"csrf": {foreign}}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			for _, p := range []string{"/findings/" + findingID + "/archive", "/findings/" + findingID + "/revoke", "/simulate", "/signout"} {
				if r := alice.post(p, tt.form); r.status != http.StatusForbidden {
					t.Errorf("POST %s: %d, want 403", p, r.status)
				}
			}
		})
	}
	// A cross-site Origin is refused even with the right token.
	req, _ := http.NewRequest("POST", e.srv.URL+"/findings/"+findingID+"/archive", strings.NewReader(url.Values{"csrf": {alice.csrf()}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", "https://evil.example")
	if r := alice.do(req); r.status != http.StatusForbidden {
		t.Errorf("cross-origin POST: %d, want 403", r.status)
	}
	if e.st.archived(findingID) || len(e.ids.revokedRoles()) > 0 {
		t.Error("a refused POST had an effect")
	}
	if r := alice.get("/"); r.status != http.StatusOK {
		t.Errorf("the refused sign-out signed out: %d", r.status)
	}
	if n := len(e.aud.named("ArchiveFindings")); n < 4 {
		t.Errorf("%d refused archives audited, want 4", n)
	}
}

// TestAuthorization: each page and action is an IAM decision; without an allow (or with
// an explicit deny) it is refused with 403, audited, and has no effect.
func TestAuthorization(t *testing.T) {
	e := newEnv(t)
	bob := e.signedIn(bobKey)
	for _, p := range []string{"/", "/decisions", "/findings", "/findings/" + findingID, "/simulate"} {
		r := bob.get(p)
		if r.status != http.StatusForbidden || !strings.Contains(r.body, "is not authorized to perform") {
			t.Errorf("bob GET %s: %d, want 403", p, r.status)
		}
	}
	if r := bob.get("/decisions.json"); r.status != http.StatusForbidden {
		t.Errorf("bob GET /decisions.json: %d, want 403", r.status)
	}
	tok := bob.csrf()
	for _, p := range []string{"/findings/" + findingID + "/archive", "/findings/" + findingID + "/unarchive", "/findings/" + findingID + "/revoke"} {
		if r := bob.post(p, url.Values{"csrf": {tok}}); r.status != http.StatusForbidden {
			t.Errorf("bob POST %s: %d, want 403", p, r.status)
		}
	}
	if r := bob.post("/simulate", url.Values{"csrf": {tok}, "principal": {bobARN}, "action": {"execute-api:Invoke"}, "resource": {"*"}}); r.status != http.StatusForbidden {
		t.Errorf("bob simulate: %d, want 403", r.status)
	}

	carol := e.signedIn(carolKey)
	if r := carol.get("/findings"); r.status != http.StatusOK {
		t.Errorf("carol lists findings: %d, want 200", r.status)
	}
	if r := carol.get("/"); r.status != http.StatusForbidden {
		t.Errorf("carol's picture: %d, want 403", r.status)
	}
	tok = carol.csrf()
	r := carol.post("/findings/"+findingID+"/archive", url.Values{"csrf": {tok}})
	if r.status != http.StatusForbidden || !strings.Contains(r.body, "with an explicit deny") {
		t.Errorf("carol archives despite the explicit deny: %d\n%s", r.status, r.body)
	}
	if r := carol.post("/findings/"+findingID+"/revoke", url.Values{"csrf": {tok}}); r.status != http.StatusForbidden ||
		!strings.Contains(r.body, "iam:PutRolePolicy on resource: "+appARN) {
		t.Errorf("carol revokes: %d\n%s", r.status, r.body)
	}
	if r := carol.post("/simulate", url.Values{"csrf": {tok}, "principal": {aliceARN}, "action": {"execute-api:Invoke"}}); r.status != http.StatusForbidden {
		t.Errorf("carol simulates alice: %d, want 403", r.status)
	}
	if r := carol.post("/simulate", url.Values{"csrf": {tok}, "principal": {appARN}, "action": {"execute-api:Invoke"}}); r.status != http.StatusOK {
		t.Errorf("carol simulates app: %d, want 200", r.status)
	}
	if page := carol.get("/simulate").body; strings.Contains(page, aliceARN) || !strings.Contains(page, appARN) {
		t.Error("the simulator offers carol principals she may not simulate")
	}
	if e.st.archived(findingID) || len(e.ids.revokedRoles()) > 0 {
		t.Error("a denied action had an effect")
	}
	denials := 0
	for _, ev := range e.aud.evs {
		if ev.ErrorCode == "AccessDenied" {
			denials++
			if ev.UserIdentity.ARN == "" || ev.AdditionalEventData["action"] == nil {
				t.Errorf("denial audited without who or what: %+v", ev)
			}
		}
	}
	if denials < 13 {
		t.Errorf("%d denials audited, want at least 13", denials)
	}
}

// TestArchiveAndRevoke: one POST each; the effect reaches the store and the identity
// service, after the audit event.
func TestArchiveAndRevoke(t *testing.T) {
	e := newEnv(t)
	alice := e.signedIn(aliceKey)
	app := e.signedIn(appKey) // a console session of the role that is about to be revoked
	page := alice.get("/findings/" + findingID)
	for _, want := range []string{"Credentials of node service-a-1", "203.0.113.9", "/decisions?eventId=00000000-0000-4000-8000-000000000001",
		`id="archive"`, `id="revoke"`, "Revoke sessions of role app"} {
		if !strings.Contains(page.body, want) {
			t.Errorf("finding page lacks %q", want)
		}
	}
	tok := csrfOf(t, page.body)
	r := alice.post("/findings/"+findingID+"/archive", url.Values{"csrf": {tok}})
	if r.status != http.StatusSeeOther || r.location != "/findings/"+findingID+"?done=archived" || !e.st.archived(findingID) {
		t.Fatalf("archive: %d %q archived=%v", r.status, r.location, e.st.archived(findingID))
	}
	if evs := e.aud.named("ArchiveFindings"); len(evs) != 1 || evs[0].ErrorCode != "" || evs[0].UserIdentity.ARN != aliceARN {
		t.Errorf("archive audited as %+v", evs)
	}
	if !strings.Contains(alice.get("/findings/"+findingID+"?done=archived").body, `id="unarchive"`) {
		t.Error("an archived finding offers no unarchive")
	}
	if r := alice.post("/findings/"+findingID+"/unarchive", url.Values{"csrf": {tok}}); r.status != http.StatusSeeOther || e.st.archived(findingID) {
		t.Errorf("unarchive: %d archived=%v", r.status, e.st.archived(findingID))
	}

	if r := app.get("/findings"); r.status != http.StatusOK {
		t.Fatalf("the app session reads findings: %d", r.status)
	}
	r = alice.post("/findings/"+findingID+"/revoke", url.Values{"csrf": {tok}})
	if r.status != http.StatusSeeOther || r.location != "/findings/"+findingID+"?done=revoked" {
		t.Fatalf("revoke: %d %q", r.status, r.location)
	}
	if got := e.ids.revokedRoles(); !slices.Equal(got, []string{"app"}) {
		t.Errorf("revoked %v, want [app]", got)
	}
	if evs := e.aud.named("RevokeSessions"); len(evs) != 1 || evs[0].RequestParameters["roleName"] != "app" {
		t.Errorf("revoke audited as %+v", evs)
	}
	// The revoked role's console session ends at its next request.
	if r := app.get("/findings"); r.status != http.StatusSeeOther || r.location != "/signin?ended=1" {
		t.Errorf("revoked session: %d %q, want 303 to /signin?ended=1", r.status, r.location)
	}
	if r := app.get("/findings"); r.status != http.StatusSeeOther || r.location != "/signin" {
		t.Errorf("after the end: %d %q", r.status, r.location)
	}
}

// TestActionNotAudited: an action that cannot be audited does not happen.
func TestActionNotAudited(t *testing.T) {
	e := newEnv(t)
	alice := e.signedIn(aliceKey)
	tok := alice.csrf()
	e.aud.mu.Lock()
	e.aud.err = errors.New("disk full")
	e.aud.mu.Unlock()
	if r := alice.post("/findings/"+findingID+"/archive", url.Values{"csrf": {tok}}); r.status != http.StatusInternalServerError || e.st.archived(findingID) {
		t.Errorf("unaudited archive: %d archived=%v", r.status, e.st.archived(findingID))
	}
	if r := alice.post("/findings/"+findingID+"/revoke", url.Values{"csrf": {tok}}); r.status != http.StatusInternalServerError || len(e.ids.revokedRoles()) > 0 {
		t.Errorf("unaudited revoke: %d revoked=%v", r.status, e.ids.revokedRoles())
	}
	if r := e.browser().signIn(aliceKey, secretOf, ""); r.status != http.StatusInternalServerError {
		t.Errorf("unaudited sign-in: %d, want 500", r.status)
	}
}

// TestSessionRecheck: the credential is resolved on every request; a disabled key or a
// principal gone from the spec ends the console session; stale state answers 503.
func TestSessionRecheck(t *testing.T) {
	e := newEnv(t)
	alice := e.signedIn(aliceKey)
	if r := alice.get("/"); r.status != http.StatusOK {
		t.Fatalf("signed in: %d", r.status)
	}
	e.ids.mu.Lock()
	e.ids.fail = identity.ErrStale
	e.ids.mu.Unlock()
	if r := alice.get("/"); r.status != http.StatusServiceUnavailable {
		t.Errorf("store unreachable: %d, want 503", r.status)
	}
	e.ids.mu.Lock()
	e.ids.fail = nil
	e.ids.mu.Unlock()
	e.ids.set(aliceKey, identity.ErrAccessKeyInactive)
	if r := alice.get("/"); r.status != http.StatusSeeOther || r.location != "/signin?ended=1" {
		t.Errorf("disabled key: %d %q", r.status, r.location)
	}
	e.ids.set(aliceKey, nil)
	if r := alice.get("/"); r.status != http.StatusSeeOther || r.location != "/signin" {
		t.Errorf("re-enabling the key revived the ended session: %d", r.status)
	}
	if evs := e.aud.named("ConsoleSignOut"); len(evs) != 1 || !strings.Contains(evs[0].AdditionalEventData["reason"].(string), "inactive") {
		t.Errorf("ended session audited as %+v", evs)
	}

	// The secret changed under the same key id (re-created store): the session ends.
	alice = e.signedIn(aliceKey)
	e.ids.mu.Lock()
	e.ids.creds[aliceKey].rv.Credential.SecretAccessKey = "another-secret"
	e.ids.mu.Unlock()
	if r := alice.get("/"); r.status != http.StatusSeeOther {
		t.Errorf("secret changed: %d, want 303", r.status)
	}
}

// TestSessionTimeouts: idle timeout, absolute lifetime, and a session's credential expiry.
func TestSessionTimeouts(t *testing.T) {
	e := newEnv(t)
	alice := e.signedIn(aliceKey)
	e.clk.Advance(DefaultIdleTimeout - time.Second)
	if r := alice.get("/"); r.status != http.StatusOK {
		t.Fatalf("before the idle timeout: %d", r.status)
	}
	e.clk.Advance(DefaultIdleTimeout)
	if r := alice.get("/"); r.status != http.StatusSeeOther {
		t.Errorf("after the idle timeout: %d, want 303", r.status)
	}

	alice = e.signedIn(aliceKey)
	for i := 0; i < 5; i++ {
		e.clk.Advance(14 * time.Minute)
		alice.get("/")
	}
	if r := alice.get("/"); r.status != http.StatusSeeOther {
		t.Errorf("past the 1 h lifetime: %d, want 303", r.status)
	}

	e.clk.t = t0.Add(50 * time.Minute) // the app session expires at t0+1h
	app := e.signedIn(appKey)
	e.clk.Advance(11 * time.Minute)
	if r := app.get("/findings"); r.status != http.StatusSeeOther {
		t.Errorf("past the credential's expiry: %d, want 303", r.status)
	}
}

// TestSignOut ends the session and audits it.
func TestSignOut(t *testing.T) {
	e := newEnv(t)
	alice := e.signedIn(aliceKey)
	r := alice.post("/signout", url.Values{"csrf": {alice.csrf()}})
	if r.status != http.StatusSeeOther || r.location != "/signin?out=1" {
		t.Fatalf("sign-out: %d %q", r.status, r.location)
	}
	if r := alice.get("/"); r.status != http.StatusSeeOther {
		t.Errorf("after sign-out: %d, want 303", r.status)
	}
	if len(e.aud.named("ConsoleSignOut")) != 1 {
		t.Error("sign-out not audited")
	}
}

var nonceRe = regexp.MustCompile(`<script nonce="([^"]+)">`)

// TestHeaders: HTTPS only, a strict CSP whose nonce is the inline script's, no framing,
// no caching, no referrer.
func TestHeaders(t *testing.T) {
	e := newEnv(t)
	rec := httptest.NewRecorder()
	e.h.ServeHTTP(rec, httptest.NewRequest("GET", "http://console.example/signin", nil))
	if rec.Code != http.StatusForbidden {
		t.Errorf("plain HTTP: %d, want 403", rec.Code)
	}
	alice := e.signedIn(aliceKey)
	r := alice.get("/decisions")
	for k, want := range map[string]string{
		"X-Frame-Options":        "DENY",
		"Referrer-Policy":        "no-referrer",
		"Cache-Control":          "no-store",
		"X-Content-Type-Options": "nosniff",
	} {
		if got := r.header.Get(k); got != want {
			t.Errorf("%s: %q, want %q", k, got, want)
		}
	}
	csp := r.header.Get("Content-Security-Policy")
	m := nonceRe.FindStringSubmatch(r.body)
	if m == nil {
		t.Fatal("the decisions page has no nonced script")
	}
	for _, want := range []string{"default-src 'none'", "script-src 'nonce-" + m[1] + "'", "frame-ancestors 'none'", "form-action 'self'"} {
		if !strings.Contains(csp, want) {
			t.Errorf("CSP %q lacks %q", csp, want)
		}
	}
	if strings.Contains(csp, "unsafe-inline") || strings.Contains(r.body, " style=\"") || strings.Contains(r.body, "onclick") {
		t.Error("inline styles or handlers outside the nonce")
	}
	if r2 := alice.get("/decisions"); nonceRe.FindStringSubmatch(r2.body)[1] == m[1] {
		t.Error("the nonce is the same on two responses")
	}
}

// TestEscaping: values from the spec, findings and filters are escaped.
func TestEscaping(t *testing.T) {
	e := newEnv(t)
	f := testFinding(t, "evil")
	f.Document = []byte(strings.Replace(string(f.Document), "Credentials of node service-a-1 used from another address", `<script>alert(1)</script>`, 1))
	e.st.findings["evil"] = f
	alice := e.signedIn(aliceKey)
	for _, p := range []string{"/findings/evil", "/findings", "/decisions?principal=%3Cscript%3Ealert(1)%3C%2Fscript%3E"} {
		if body := alice.get(p).body; strings.Contains(body, "<script>alert(1)") {
			t.Errorf("%s echoes markup unescaped", p)
		}
	}
}

// writeChain appends events to an audit chain of dir.
func writeChain(t *testing.T, dir, chain string, evs ...*audit.Event) {
	t.Helper()
	signer, err := keys.DeriveEd25519(randomKey(t), keys.AuditLegacy)
	if err != nil {
		t.Fatal(err)
	}
	l, err := audit.Open(audit.Config{Dir: dir, Chain: chain, Signer: signer})
	if err != nil {
		t.Fatal(err)
	}
	for _, ev := range evs {
		if err := l.Record(context.Background(), ev); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
}

func gatewayEvent(i int, principal, errorCode string) *audit.Event {
	return &audit.Event{
		EventTime: t0.Add(time.Duration(i) * time.Second), EventSource: "execute-api.amazonaws.com", EventName: "Invoke",
		UserIdentity:      audit.UserIdentity{Type: "IAMUser", ARN: principal},
		SourceIPAddress:   "10.0.1.5",
		RequestParameters: map[string]any{"apiId": "a1b2c3d4e5", "httpMethod": "GET", "stage": "prod", "path": "/orders"},
		ErrorCode:         errorCode, VPCEndpointID: endpoint,
		EventID: "00000000-0000-4000-8000-00000000000" + string(rune('0'+i)),
	}
}

// TestDecisions: the latest events of every chain, newest first, filtered; the JSON the
// page polls.
func TestDecisions(t *testing.T) {
	e := newEnv(t)
	writeChain(t, e.dir, "gateway",
		gatewayEvent(1, aliceARN, ""),
		gatewayEvent(2, bobARN, "AccessDenied"),
		gatewayEvent(3, aliceARN, ""))
	writeChain(t, e.dir, "sts", &audit.Event{EventTime: t0.Add(4 * time.Second), EventSource: "sts.amazonaws.com", EventName: "AssumeRole",
		UserIdentity: audit.UserIdentity{ARN: aliceARN}, RequestParameters: map[string]any{"roleArn": appARN}, EventID: "sts-event"})
	alice := e.signedIn(aliceKey)

	page := alice.get("/decisions")
	if page.status != http.StatusOK {
		t.Fatalf("decisions: %d", page.status)
	}
	order := []string{"sts-event", "00000000-0000-4000-8000-000000000003", "00000000-0000-4000-8000-000000000002", "00000000-0000-4000-8000-000000000001"}
	last := -1
	for _, id := range order {
		i := strings.Index(page.body, id)
		if i < 0 || i < last {
			t.Fatalf("event %s missing or out of order (newest first)", id)
		}
		last = i
	}
	page = alice.get("/decisions?decision=denied")
	if !strings.Contains(page.body, "00000000-0000-4000-8000-000000000002") || strings.Contains(page.body, "00000000-0000-4000-8000-000000000001") {
		t.Error("decision=denied does not select the denial alone")
	}
	if r := alice.get("/decisions?decision=maybe"); r.status != http.StatusBadRequest {
		t.Errorf("bad filter: %d, want 400", r.status)
	}

	var got struct {
		Events []decisionRow `json:"events"`
	}
	r := alice.get("/decisions.json?principal=alice&source=execute-api.amazonaws.com")
	if err := json.Unmarshal([]byte(r.body), &got); err != nil {
		t.Fatal(err, r.body)
	}
	if len(got.Events) != 2 || got.Events[0].EventID != "00000000-0000-4000-8000-000000000003" || got.Events[0].Target != "GET prod/orders" {
		t.Errorf("JSON: %+v", got.Events)
	}
	// New events appear on the next poll.
	e.clk.Advance(time.Second)
	writeChain(t, e.dir, "gateway", gatewayEvent(5, aliceARN, ""))
	r = alice.get("/decisions.json?principal=alice&source=execute-api.amazonaws.com")
	json.Unmarshal([]byte(r.body), &got)
	if len(got.Events) != 3 {
		t.Errorf("after a new event: %d events, want 3", len(got.Events))
	}
}

// TestOverview: the picture holds the spec's principals, endpoint, API and backend, and
// the arrows are decisions.
func TestOverview(t *testing.T) {
	e := newEnv(t)
	alice := e.signedIn(aliceKey)
	r := alice.get("/")
	if r.status != http.StatusOK {
		t.Fatalf("overview: %d", r.status)
	}
	for _, want := range []string{"<svg", "user alice", "role app", endpoint, "in tcp 8443 from 127.0.0.1/32,", "10.0.0.0/16",
		"orders (a1b2c3d4e5)", "http://127.0.0.1:9000", "egress proxy", "*.example.com", "node service-a-1"} {
		if !strings.Contains(r.body, want) {
			t.Errorf("the picture lacks %q", want)
		}
	}
	p := picturesOf(e.spec, t0)
	// alice and app are admitted by the endpoint policy; bob and carol are not.
	if !slices.Equal(p.Unreached, []string{carolARN, bobARN}) {
		t.Errorf("unreached %v, want carol and bob", p.Unreached)
	}
	allows := 0
	for _, ed := range p.Access.Edges {
		if ed.Class == "allow" {
			allows++
		}
	}
	if allows != 2 {
		t.Errorf("%d allowed arrows, want 2 (alice, app)", allows)
	}
}

// TestEvaluate: the simulator decides as the gateway would.
func TestEvaluate(t *testing.T) {
	spec := loadSpec(t)
	orders := apiARN + "/prod/GET/orders"
	tests := []struct {
		name        string
		sim         Simulation
		want        string
		wantMatched string
	}{
		{"alice through the endpoint", Simulation{Principal: aliceARN, Action: "execute-api:Invoke", Resource: orders, Endpoint: endpoint}, "Allow", "OrdersAccess"},
		{"alice directly: the resource policy's deny", Simulation{Principal: aliceARN, Action: "execute-api:Invoke", Resource: orders}, "ExplicitDeny", "OnlyThroughTheEndpoint"},
		{"bob: the endpoint policy does not admit him", Simulation{Principal: bobARN, Action: "execute-api:Invoke", Resource: orders, Endpoint: endpoint}, "ImplicitDeny", ""},
		{"alice POST: no identity allow", Simulation{Principal: aliceARN, Action: "execute-api:Invoke", Resource: apiARN + "/prod/POST/orders", Endpoint: endpoint}, "ImplicitDeny", ""},
		{"a context key overrides: another endpoint", Simulation{Principal: aliceARN, Action: "execute-api:Invoke", Resource: orders, Endpoint: endpoint,
			Context: map[string][]string{"AWS:SourceVpce": {"vpce-other"}}}, "ExplicitDeny", "OnlyThroughTheEndpoint"},
		// A trust policy naming the user allows without an identity policy (same account).
		{"trust policy for AssumeRole", Simulation{Principal: aliceARN, Action: "sts:AssumeRole", Resource: appARN}, "Allow", "trust policy of role app"},
		{"bob may not assume app", Simulation{Principal: bobARN, Action: "sts:AssumeRole", Resource: appARN}, "ImplicitDeny", ""},
		{"carol archives: explicit deny", Simulation{Principal: carolARN, Action: "guardduty:ArchiveFindings", Resource: "*"}, "ExplicitDeny", "1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := evaluate(spec, tt.sim, t0)
			if err != nil {
				t.Fatal(err)
			}
			if res.Effect != tt.want {
				t.Fatalf("%s, want %s (%s)", res.Effect, tt.want, res.Reason)
			}
			if tt.wantMatched != "" && !slices.ContainsFunc(res.Matched, func(m kv) bool {
				return strings.Contains(m.K, tt.wantMatched) || m.V == tt.wantMatched
			}) {
				t.Errorf("matched %v, want %q among them", res.Matched, tt.wantMatched)
			}
		})
	}
	if _, err := evaluate(spec, Simulation{Principal: "arn:aws:iam::123456789012:user/nobody", Action: "s3:GetObject", Resource: "*"}, t0); err == nil {
		t.Error("a principal outside the spec was simulated")
	}
}

// TestSimulatePage: the form's answer names the decision and the statement.
func TestSimulatePage(t *testing.T) {
	e := newEnv(t)
	alice := e.signedIn(aliceKey)
	form := alice.get("/simulate")
	if form.status != http.StatusOK || !strings.Contains(form.body, `value="`+bobARN+`"`) {
		t.Fatalf("simulator form: %d", form.status)
	}
	r := alice.post("/simulate", url.Values{"csrf": {csrfOf(t, form.body)}, "principal": {aliceARN}, "action": {"execute-api:Invoke"},
		"resource": {apiARN + "/prod/GET/orders"}, "endpoint": {""}, "context": {"aws:SourceIp=10.0.1.5\n"}})
	if r.status != http.StatusOK || !strings.Contains(r.body, `id="effect">ExplicitDeny<`) || !strings.Contains(r.body, "OnlyThroughTheEndpoint") {
		t.Errorf("simulation: %d\n%s", r.status, r.body)
	}
	if evs := e.aud.named("SimulatePrincipalPolicy"); len(evs) != 1 || evs[0].ResponseElements["evalDecision"] != "ExplicitDeny" {
		t.Errorf("simulation audited as %+v", evs)
	}
	r = alice.post("/simulate", url.Values{"csrf": {csrfOf(t, form.body)}, "principal": {aliceARN}, "action": {"not an action"}})
	if r.status != http.StatusBadRequest || !strings.Contains(r.body, "service:Action") {
		t.Errorf("bad action: %d", r.status)
	}
}

// TestParseFilter: the decisions filter's bounds.
func TestParseFilter(t *testing.T) {
	tests := []struct {
		name    string
		q       string
		wantErr bool
	}{
		{"empty", "", false},
		{"everything", "principal=alice&api=a1b2c3d4e5&decision=denied&errorCode=AccessDenied&endpoint=vpce-1&source=execute-api.amazonaws.com&from=2026-11-29T03:00&to=2026-11-29T04:00:00Z&limit=500", false},
		{"bad decision", "decision=maybe", true},
		{"bad time", "from=yesterday", true},
		{"to before from", "from=2026-11-29T04:00&to=2026-11-29T03:00", true},
		{"limit too large", "limit=501", true},
		{"limit zero", "limit=0", true},
		{"control character", "principal=a%00b", true},
		{"too long", "principal=" + strings.Repeat("a", 300), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q, _ := url.ParseQuery(tt.q)
			f, err := ParseFilter(q)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err %v, wantErr %v", err, tt.wantErr)
			}
			if err == nil {
				// The query round-trips.
				q2, _ := url.ParseQuery(f.Query())
				if f2, err := ParseFilter(q2); err != nil || f2 != f {
					t.Errorf("round trip: %+v -> %+v (%v)", f, f2, err)
				}
			}
		})
	}
}

// TestParseContextKeys: key=value lines, multivalued keys, bounds.
func TestParseContextKeys(t *testing.T) {
	m, err := ParseContextKeys("# comment\naws:SourceIp = 10.0.0.1\r\n\naws:PrincipalTag/cost center=42\naws:sourceip=10.0.0.2\n")
	if err != nil {
		t.Fatal(err)
	}
	if got := m["aws:SourceIp"]; !slices.Equal(got, []string{"10.0.0.1", "10.0.0.2"}) || m["aws:PrincipalTag/cost center"][0] != "42" {
		t.Errorf("parsed %v", m)
	}
	for _, bad := range []string{"novalue", "=x", "no-colon=x", "aws:Key=\x01", strings.Repeat("aws:k=v\n", 65)} {
		if _, err := ParseContextKeys(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

var _ = store.ErrNotFound
