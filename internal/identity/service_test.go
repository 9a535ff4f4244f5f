package identity

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"

	"github.com/phantom-perimeter/phantom/internal/sigv4"
	"github.com/phantom-perimeter/phantom/internal/store"
)

const testAccount = "123456789012"

// newTestService returns a loaded service over st with one sealing key.
func newTestService(t testing.TB, st *fakeStore, c *clock) *Service {
	t.Helper()
	s, err := New(Config{Account: testAccount, Now: c.Now, Logger: slog.New(slog.DiscardHandler)}, st.deps())
	if err != nil {
		t.Fatal(err)
	}
	if len(st.sealing) == 0 {
		if _, err := s.RotateSealingKey(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	return s
}

// sessionFor issues a 1h session of role (a role name).
func sessionFor(t testing.TB, s *Service, role string) (Claims, string) {
	t.Helper()
	c, tok, err := s.NewSession(Claims{
		Principal: "arn:aws:sts::" + testAccount + ":assumed-role/" + role + "/sess",
		Role:      "arn:aws:iam::" + testAccount + ":role/team/" + role,
		Tags:      []Tag{{Key: "team", Value: "payments"}},
	}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return c, tok
}

func TestNewValidates(t *testing.T) {
	st := newFakeStore()
	for _, tc := range []struct {
		name string
		cfg  Config
		deps Deps
	}{
		{"account of 11 digits", Config{Account: "12345678901"}, st.deps()},
		{"account with a letter", Config{Account: "12345678901a"}, st.deps()},
		{"negative session duration", Config{Account: testAccount, MaxSessionDuration: -time.Second}, st.deps()},
		{"negative refresh interval", Config{Account: testAccount, RefreshInterval: -time.Second}, st.deps()},
		{"no stores", Config{Account: testAccount}, Deps{}},
		{"no revocation store", Config{Account: testAccount}, Deps{AccessKeys: st, SealingKeys: st}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := New(tc.cfg, tc.deps); err == nil {
				t.Fatal("accepted")
			}
		})
	}
	if _, err := New(Config{Account: testAccount}, Deps{AccessKeys: st, SealingKeys: st, Revocations: st}); err != nil {
		t.Errorf("change feed is optional: %v", err)
	}
}

func TestNotLoadedFailsClosed(t *testing.T) {
	s, err := New(Config{Account: testAccount}, newFakeStore().deps())
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.LookupCredential(context.Background(), "AKIAIOSFODNN7EXAMPLE", "")
	if !errors.Is(err, ErrNotLoaded) {
		t.Fatalf("before Refresh: %v, want ErrNotLoaded", err)
	}
	for _, sentinel := range []error{sigv4.ErrUnknownAccessKey, sigv4.ErrInvalidToken, sigv4.ErrExpiredToken} {
		if errors.Is(err, sentinel) {
			t.Errorf("ErrNotLoaded matches %v: the caller would be blamed for our state", sentinel)
		}
	}
}

func TestResolveLongTermKey(t *testing.T) {
	ctx := context.Background()
	c := newClock(t0)
	st := newFakeStore()
	s := newTestService(t, st, c)
	k, err := s.CreateAccessKey(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if !ValidAccessKeyID(k.ID, PrefixLongTerm) || len(k.Secret) != 40 || k.Status != StatusActive {
		t.Fatalf("created %+v", k.ID)
	}
	r, err := s.Resolve(ctx, k.ID, "")
	if err != nil {
		t.Fatal(err)
	}
	want := sigv4.Credential{AccessKeyID: k.ID, SecretAccessKey: k.Secret, Principal: "arn:aws:iam::123456789012:user/alice"}
	if r.Credential != want || r.User != "alice" || r.Claims != nil {
		t.Fatalf("resolved %+v, want %+v for alice", r.Credential.Principal, want.Principal)
	}

	for _, tc := range []struct {
		name   string
		id     string
		token  string
		want   error
		sentry error
	}{
		{"unknown key", "AKIAIOSFODNN7EXAMPLE", "", ErrAccessKeyUnknown, sigv4.ErrUnknownAccessKey},
		{"malformed id", "AKIA-not-an-id", "", ErrAccessKeyUnknown, sigv4.ErrUnknownAccessKey},
		{"other prefix (AIDA is a user id, not a key)", "AIDAIOSFODNN7EXAMPLE", "", ErrAccessKeyUnknown, sigv4.ErrUnknownAccessKey},
		{"long-term key with a session token", k.ID, "x", ErrTokenUnexpected, sigv4.ErrInvalidToken},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := s.LookupCredential(ctx, tc.id, tc.token)
			if !errors.Is(err, tc.want) || !errors.Is(err, tc.sentry) {
				t.Fatalf("%v, want %v (matching %v)", err, tc.want, tc.sentry)
			}
		})
	}

	listed, err := s.ListAccessKeys(ctx, "alice")
	if err != nil || len(listed) != 1 || listed[0].ID != k.ID || listed[0].Secret != "" {
		t.Fatalf("ListAccessKeys = %d keys, %v; want alice's one key without its secret", len(listed), err)
	}

	if err := s.UpdateAccessKeyStatus(ctx, k.ID, StatusInactive); err != nil {
		t.Fatal(err)
	}
	if _, err := s.LookupCredential(ctx, k.ID, ""); !errors.Is(err, ErrAccessKeyInactive) || !errors.Is(err, sigv4.ErrUnknownAccessKey) {
		t.Fatalf("inactive key, at once: %v", err)
	}
	if err := s.UpdateAccessKeyStatus(ctx, k.ID, "inactive"); err == nil {
		t.Error("lower-case status accepted")
	}
	if err := s.UpdateAccessKeyStatus(ctx, k.ID, StatusActive); err != nil {
		t.Fatal(err)
	}
	if _, err := s.LookupCredential(ctx, k.ID, ""); err != nil {
		t.Fatalf("re-activated: %v", err)
	}
	if err := s.DeleteAccessKey(ctx, k.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.LookupCredential(ctx, k.ID, ""); !errors.Is(err, ErrAccessKeyUnknown) {
		t.Fatalf("deleted: %v", err)
	}
	if _, err := s.CreateAccessKey(ctx, "bad/name"); err == nil {
		t.Error("user name with a slash accepted")
	}
}

// TestStoreStatusFailsClosed: a status the store spells in any other way is not Active.
func TestStoreStatusFailsClosed(t *testing.T) {
	ctx := context.Background()
	c := newClock(t0)
	st := newFakeStore()
	st.keys["AKIAIOSFODNN7EXAMPLE"] = AccessKey{ID: "AKIAIOSFODNN7EXAMPLE", User: "bob", Secret: strings.Repeat("s", 40), Status: "active"}
	st.keys["AKIAAAAAAAAAAAAAAAAA"] = AccessKey{ID: "AKIAAAAAAAAAAAAAAAAA", User: "bob", Secret: "short", Status: StatusActive}
	s := newTestService(t, st, c)
	if _, err := s.LookupCredential(ctx, "AKIAIOSFODNN7EXAMPLE", ""); !errors.Is(err, ErrAccessKeyInactive) {
		t.Errorf("status %q: %v, want inactive", "active", err)
	}
	if _, err := s.LookupCredential(ctx, "AKIAAAAAAAAAAAAAAAAA", ""); !errors.Is(err, ErrAccessKeyUnknown) {
		t.Errorf("key with a 5-character secret: %v, want it skipped (unknown)", err)
	}
}

func TestResolveSession(t *testing.T) {
	ctx := context.Background()
	c := newClock(t0)
	st := newFakeStore()
	s := newTestService(t, st, c)
	claims, tok := sessionFor(t, s, "app-writer")
	other, otherTok := sessionFor(t, s, "app-writer")

	cctx, got := Capture(ctx)
	cred, err := s.LookupCredential(cctx, claims.AccessKeyID, tok)
	if err != nil {
		t.Fatal(err)
	}
	want := sigv4.Credential{AccessKeyID: claims.AccessKeyID, SecretAccessKey: claims.SecretAccessKey, SessionToken: tok, Principal: claims.Principal, Expires: claims.Expires}
	if cred != want {
		t.Fatalf("credential for %s differs", claims.AccessKeyID)
	}
	// A Captured the caller keeps receives the same resolution, and passes other values on.
	type otherKey struct{}
	kept := &Captured{Context: context.WithValue(ctx, otherKey{}, "v")}
	if _, err := s.LookupCredential(kept, claims.AccessKeyID, tok); err != nil || kept.Resolved.Claims == nil || kept.Resolved.Claims.Principal != claims.Principal || kept.Value(otherKey{}) != "v" {
		t.Fatalf("Captured: %+v %v", kept.Resolved, err)
	}
	if got.Claims == nil || got.Claims.Principal != claims.Principal || got.Claims.Tags[0] != (Tag{"team", "payments"}) || !got.Claims.IssuedAt.Equal(t0) {
		t.Fatalf("captured claims %+v", got.Claims)
	}

	for _, tc := range []struct {
		name   string
		id     string
		token  string
		want   error
		sentry error
	}{
		{"no token", claims.AccessKeyID, "", ErrTokenMissing, sigv4.ErrInvalidToken},
		{"another session's token", claims.AccessKeyID, otherTok, ErrTokenMismatch, sigv4.ErrInvalidToken},
		{"another session's key id", other.AccessKeyID, tok, ErrTokenMismatch, sigv4.ErrInvalidToken},
		{"tampered token", claims.AccessKeyID, tok[:40] + flip(tok[40]) + tok[41:], ErrTokenTampered, sigv4.ErrInvalidToken},
		{"truncated token (last 3 bytes cut)", claims.AccessKeyID, retoken(tokenBytes(t, tok)[:len(tokenBytes(t, tok))-3]), ErrTokenTruncated, sigv4.ErrInvalidToken},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cctx, got := Capture(ctx)
			_, err := s.LookupCredential(cctx, tc.id, tc.token)
			if !errors.Is(err, tc.want) || !errors.Is(err, tc.sentry) {
				t.Fatalf("%v, want %v (matching %v)", err, tc.want, tc.sentry)
			}
			if got.Claims != nil {
				t.Error("claims captured for a refused credential")
			}
		})
	}

	c.Advance(time.Hour)
	if _, err := s.LookupCredential(ctx, claims.AccessKeyID, tok); !errors.Is(err, ErrTokenExpired) || !errors.Is(err, sigv4.ErrExpiredToken) {
		t.Fatalf("expired: %v", err)
	}
}

