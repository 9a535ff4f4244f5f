package sts

import (
	"crypto/rand"
	"encoding/json"
	"encoding/xml"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/phantom-perimeter/phantom/internal/mfa"
	"github.com/phantom-perimeter/phantom/internal/sigv4"
	"github.com/phantom-perimeter/phantom/internal/store"
)

const (
	aliceDevice = "arn:aws:iam::123456789012:mfa/alice-phone"
	mfaOnlyARN  = "arn:aws:iam::123456789012:role/mfa-only"
)

// mfaEnv is the test STS with a real SQLite store holding alice's enabled device.
type mfaEnv struct {
	*env
	seed []byte
	next int64 // the next step whose code has not been used
}

func newMFAEnv(t *testing.T) *mfaEnv {
	t.Helper()
	e := newEnv(t)
	key := make([]byte, 32)
	rand.Read(key)
	st, err := store.OpenSQLite(t.Context(), store.Config{DataDir: t.TempDir(), MasterKey: key})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	seed, err := mfa.NewSeed(nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.PutMFADevice(t.Context(), store.MFADevice{Serial: aliceDevice, Seed: seed}); err != nil {
		t.Fatal(err)
	}
	now := mfa.Step(time.Now())
	if err := st.EnableMFADevice(t.Context(), aliceDevice, "alice", now-2, time.Now()); err != nil {
		t.Fatal(err)
	}
	e.h.cfg.MFA = mfa.NewVerifier(st, nil)
	return &mfaEnv{env: e, seed: seed, next: now - 1}
}

// code returns a fresh code (each step once) within the verifier's window.
func (m *mfaEnv) code() string {
	c := mfa.Code(m.seed, m.next)
	m.next++
	return c
}

func wantDenied(t *testing.T, code int, body []byte, status int, errCode, msg string) {
	t.Helper()
	if code != status {
		t.Fatalf("status %d, want %d: %s", code, status, body)
	}
	e := parseError(t, body)
	if e.Code != errCode || !strings.Contains(e.Message, msg) {
		t.Fatalf("error %s %q, want %s containing %q", e.Code, e.Message, errCode, msg)
	}
}

type xmlSession struct {
	Result struct {
		Credentials struct {
			AccessKeyID     string `xml:"AccessKeyId"`
			SecretAccessKey string
			SessionToken    string
		} `xml:"Credentials"`
	} `xml:"GetSessionTokenResult"`
}

func (m *mfaEnv) sessionToken(t *testing.T, kv ...string) aws.Credentials {
	t.Helper()
	code, body := m.call(t, m.users["alice"], form("GetSessionToken", kv...))
	if code != http.StatusOK {
		t.Fatalf("GetSessionToken %v: %d %s", kv, code, body)
	}
	var x xmlSession
	if err := xml.Unmarshal(body, &x); err != nil {
		t.Fatal(err)
	}
	c := x.Result.Credentials
	return aws.Credentials{AccessKeyID: c.AccessKeyID, SecretAccessKey: c.SecretAccessKey, SessionToken: c.SessionToken}
}

// TestMFAGetSessionToken: a valid code makes an MFA session with the code's time; the
// same code again is refused, in the audit record without the code.
func TestMFAGetSessionToken(t *testing.T) {
	m := newMFAEnv(t)
	m.sessionToken(t)
	if s := m.issuer.last(); s.MFA || !s.MFAAt.IsZero() {
		t.Fatalf("a session without a code has MFA %v at %v", s.MFA, s.MFAAt)
	}
	code := m.code()
	m.sessionToken(t, "SerialNumber", aliceDevice, "TokenCode", code)
	s := m.issuer.last()
	if !s.MFA || time.Since(s.MFAAt) > 2*mfa.Period || time.Since(s.MFAAt) < -mfa.Period {
		t.Fatalf("MFA session: MFA %v at %v", s.MFA, s.MFAAt)
	}

	// Replayed: AccessDenied, the reason in the audit record, the code nowhere in it.
	st, body := m.call(t, m.users["alice"], form("GetSessionToken", "SerialNumber", aliceDevice, "TokenCode", code))
	wantDenied(t, st, body, http.StatusForbidden, "AccessDenied", "MultiFactorAuthentication failed")
	evs := m.audit.all()
	ev := evs[len(evs)-1]
	if ev.ErrorCode != "AccessDenied" || ev.RequestParameters["serialNumber"] != aliceDevice ||
		!strings.Contains(ev.AdditionalEventData["mfaFailure"].(string), "used already") {
		t.Errorf("audit of the replay: %+v", ev)
	}
	b, _ := json.Marshal(evs)
	if strings.Contains(string(b), code) {
		t.Error("an MFA code is in the audit log")
	}
}

func TestMFARefusals(t *testing.T) {
	m := newMFAEnv(t)
	alice := m.users["alice"]
	for _, tc := range []struct {
		name          string
		who           aws.Credentials
		kv            []string
		status        int
		errCode, want string
	}{
		{"a serial number without a code", alice, []string{"SerialNumber", aliceDevice}, 400, "ValidationError", "together"},
		{"a code without a serial number", alice, []string{"TokenCode", "246810"}, 400, "ValidationError", "together"},
		{"a five-digit code", alice, []string{"SerialNumber", aliceDevice, "TokenCode", "24681"}, 400, "ValidationError", "tokenCode"},
		{"a serial number of bad characters", alice, []string{"SerialNumber", "arn:aws:iam::123456789012:mfa/a b", "TokenCode", "246810"}, 400, "ValidationError", "serialNumber"},
		{"a device of another account", alice, []string{"SerialNumber", "arn:aws:iam::210987654321:mfa/alice-phone", "TokenCode", "246810"}, 403, "AccessDenied", "unable to validate"},
		{"a wrong code", alice, []string{"SerialNumber", aliceDevice, "TokenCode", wrongCode(m)}, 403, "AccessDenied", "invalid MFA one time pass code"},
		{"bob naming alice's device", m.users["bob"], []string{"SerialNumber", aliceDevice, "TokenCode", mfa.Code(m.seed, m.next)}, 403, "AccessDenied", "invalid MFA"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, body := m.call(t, tc.who, form("GetSessionToken", tc.kv...))
			wantDenied(t, st, body, tc.status, tc.errCode, tc.want)
			if strings.Contains(string(body), "24681") {
				t.Error("the code is echoed")
			}
		})
	}
	// A role session has no MFA device.
	sess := m.assume(t, alice, "RoleArn", appARN, "RoleSessionName", "s1").creds()
	st, body := m.call(t, sess, form("AssumeRole", "RoleArn", "arn:aws:iam::123456789012:role/chained", "RoleSessionName", "s2",
		"SerialNumber", aliceDevice, "TokenCode", m.code()))
	wantDenied(t, st, body, http.StatusForbidden, "AccessDenied", "unable to validate")
}

