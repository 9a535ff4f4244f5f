package sts

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/xml"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"

	"github.com/phantom-perimeter/phantom/internal/config"
	"github.com/phantom-perimeter/phantom/internal/identity"
	"github.com/phantom-perimeter/phantom/internal/store"
)

// realEnv is the STS handler over the real identity service and SQLite store: sealed
// ASIA tokens, access keys from the store, revocations.
type realEnv struct {
	spec  *config.Spec
	svc   *identity.Service
	h     *Handler
	audit *memAudit
	keys  map[string]aws.Credentials // user -> long-term key
}

func newRealEnv(t testing.TB) *realEnv { return newRealEnvAt(t, nil) }

// newRealEnvAt is newRealEnv on the clock now (nil: the real one), shared by the identity
// service, the store and the handler.
func newRealEnvAt(t testing.TB, now func() time.Time) *realEnv {
	t.Helper()
	ctx := context.Background()
	spec, err := config.Load(filepath.Join("testdata", "spec.yaml"))
	if err != nil {
		t.Fatalf("load spec: %v", err)
	}
	mk := make([]byte, 32)
	if _, err := rand.Read(mk); err != nil {
		t.Fatal(err)
	}
	db, err := store.OpenSQLite(ctx, store.Config{DataDir: t.TempDir(), MasterKey: mk, Now: now})
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(func() { _ = db.Close() })
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	svc, err := identity.New(identity.Config{Account: testAccount, Logger: quiet, Now: now},
		identity.Deps{AccessKeys: db, SealingKeys: db, Revocations: db, Changes: db})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.RotateSealingKey(ctx); err != nil {
		t.Fatal(err)
	}
	e := &realEnv{spec: spec, svc: svc, audit: &memAudit{}, keys: map[string]aws.Credentials{}}
	for _, u := range spec.Users {
		k, err := svc.CreateAccessKey(ctx, u.Name)
		if err != nil {
			t.Fatal(err)
		}
		e.keys[u.Name] = aws.Credentials{AccessKeyID: k.ID, SecretAccessKey: k.Secret}
	}
	id := NewIdentity(svc)
	e.h, err = New(Config{Account: testAccount, Region: "us-east-1", Directory: func() Directory { return spec }, Logger: quiet, Now: now}, id, id, e.audit)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func callerARN(t testing.TB, body []byte) string {
	t.Helper()
	var x struct {
		Arn string `xml:"GetCallerIdentityResult>Arn"`
	}
	if err := xml.Unmarshal(body, &x); err != nil {
		t.Fatalf("GetCallerIdentity body %q: %v", body, err)
	}
	return x.Arn
}

func TestRealIdentityEndToEnd(t *testing.T) {
	e := newRealEnv(t)
	ctx := context.Background()
	alice := e.keys["alice"]

	code, body := e.callBytes(t, alice, form("GetCallerIdentity"))
	if code != 200 || callerARN(t, body) != "arn:aws:iam::123456789012:user/alice" {
		t.Fatalf("GetCallerIdentity as alice: %d %s", code, body)
	}

	// AssumeRole mints a real sealed token whose claims carry what was asked for.
	code, body = e.callBytes(t, alice, form("AssumeRole", "RoleArn", "arn:aws:iam::123456789012:role/app", "RoleSessionName", "s1",
		"SourceIdentity", "alice-src", "Tags.member.1.Key", "project", "Tags.member.1.Value", "x", "TransitiveTagKeys.member.1", "project",
		"Policy", `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"execute-api:Invoke","Resource":"*"}]}`))
	if code != 200 {
		t.Fatalf("AssumeRole: %d %s", code, body)
	}
	var x xmlAssume
	if err := xml.Unmarshal(body, &x); err != nil {
		t.Fatal(err)
	}
	sess := x.creds()
	if !strings.HasPrefix(sess.AccessKeyID, "ASIA") {
		t.Fatalf("session key %q is not ASIA", sess.AccessKeyID)
	}
	claims, err := e.svc.Sealer().Open(sess.SessionToken)
	if err != nil {
		t.Fatalf("open minted token: %v", err)
	}
	if claims.Role != "arn:aws:iam::123456789012:role/app" || claims.SessionName != "s1" || claims.SourceIdentity != "alice-src" ||
		claims.Principal != "arn:aws:sts::123456789012:assumed-role/app/s1" || claims.Policy == "" ||
		len(claims.TransitiveTagKeys) != 1 || claims.TransitiveTagKeys[0] != "project" || !claims.Expires.After(claims.IssuedAt) {
		t.Fatalf("claims = %+v", claims)
	}
	var tagged bool
	for _, tg := range claims.Tags {
		tagged = tagged || (tg.Key == "project" && tg.Value == "x")
	}
	if !tagged {
		t.Fatalf("session tag missing from claims: %+v", claims.Tags)
	}

	code, body = e.callBytes(t, sess, form("GetCallerIdentity"))
	if code != 200 || callerARN(t, body) != "arn:aws:sts::123456789012:assumed-role/app/s1" {
		t.Fatalf("GetCallerIdentity as the session: %d %s", code, body)
	}

	// GetSessionToken: a user session, whose principal is the user.
	code, body = e.callBytes(t, e.keys["bob"], form("GetSessionToken", "DurationSeconds", "900"))
	if code != 200 {
		t.Fatalf("GetSessionToken: %d %s", code, body)
	}
	var g struct {
		C struct {
			AccessKeyID     string `xml:"AccessKeyId"`
			SecretAccessKey string
			SessionToken    string
		} `xml:"GetSessionTokenResult>Credentials"`
	}
	if err := xml.Unmarshal(body, &g); err != nil {
		t.Fatal(err)
	}
	bobSess := aws.Credentials{AccessKeyID: g.C.AccessKeyID, SecretAccessKey: g.C.SecretAccessKey, SessionToken: g.C.SessionToken}
	code, body = e.callBytes(t, bobSess, form("GetCallerIdentity"))
	if code != 200 || callerARN(t, body) != "arn:aws:iam::123456789012:user/bob" {
		t.Fatalf("GetCallerIdentity as bob's session: %d %s", code, body)
	}

	// A tampered token is InvalidClientTokenId.
	bad := sess
	bad.SessionToken = sess.SessionToken[:len(sess.SessionToken)-4] + "AAAA"
	if code, body = e.callBytes(t, bad, form("GetCallerIdentity")); code != 403 || parseError(t, body).Code != "InvalidClientTokenId" {
		t.Fatalf("tampered token: %d %s", code, body)
	}

	// Revoking the role's sessions: AccessDenied for the session, nothing else changes.
	time.Sleep(2 * time.Millisecond) // the revocation must be after the issue time
	if _, err := e.svc.RevokeSessions(ctx, "app"); err != nil {
		t.Fatal(err)
	}
	if code, body = e.callBytes(t, sess, form("GetCallerIdentity")); code != 403 || parseError(t, body).Code != "AccessDenied" {
		t.Fatalf("revoked session: %d %s", code, body)
	}
	if code, _ = e.callBytes(t, bobSess, form("GetCallerIdentity")); code != 200 {
		t.Fatalf("bob's user session was revoked with the app role: %d", code)
	}
	// A new session of the role, issued after the revocation, works.
	time.Sleep(2 * time.Millisecond)
	code, body = e.callBytes(t, alice, form("AssumeRole", "RoleArn", "arn:aws:iam::123456789012:role/app", "RoleSessionName", "s2"))
	if code != 200 {
		t.Fatalf("AssumeRole after revocation: %d %s", code, body)
	}
	x = xmlAssume{}
	if err := xml.Unmarshal(body, &x); err != nil {
		t.Fatal(err)
	}
	if code, body = e.callBytes(t, x.creds(), form("GetCallerIdentity")); code != 200 {
		t.Fatalf("session issued after the revocation: %d %s", code, body)
	}

	// An inactive key is refused at once (UpdateAccessKeyStatus refreshes the snapshot).
	if err := e.svc.UpdateAccessKeyStatus(ctx, alice.AccessKeyID, identity.StatusInactive); err != nil {
		t.Fatal(err)
	}
	if code, body = e.callBytes(t, alice, form("GetCallerIdentity")); code != 403 || parseError(t, body).Code != "InvalidClientTokenId" {
		t.Fatalf("inactive key: %d %s", code, body)
	}

	for _, ev := range e.audit.all() {
		if ev.EventName == "" {
			t.Errorf("audit event without a name: %+v", ev)
		}
	}
	noSecrets(t, e.audit.all(), alice.SecretAccessKey, sess.SecretAccessKey, sess.SessionToken, bobSess.SecretAccessKey, bobSess.SessionToken)
}

func (e *realEnv) callBytes(t testing.TB, creds aws.Credentials, f url.Values) (int, []byte) {
	t.Helper()
	rec := httptest.NewRecorder()
	e.h.ServeHTTP(rec, signedRequest(t, creds, f))
	return rec.Code, rec.Body.Bytes()
}

// TestRealIdentityExpiry: a session works until its expiry and is then refused with
// ExpiredToken (the token carries its expiry; no store lookup).
func TestRealIdentityExpiry(t *testing.T) {
	var mu sync.Mutex
	now := time.Now().UTC()
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	e := newRealEnvAt(t, clock)
	call := func(creds aws.Credentials, f url.Values) (int, []byte) {
		body := []byte(f.Encode())
		r := httptest.NewRequest(http.MethodPost, "https://sts.us-east-1.amazonaws.com/", bytes.NewReader(body))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")
		if err := v4.NewSigner().SignHTTP(context.Background(), creds, r, sha256Hex(body), "sts", "us-east-1", clock()); err != nil {
			t.Fatal(err)
		}
		rec := httptest.NewRecorder()
		e.h.ServeHTTP(rec, r)
		return rec.Code, rec.Body.Bytes()
	}
	code, body := call(e.keys["alice"], form("AssumeRole", "RoleArn", appARN, "RoleSessionName", "short", "DurationSeconds", "900"))
	if code != 200 {
		t.Fatalf("AssumeRole: %d %s", code, body)
	}
	var x xmlAssume
	if err := xml.Unmarshal(body, &x); err != nil {
		t.Fatal(err)
	}
	sess := x.creds()
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	advance(899 * time.Second)
	if code, body = call(sess, form("GetCallerIdentity")); code != 200 {
		t.Fatalf("one second before expiry: %d %s", code, body)
	}
	advance(time.Second)
	if code, body = call(sess, form("GetCallerIdentity")); code != 400 && code != 403 || parseError(t, body).Code != "ExpiredToken" {
		t.Fatalf("at expiry: %d %s", code, body)
	}
}