func flip(c byte) string {
	if c == 'A' {
		return "B"
	}
	return "A"
}

// TestRevokeSessions follows "Revoking IAM role temporary security credentials": sessions of
// the role issued before the revocation are denied; later ones and other roles are not.
func TestRevokeSessions(t *testing.T) {
	ctx := context.Background()
	c := newClock(t0)
	st := newFakeStore()
	s := newTestService(t, st, c)
	before, beforeTok := sessionFor(t, s, "app-writer")
	otherRole, otherTok := sessionFor(t, s, "app-reader")
	c.Advance(time.Millisecond)
	if _, err := s.RevokeSessions(ctx, "app-writer"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.LookupCredential(ctx, before.AccessKeyID, beforeTok); !errors.Is(err, ErrSessionRevoked) || !errors.Is(err, sigv4.ErrInvalidToken) {
		t.Fatalf("session issued before revocation: %v", err)
	}
	if _, err := s.LookupCredential(ctx, otherRole.AccessKeyID, otherTok); err != nil {
		t.Fatalf("other role's session: %v", err)
	}
	after, afterTok := sessionFor(t, s, "app-writer") // issued at the revocation instant: not before it
	if _, err := s.LookupCredential(ctx, after.AccessKeyID, afterTok); err != nil {
		t.Fatalf("session issued at the revocation time: %v", err)
	}
	if _, err := s.RevokeSessions(ctx, "role/with/slash"); err == nil {
		t.Error("role name with slashes accepted")
	}
}

// nodeSession issues a 1h session of role app to node.
func nodeSession(t testing.TB, s *Service, node string) (Claims, string) {
	t.Helper()
	c, tok, err := s.NewSession(Claims{
		Principal: "arn:aws:sts::" + testAccount + ":assumed-role/app/" + node,
		Role:      "arn:aws:iam::" + testAccount + ":role/app",
		Node:      node,
	}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return c, tok
}

// Removing a node refuses every session issued to it, of any age, and the node itself
// until it enrolls again; sessions issued after that re-enrollment work, the old ones
// never again. Other nodes of the same role are untouched.
func TestRevokeNode(t *testing.T) {
	ctx := context.Background()
	c := newClock(t0)
	st := newFakeStore()
	st.putNode(store.Node{Name: "web-1", Role: "app", CertSerial: "01", EnrolledAt: t0.Add(-time.Hour)})
	s := newTestService(t, st, c)
	old, oldTok := nodeSession(t, s, "web-1")
	other, otherTok := nodeSession(t, s, "web-2")
	plain, plainTok := sessionFor(t, s, "app")
	if s.NodeRevoked("web-1") {
		t.Fatal("NodeRevoked before any revocation")
	}
	c.Advance(time.Millisecond)
	changed := s.Changed()
	if _, err := s.RevokeNode(ctx, "web-1"); err != nil {
		t.Fatal(err)
	}
	select {
	case <-changed:
	default:
		t.Error("Changed was not closed by the revocation's refresh")
	}
	if !s.NodeRevoked("web-1") || s.NodeRevoked("web-2") {
		t.Errorf("NodeRevoked web-1 = %v, web-2 = %v; want true, false", s.NodeRevoked("web-1"), s.NodeRevoked("web-2"))
	}
	if _, err := s.LookupCredential(ctx, old.AccessKeyID, oldTok); !errors.Is(err, ErrSessionRevoked) {
		t.Fatalf("the removed node's session: err = %v, want ErrSessionRevoked", err)
	}
	// Issued after the revocation (an STS that had not heard yet): refused while revoked.
	c.Advance(time.Millisecond)
	late, lateTok := nodeSession(t, s, "web-1")
	if _, err := s.LookupCredential(ctx, late.AccessKeyID, lateTok); !errors.Is(err, ErrSessionRevoked) {
		t.Fatalf("a session of the node while it is revoked: err = %v, want ErrSessionRevoked", err)
	}
	for name, cr := range map[string][2]string{"another node": {other.AccessKeyID, otherTok}, "a role session": {plain.AccessKeyID, plainTok}} {
		if _, err := s.LookupCredential(ctx, cr[0], cr[1]); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}

	// Enrolled again: new sessions work, those issued before the revocation stay refused.
	c.Advance(time.Second)
	st.putNode(store.Node{Name: "web-1", Role: "app", CertSerial: "02", EnrolledAt: c.Now()})
	if err := s.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if s.NodeRevoked("web-1") {
		t.Error("NodeRevoked after re-enrollment")
	}
	fresh, freshTok := nodeSession(t, s, "web-1")
	if _, err := s.LookupCredential(ctx, fresh.AccessKeyID, freshTok); err != nil {
		t.Errorf("a session issued after re-enrollment: %v", err)
	}
	if _, err := s.LookupCredential(ctx, old.AccessKeyID, oldTok); !errors.Is(err, ErrSessionRevoked) {
		t.Errorf("the old session after re-enrollment: err = %v, want ErrSessionRevoked", err)
	}
	if _, err := s.RevokeNode(ctx, "bad name"); err == nil {
		t.Error("a node name with a space accepted")
	}
}

// Without a node store a revoked node stays revoked: nothing tells a re-enrollment.
func TestRevokeNodeWithoutNodeStore(t *testing.T) {
	ctx := context.Background()
	c := newClock(t0)
	st := newFakeStore()
	d := st.deps()
	d.Nodes = nil
	s, err := New(Config{Account: testAccount, Now: c.Now, Logger: slog.New(slog.DiscardHandler)}, d)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.RotateSealingKey(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := s.RevokeNode(ctx, "web-1"); err != nil {
		t.Fatal(err)
	}
	c.Advance(time.Hour)
	tok, tokStr := nodeSession(t, s, "web-1")
	if !s.NodeRevoked("web-1") {
		t.Error("NodeRevoked = false without a node store")
	}
	if _, err := s.LookupCredential(ctx, tok.AccessKeyID, tokStr); !errors.Is(err, ErrSessionRevoked) {
		t.Errorf("err = %v, want ErrSessionRevoked", err)
	}
}

// A GetSessionToken session carries its user's ARN where a role session has the role:
// revoking a role whose name equals that user's must not reach the user's sessions, and
// must still reach the role's.
func TestRevokeSessionsSparesSameNamedUser(t *testing.T) {
	ctx := context.Background()
	c := newClock(t0)
	s := newTestService(t, newFakeStore(), c)
	user := "arn:aws:iam::" + testAccount + ":user/deploy"
	userSess, userTok, err := s.NewSession(Claims{Principal: user, Role: user}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	roleSess, roleTok := sessionFor(t, s, "deploy")
	c.Advance(time.Millisecond)
	if _, err := s.RevokeSessions(ctx, "deploy"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.LookupCredential(ctx, roleSess.AccessKeyID, roleTok); !errors.Is(err, ErrSessionRevoked) {
		t.Fatalf("role session issued before revocation: %v, want ErrSessionRevoked", err)
	}
	if _, err := s.LookupCredential(ctx, userSess.AccessKeyID, userTok); err != nil {
		t.Fatalf("user session of a same-named user: %v", err)
	}
}

func TestRotateSealingKeyKeepsOldTokens(t *testing.T) {
	ctx := context.Background()
	c := newClock(t0)
	st := newFakeStore()
	s := newTestService(t, st, c)
	firstKey := s.Sealer().CurrentKeyID()
	old, oldTok := sessionFor(t, s, "app")

	c.Advance(time.Minute)
	newID, err := s.RotateSealingKey(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if newID == firstKey || s.Sealer().CurrentKeyID() != newID {
		t.Fatalf("current key %q after rotation to %q (was %q)", s.Sealer().CurrentKeyID(), newID, firstKey)
	}
	if _, err := s.LookupCredential(ctx, old.AccessKeyID, oldTok); err != nil {
		t.Fatalf("token under the previous key: %v", err)
	}
	keys, _ := st.ListSealingKeys(ctx)
	for _, k := range keys {
		if k.ID == firstKey && !k.RetireAfter.Equal(c.Now().Add(DefaultMaxSessionDuration)) {
			t.Errorf("previous key retires %v, want rotation time + 36h", k.RetireAfter)
		}
	}
	// Another replica sharing the store opens both.
	replica := newTestService(t, st, c)
	fresh, freshTok := sessionFor(t, s, "app")
	for _, tk := range []struct{ id, tok string }{{old.AccessKeyID, oldTok}, {fresh.AccessKeyID, freshTok}} {
		if _, err := replica.LookupCredential(ctx, tk.id, tk.tok); err != nil {
			t.Fatalf("replica: %v", err)
		}
	}
	c.Advance(DefaultMaxSessionDuration)
	if err := replica.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if ids := replica.Sealer().KeyIDs(); len(ids) != 1 || ids[0] != newID {
		t.Errorf("after 36h the ring is %v, want only %s", ids, newID)
	}
}

// TestReplicaSeesChangesWithinSeconds: a key disabled through one replica is refused by
// another once its Run loop polls the store's change counter.
func TestReplicaSeesChangesWithinSeconds(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := newClock(t0)
	st := newFakeStore()
	admin := newTestService(t, st, c)
	k, err := admin.CreateAccessKey(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	replica, err := New(Config{Account: testAccount, Now: c.Now, RefreshInterval: 5 * time.Millisecond}, st.deps())
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- replica.Run(ctx) }() // loads at once, then polls
	waitFor(t, "the replica's first load", func() bool {
		_, err := replica.LookupCredential(ctx, k.ID, "")
		return err == nil
	})
	if err := admin.UpdateAccessKeyStatus(ctx, k.ID, StatusInactive); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the replica to refuse the disabled key", func() bool {
		_, err := replica.LookupCredential(ctx, k.ID, "")
		return errors.Is(err, ErrAccessKeyInactive)
	})
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("Run returned %v, want context.Canceled", err)
	}
}

func TestRefreshFailureKeepsSnapshot(t *testing.T) {
	ctx := context.Background()
	c := newClock(t0)
	st := newFakeStore()
	s := newTestService(t, st, c)
	k, _ := s.CreateAccessKey(ctx, "alice")
	claims, tok := sessionFor(t, s, "app")
	st.setFail(errors.New("database is locked"))
	if err := s.Refresh(ctx); err == nil {
		t.Fatal("refresh succeeded against a failing store")
	}
	if _, err := s.LookupCredential(ctx, k.ID, ""); err != nil {
		t.Errorf("long-term key after a failed refresh: %v", err)
	}
	if _, err := s.LookupCredential(ctx, claims.AccessKeyID, tok); err != nil {
		t.Errorf("session after a failed refresh: %v", err)
	}
}

// TestSigV4EndToEnd signs requests with aws-sdk-go-v2's signer and verifies them with the
// sigv4 verifier backed by the service: session and long-term credentials pass; a revoked
// session and an inactive key get AWS's InvalidClientTokenId.
func TestSigV4EndToEnd(t *testing.T) {
	ctx := context.Background()
	c := newClock(t0)
	st := newFakeStore()
	s := newTestService(t, st, c)
	v, err := sigv4.New(sigv4.Config{Region: "eu-west-1", Service: "execute-api", Now: c.Now}, s)
	if err != nil {
		t.Fatal(err)
	}
	user, _ := s.CreateAccessKey(ctx, "alice")
	sess, tok := sessionFor(t, s, "app-writer")
	sign := func(creds aws.Credentials) *http.Request {
		r, _ := http.NewRequest("GET", "https://api.example.test/prod/orders?limit=5", nil)
		const emptySHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
		if err := v4.NewSigner().SignHTTP(ctx, creds, r, emptySHA256, "execute-api", "eu-west-1", c.Now()); err != nil {
			t.Fatal(err)
		}
		return r
	}
	sessCreds := aws.Credentials{AccessKeyID: sess.AccessKeyID, SecretAccessKey: sess.SecretAccessKey, SessionToken: tok}
	userCreds := aws.Credentials{AccessKeyID: user.ID, SecretAccessKey: user.Secret}

	vctx, got := Capture(ctx)
	res, err := v.Verify(vctx, sign(sessCreds), nil)
	if err != nil {
		t.Fatalf("session credentials: %v", err)
	}
	if res.Credential.Principal != sess.Principal || got.Claims == nil || got.Claims.RoleName() != "app-writer" {
		t.Fatalf("verified as %q, captured %+v", res.Credential.Principal, got.Claims)
	}
	if res, err := v.Verify(ctx, sign(userCreds), nil); err != nil || res.Credential.Principal != "arn:aws:iam::123456789012:user/alice" {
		t.Fatalf("user credentials: %v", err)
	}

	wrongSecret := sessCreds
	wrongSecret.SecretAccessKey = strings.Repeat("x", 40)
	expectCode(t, v, sign(wrongSecret), "SignatureDoesNotMatch")

	c.Advance(time.Millisecond)
	if _, err := s.RevokeSessions(ctx, "app-writer"); err != nil {
		t.Fatal(err)
	}
	expectCode(t, v, sign(sessCreds), "InvalidClientTokenId")
	if err := s.UpdateAccessKeyStatus(ctx, user.ID, StatusInactive); err != nil {
		t.Fatal(err)
	}
	expectCode(t, v, sign(userCreds), "InvalidClientTokenId")
}

func expectCode(t *testing.T, v *sigv4.Verifier, r *http.Request, code string) {
	t.Helper()
	_, err := v.Verify(context.Background(), r, nil)
	var se *sigv4.Error
	if !errors.As(err, &se) || se.Code != code {
		t.Fatalf("Verify = %v, want code %s", err, code)
	}
	if strings.Contains(se.Message, "identity:") {
		t.Errorf("message %q leaks internal error text", se.Message)
	}
}

// TestConcurrentResolveDuringRefresh resolves while snapshots and the key ring are swapped;
// run with -race.
func TestConcurrentResolveDuringRefresh(t *testing.T) {
	ctx := context.Background()
	c := newClock(t0)
	st := newFakeStore()
	s := newTestService(t, st, c)
	k, _ := s.CreateAccessKey(ctx, "alice")
	claims, tok := sessionFor(t, s, "app")
	var wg sync.WaitGroup
	stop := make(chan struct{})
	errs := make(chan error, 8)
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := s.LookupCredential(ctx, claims.AccessKeyID, tok); err != nil {
					errs <- err
					return
				}
				if _, err := s.LookupCredential(ctx, k.ID, ""); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	for i := 0; i < 20; i++ {
		if _, err := s.RotateSealingKey(ctx); err != nil {
			t.Error(err)
		}
		if _, err := s.RevokeSessions(ctx, "other-role"); err != nil {
			t.Error(err)
		}
		if _, err := s.CreateAccessKey(ctx, "bob"); err != nil {
			t.Error(err)
		}
	}
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited 5s for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestRotateRetiresEveryOtherCurrentKey: two replicas rotating at once leave two current
// keys; the next rotation retires both, so no key stays current (and never retires).
func TestRotateRetiresEveryOtherCurrentKey(t *testing.T) {
	ctx := context.Background()
	c := newClock(t0)
	st := newFakeStore()
	s := newTestService(t, st, c)
	if err := st.PutSealingKey(ctx, testKey("other", 5, t0.Add(time.Second))); err != nil {
		t.Fatal(err)
	}
	newID, err := s.RotateSealingKey(ctx)
	if err != nil {
		t.Fatal(err)
	}
	keys, _ := st.ListSealingKeys(ctx)
	for _, k := range keys {
		if current := k.RetireAfter.IsZero(); current != (k.ID == newID) {
			t.Errorf("key %s: current=%v after rotating to %s", k.ID, current, newID)
		}
	}
}

// SessionRevoked judges credentials issued with a session (the egress proxy's password)
// as the session itself is judged: by its role's revocation, its node's, and the node
// staying removed; and before anything is loaded, everything is revoked (fail closed).
func TestSessionRevoked(t *testing.T) {
	ctx := context.Background()
	c := newClock(t0)
	st := newFakeStore()
	st.putNode(store.Node{Name: "web-1", Role: "app", CertSerial: "01", EnrolledAt: t0.Add(-time.Hour)})
	unloaded, err := New(Config{Account: testAccount, Now: c.Now, Logger: slog.New(slog.DiscardHandler)}, st.deps())
	if err != nil {
		t.Fatal(err)
	}
	if !unloaded.SessionRevoked("app", "web-1", t0) {
		t.Error("SessionRevoked = false before the first load")
	}
	s := newTestService(t, st, c)
	issued := c.Now()
	if s.SessionRevoked("app", "web-1", issued) {
		t.Fatal("revoked before any revocation")
	}
	c.Advance(time.Millisecond)
	if _, err := s.RevokeSessions(ctx, "app"); err != nil {
		t.Fatal(err)
	}
	for _, r := range []struct {
		name       string
		role, node string
		issued     time.Time
		want       bool
	}{
		{"issued before the role's revocation", "app", "web-1", issued, true},
		{"issued at the revocation", "app", "web-1", c.Now(), false},
		{"another role", "db", "web-1", issued, false},
		{"a user's session (no role)", "", "", issued, false},
	} {
		if got := s.SessionRevoked(r.role, r.node, r.issued); got != r.want {
			t.Errorf("%s: SessionRevoked = %v, want %v", r.name, got, r.want)
		}
	}
	c.Advance(time.Millisecond)
	if _, err := s.RevokeNode(ctx, "web-1"); err != nil {
		t.Fatal(err)
	}
	c.Advance(time.Millisecond)
	if !s.SessionRevoked("db", "web-1", c.Now()) {
		t.Error("a removed node's credentials issued after its removal are not revoked")
	}
	if s.SessionRevoked("db", "web-2", c.Now()) {
		t.Error("another node's credentials are revoked")
	}
}