// wrongCode is a code no step of the window shows.
func wrongCode(m *mfaEnv) string {
	now := mfa.Step(time.Now())
	for c := 0; ; c++ {
		s := strings.Repeat(string(rune('0'+c%10)), 6)
		if s != mfa.Code(m.seed, now-1) && s != mfa.Code(m.seed, now) && s != mfa.Code(m.seed, now+1) {
			return s
		}
	}
}

// TestMFARequiredByTrustPolicy: a role whose trust policy requires MFA (and an age under
// an hour) refuses alice's key alone and a session without MFA, admits her with a code,
// refuses the code used twice, and admits a GetSessionToken session made with MFA (the
// AWS CLI's pattern), until that authentication is older than the policy allows.
func TestMFARequiredByTrustPolicy(t *testing.T) {
	m := newMFAEnv(t)
	alice := m.users["alice"]
	assume := func(who aws.Credentials, kv ...string) (int, []byte) {
		return m.call(t, who, form("AssumeRole", append([]string{"RoleArn", mfaOnlyARN, "RoleSessionName", "admin"}, kv...)...))
	}
	st, body := assume(alice)
	wantDenied(t, st, body, http.StatusForbidden, "AccessDenied", "not authorized to perform: sts:AssumeRole")

	code := m.code()
	if st, body := assume(alice, "SerialNumber", aliceDevice, "TokenCode", code); st != http.StatusOK {
		t.Fatalf("with a valid code: %d %s", st, body)
	}
	if s := m.issuer.last(); !s.MFA || s.MFAAt.IsZero() {
		t.Fatalf("the role session is not MFA-authenticated: %+v", s)
	}
	st, body = assume(alice, "SerialNumber", aliceDevice, "TokenCode", code)
	wantDenied(t, st, body, http.StatusForbidden, "AccessDenied", "invalid MFA one time pass code")

	plain := m.sessionToken(t)
	st, body = assume(plain)
	wantDenied(t, st, body, http.StatusForbidden, "AccessDenied", "not authorized")
	withMFA := m.sessionToken(t, "SerialNumber", aliceDevice, "TokenCode", m.code())
	if st, body := assume(withMFA); st != http.StatusOK {
		t.Fatalf("from an MFA session: %d %s", st, body)
	}
	if s := m.issuer.last(); !s.MFA {
		t.Fatal("a role session chained from an MFA session lost MFA")
	}

	// An MFA session whose authentication is two hours old: aws:MultiFactorAuthAge 7200.
	old := aws.Credentials{AccessKeyID: randomKey("ASIA"), SecretAccessKey: randomSecret(30), SessionToken: randomSecret(96)}
	m.creds.put(fakeEntry{
		cred: sigv4.Credential{AccessKeyID: old.AccessKeyID, SecretAccessKey: old.SecretAccessKey, SessionToken: old.SessionToken,
			Principal: "arn:aws:iam::123456789012:user/alice", Expires: time.Now().Add(time.Hour)},
		sess: &Session{IssuedAt: time.Now().Add(-2 * time.Hour), Expires: time.Now().Add(time.Hour), MFA: true, MFAAt: time.Now().Add(-2 * time.Hour)},
	})
	st, body = assume(old)
	wantDenied(t, st, body, http.StatusForbidden, "AccessDenied", "not authorized")
}
