package console

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/phantom-perimeter/phantom/internal/keys"
	"github.com/phantom-perimeter/phantom/internal/store"
	"github.com/phantom-perimeter/phantom/internal/store/storetest"
)

// Console replicas (issue 20): two handlers, each with its own store handle on one
// database, as two console processes on two hosts would be, driven by one browser (a real
// HTTP client with a cookie jar; cookies do not care about the port, so the jar presents
// A's cookie to B as a browser behind a load balancer would). On the old code sessions
// and the limiter lived in each process's memory: B did not know A's session, a sign-out
// on B left A's copy alive, and each replica counted its own failures.

// replicaStores opens two handles on one fresh store of the backend.
type replicaStores func(t *testing.T) (a, b SessionStore, closeA func())

func sqliteReplicas(t *testing.T) (SessionStore, SessionStore, func()) {
	dir := t.TempDir()
	a, b := openSQLite(t, dir), openSQLite(t, dir)
	return a, b, func() { a.Close() }
}

// postgresReplicas opens both handles with the console's own store role (phantom store
// roles), so the test also shows its grants are enough.
func postgresReplicas(t *testing.T) (SessionStore, SessionStore, func()) {
	dsn, _ := storetest.PostgresSchema(t, "phantom_console")
	owner, err := store.OpenPostgres(t.Context(), store.PostgresConfig{DSN: dsn, MasterKey: testMasterKey, MaxConns: 2})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { owner.Close() })
	roleDSN := storetest.ComponentRole(t, owner, dsn, keys.Console)
	ring, err := keys.ForComponent(testMasterKey, keys.Console)
	if err != nil {
		t.Fatal(err)
	}
	open := func() *store.Postgres {
		s, err := store.OpenPostgres(t.Context(), store.PostgresConfig{DSN: roleDSN, Keys: ring, MaxConns: 8})
		if err != nil {
			t.Fatalf("open with the console's role: %v", err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	a, b := open(), open()
	return a, b, func() { a.Close() }
}

// replica is another console process on the same spec, identities, clock and audit
// directory as e, with its own handle st on the shared store.
func (e *env) replica(st SessionStore) *env {
	e.t.Helper()
	r := *e
	r.st = &fakeStore{SessionStore: st, findings: map[string]store.Finding{findingID: testFinding(e.t, findingID)}}
	r.serve()
	return &r
}

// replicaPair is two console replicas on one store of the backend.
func replicaPair(t *testing.T, open replicaStores) (a, b *env, closeA func()) {
	sa, sb, closeA := open(t)
	base := newEnv(t)
	return base.replica(sa), base.replica(sb), closeA
}

// on is the same browser (the same cookie jar) talking to replica r.
func (b *browser) on(r *env) *browser { return &browser{e: r, c: b.c} }

// sessionCookieOf is the console session cookie the browser holds.
func (b *browser) sessionCookieOf() string {
	u, _ := url.Parse(b.e.srv.URL)
	for _, c := range b.c.Jar.Cookies(u) {
		if c.Name == sessionCookie {
			return c.Value
		}
	}
	return ""
}

// getWith requests path with only the given session cookie (a copied or forged one).
func (b *browser) getWith(path, cookie string) resp {
	b.e.t.Helper()
	req, _ := http.NewRequest("GET", b.e.srv.URL+path, nil)
	req.AddCookie(&http.Cookie{Name: sessionCookie, Value: cookie})
	c := *b.e.srv.Client() // no jar: only this cookie
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	r, err := c.Do(req)
	if err != nil {
		b.e.t.Fatal(err)
	}
	defer r.Body.Close()
	return resp{status: r.StatusCode, location: r.Header.Get("Location")}
}

func forBackends(t *testing.T, test func(t *testing.T, open replicaStores)) {
	t.Run("sqlite", func(t *testing.T) { test(t, sqliteReplicas) })
	t.Run("postgres", func(t *testing.T) { test(t, postgresReplicas) })
}

// TestReplicasShareSessions: signed in on A, the session works on B, a CSRF token from A's
// page is good on B, a sign-out on B is refused on A at once (the same cookie, replayed),
// and an ended session is refused on both.
func TestReplicasShareSessions(t *testing.T) {
	forBackends(t, func(t *testing.T, open replicaStores) {
		a, b, _ := replicaPair(t, open)
		onA := a.signedIn(aliceKey)
		onB := onA.on(b)
		if r := onB.get("/findings/" + findingID); r.status != http.StatusOK {
			t.Fatalf("A's session on B: %d %s", r.status, r.location)
		}
		// A form rendered by A, posted to B.
		tok := onA.csrf()
		if r := onB.post("/findings/"+findingID+"/archive", url.Values{"csrf": {tok}}); r.status != http.StatusSeeOther || !strings.Contains(r.location, "done=") {
			t.Fatalf("archive on B with A's CSRF token: %d %s", r.status, r.location)
		}
		if !b.st.archived(findingID) {
			t.Fatal("B did not archive")
		}
		// A token that is not the session's is refused on either.
		if r := onB.post("/findings/"+findingID+"/unarchive", url.Values{"csrf": {tok + "x"}}); r.status != http.StatusForbidden {
			t.Fatalf("a wrong CSRF token on B: %d", r.status)
		}
		cookie := onA.sessionCookieOf()
		if cookie == "" {
			t.Fatal("no session cookie in the jar")
		}
		if r := onB.post("/signout", url.Values{"csrf": {onB.csrf()}}); r.status != http.StatusSeeOther || r.location != "/signin?out=1" {
			t.Fatalf("sign-out on B: %d %s", r.status, r.location)
		}
		for name, rep := range map[string]*env{"A": a, "B": b} {
			if r := onA.on(rep).getWith("/findings/"+findingID, cookie); r.status != http.StatusSeeOther || r.location != "/signin" {
				t.Errorf("the signed-out cookie replayed on %s: %d %s", name, r.status, r.location)
			}
		}
		if r := onA.get("/findings"); r.status != http.StatusSeeOther {
			t.Errorf("the browser on A after signing out on B: %d", r.status)
		}

		// Idle: a session unused for IdleTimeout ends on every replica, whichever served
		// it last; one used on B within it lives on A.
		onA = a.signedIn(aliceKey)
		onB = onA.on(b)
		a.clk.Advance(DefaultIdleTimeout - time.Second)
		if r := onB.get("/findings"); r.status != http.StatusOK {
			t.Fatalf("used on B within the idle timeout: %d", r.status)
		}
		a.clk.Advance(DefaultIdleTimeout - time.Second)
		if r := onA.get("/findings"); r.status != http.StatusOK {
			t.Fatalf("A after B's use kept it alive: %d", r.status)
		}
		a.clk.Advance(DefaultIdleTimeout)
		if r := onB.get("/findings"); r.status != http.StatusSeeOther {
			t.Fatalf("an idle session on B: %d", r.status)
		}
		// Absolute: the lifetime ends the session on both however busy it is.
		onA = a.signedIn(aliceKey)
		onB = onA.on(b)
		for range 5 {
			a.clk.Advance(DefaultSessionLifetime / 5)
			onB.get("/findings")
		}
		if r := onA.get("/findings"); r.status != http.StatusSeeOther {
			t.Fatalf("a session past its lifetime on A: %d", r.status)
		}
	})
}

// TestReplicaStoreReaderCannotHijack: what the store holds of a session (the hash of its
// secret, the key, the principal) is not a cookie: presented as one, every encoding of it
// is refused, and neither the cookie's secret nor the CSRF token is in the row.
func TestReplicaStoreReaderCannotHijack(t *testing.T) {
	dir := t.TempDir()
	db := openSQLite(t, dir)
	a := newEnv(t).replica(db)
	br := a.signedIn(aliceKey)
	cookie, tok := br.sessionCookieOf(), br.csrf()
	raw := rawSessionRows(t, dir)
	if len(raw) != 1 {
		t.Fatalf("%d session rows, want 1", len(raw))
	}
	for _, secret := range []string{cookie, tok} {
		if bytes.Contains(raw[0], []byte(secret)) {
			t.Fatalf("the row holds %q", secret)
		}
	}
	id := sessionID(cookie)
	if !bytes.Contains(raw[0], id[:]) {
		t.Fatal("the row is not keyed by the hash of the cookie's secret")
	}
	for _, forged := range []string{base64.RawURLEncoding.EncodeToString(id[:]), hex.EncodeToString(id[:])} {
		if r := br.getWith("/findings", forged); r.status != http.StatusSeeOther || r.location != "/signin" {
			t.Errorf("the stored id as a cookie (%q): %d %s", forged, r.status, r.location)
		}
	}
	if r := br.getWith("/findings", cookie); r.status != http.StatusOK {
		t.Fatalf("the real cookie: %d", r.status)
	}
}

// rawSessionRows reads console_sessions beneath the store, as whoever holds the database
// file would: every column of each row concatenated.
func rawSessionRows(t *testing.T, dir string) [][]byte {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, store.DBFile)+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows, err := db.QueryContext(t.Context(), `SELECT id, access_key_id, session_token, secret_hash, principal, created_at, expires_at, last_seen FROM console_sessions`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out [][]byte
	for rows.Next() {
		var id, sh []byte
		var key, token, principal string
		var c, e, l int64
		if err := rows.Scan(&id, &key, &token, &sh, &principal, &c, &e, &l); err != nil {
			t.Fatal(err)
		}
		out = append(out, bytes.Join([][]byte{id, []byte(key), []byte(token), sh, []byte(principal)}, nil))
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestReplicasShareLimiter: failed sign-ins from one address, sent at once and split
// across two replicas, are refused after exactly signinBurst of them got their
// credentials checked (the old code let each replica check its own five, and its
// check-then-count let concurrent ones through); then the right credential from that
// address is refused on both, while another address signs in.
func TestReplicasShareLimiter(t *testing.T) {
	forBackends(t, func(t *testing.T, open replicaStores) {
		a, b, _ := replicaPair(t, open)
		const attempts = 24
		var mu sync.Mutex
		codes := map[int]int{}
		var wg sync.WaitGroup
		start := make(chan struct{})
		client := a.srv.Client()
		for i := range attempts {
			rep := a
			if i%2 == 1 {
				rep = b
			}
			wg.Go(func() {
				<-start
				form := url.Values{"csrf": {"tok"}, "accessKeyId": {aliceKey}, "secretAccessKey": {"wrong"}}
				req, _ := http.NewRequest("POST", rep.srv.URL+"/signin", strings.NewReader(form.Encode()))
				req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
				req.AddCookie(&http.Cookie{Name: signinCookie, Value: "tok"})
				r, err := client.Do(req)
				if err != nil {
					t.Error(err)
					return
				}
				r.Body.Close()
				mu.Lock()
				codes[r.StatusCode]++
				mu.Unlock()
			})
		}
		close(start)
		wg.Wait()
		if codes[http.StatusUnauthorized] != signinBurst || codes[http.StatusTooManyRequests] != attempts-signinBurst {
			t.Fatalf("answers %v: want exactly %d checked (401) and %d refused (429)", codes, signinBurst, attempts-signinBurst)
		}
		for name, rep := range map[string]*env{"A": a, "B": b} {
			if r := rep.browser().signIn(aliceKey, secretOf, ""); r.status != http.StatusTooManyRequests || r.header.Get("Retry-After") == "" {
				t.Errorf("the right credential from the address on %s: %d", name, r.status)
			}
		}
		if w := b.signInFrom("192.0.2.77:40000", aliceKey, secretOf); w.Code != http.StatusSeeOther {
			t.Errorf("another address: %d", w.Code)
		}
		a.clk.Advance(signinRefill)
		if r := a.browser().signIn(aliceKey, secretOf, ""); r.status != http.StatusSeeOther {
			t.Errorf("after a refill: %d", r.status)
		}
	})
}

// TestReplicaStoreDown: a replica whose store cannot be reached signs no one in, serves
// no session and signs no one out (each a clear 503, nothing assumed), while the other
// replica goes on.
func TestReplicaStoreDown(t *testing.T) {
	forBackends(t, func(t *testing.T, open replicaStores) {
		a, b, closeA := replicaPair(t, open)
		br := b.signedIn(aliceKey)
		tok := br.csrf()
		closeA()
		onA := br.on(a)
		if r := onA.get("/findings"); r.status != http.StatusServiceUnavailable || !strings.Contains(r.body, "unavailable") {
			t.Errorf("a session on A with its store down: %d", r.status)
		}
		if r := onA.get("/decisions.json"); r.status != http.StatusServiceUnavailable {
			t.Errorf("the API on A with its store down: %d", r.status)
		}
		if r := onA.post("/signout", url.Values{"csrf": {tok}}); r.status != http.StatusServiceUnavailable {
			t.Errorf("a sign-out on A with its store down: %d %s", r.status, r.location)
		}
		if r := a.browser().signIn(bobKey, secretOf, ""); r.status != http.StatusServiceUnavailable || !strings.Contains(r.body, "cannot sign you in") {
			t.Errorf("a sign-in on A with its store down: %d", r.status)
		}
		if got := a.aud.named("ConsoleLogin"); len(got) == 0 || got[len(got)-1].ErrorCode != "ServiceUnavailable" {
			t.Errorf("the refused sign-in is not audited as such (%d ConsoleLogin events)", len(got))
		}
		if r := br.get("/findings"); r.status != http.StatusOK {
			t.Errorf("B with its store up: %d", r.status)
		}
	})
}

// TestReplicasShareSSO: a single sign-on started on A comes back from the provider to B,
// the role is chosen on A, and the session works on B; the provider's answer is good
// once, on any replica. On the old code B knew nothing of A's sign-in in progress.
func TestReplicasShareSSO(t *testing.T) {
	forBackends(t, func(t *testing.T, open replicaStores) {
		s := newSSOEnv(t, "")
		sa, sb, _ := open(t)
		a, b := s.env.replica(sa), s.env.replica(sb)
		for _, r := range []*env{a, b} {
			r.h.cfg.STS, r.h.cfg.IDTokens = s.h.cfg.STS, s.h.cfg.IDTokens
		}
		onA := a.browser()
		onB := onA.on(b)
		loc := s.op.SignIn(t, (&ssoEnv{env: a, op: s.op, sts: s.sts}).startSSO(onA), "dana", "pw")
		r := onB.callback(loc)
		if r.status != http.StatusOK || !strings.Contains(r.body, "Choose a role") {
			t.Fatalf("A's sign-in coming back to B: %d\n%.400s", r.status, r.body)
		}
		if r := onA.callback(loc); r.status != http.StatusForbidden {
			t.Fatalf("the provider's answer used again, on A: %d", r.status)
		}
		choice := regexpFind(t, `name="choice" value="([^"]+)"`, r.body)
		if r := onA.post("/sso/role", url.Values{"choice": {choice}, "role": {appARN}}); r.status != http.StatusOK {
			t.Fatalf("choosing on A what B offered: %d %s", r.status, r.body)
		}
		if r := onB.get("/findings"); r.status != http.StatusOK || !strings.Contains(r.body, "assumed-role/app/dana") {
			t.Fatalf("the SSO session on B: %d %s", r.status, r.location)
		}
		if r := onB.post("/sso/role", url.Values{"choice": {choice}, "role": {appARN}}); r.status != http.StatusForbidden {
			t.Fatalf("the choice used again, on B: %d", r.status)
		}
	})
}

// failingDeletes is a session store whose deletes fail (the store went away between a
// read and the write).
type failingDeletes struct{ SessionStore }

func (failingDeletes) DeleteConsoleSession(context.Context, [32]byte) error {
	return errors.New("connection refused")
}

// TestSignOutNotRecorded: a sign-out the store did not record is not reported as done
// (503), and the session is not dropped from the browser while every replica still
// serves it; a sign-in over an old session that cannot be ended is refused.
func TestSignOutNotRecorded(t *testing.T) {
	e := newEnv(t)
	br := e.signedIn(aliceKey)
	tok := br.csrf()
	e.st.SessionStore = failingDeletes{e.db}
	if r := br.post("/signout", url.Values{"csrf": {tok}}); r.status != http.StatusServiceUnavailable || !strings.Contains(r.body, "could not be ended") {
		t.Fatalf("a sign-out the store refused: %d %s", r.status, r.location)
	}
	if br.sessionCookieOf() == "" {
		t.Fatal("the browser dropped a session that is still live")
	}
	if got := e.aud.named("ConsoleSignOut"); len(got) != 0 {
		t.Fatalf("a sign-out that did not happen was audited: %d events", len(got))
	}
	if r := br.signIn(bobKey, secretOf, ""); r.status != http.StatusServiceUnavailable {
		t.Fatalf("a sign-in over a session that cannot be ended: %d", r.status)
	}
}

// TestEndedSessionsSwept: sessions nobody comes back to are deleted from the store by the
// next sign-in or request a minute or more later, on any replica.
func TestEndedSessionsSwept(t *testing.T) {
	dir := t.TempDir()
	base := newEnv(t)
	a, b := base.replica(openSQLite(t, dir)), base.replica(openSQLite(t, dir))
	a.signedIn(aliceKey)
	a.signedIn(carolKey)
	if n := len(rawSessionRows(t, dir)); n != 2 {
		t.Fatalf("%d session rows, want 2", n)
	}
	a.clk.Advance(DefaultIdleTimeout + sweepEvery)
	b.signedIn(bobKey)
	if n := len(rawSessionRows(t, dir)); n != 1 {
		t.Fatalf("%d session rows after the idle ones ended, want 1 (bob's)", n)
	}
}
