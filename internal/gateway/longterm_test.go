package gateway

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/phantom-perimeter/phantom/internal/config"
	"github.com/phantom-perimeter/phantom/internal/identity"
)

// withSpec swaps in the test spec with one replacement made, as a reload would.
func withSpec(t *testing.T, e *env, old, new string) {
	t.Helper()
	if !bytes.Contains(e.yaml, []byte(old)) {
		t.Fatalf("the test spec has no %q", old)
	}
	spec, err := config.Parse("testdata/spec.yaml", bytes.Replace(e.yaml, []byte(old), []byte(new), 1))
	if err != nil {
		t.Fatal(err)
	}
	e.spec.Store(spec)
}

// userSession is a GetSessionToken session of a user: the user's own principal, through STS.
func userSession(t *testing.T, e *env, user string, mfaAt time.Time) aws.Credentials {
	t.Helper()
	arn := "arn:aws:iam::" + testAccount + ":user/" + user
	c, token, err := e.svc.NewSession(identity.Claims{Principal: arn, Role: arn, MFA: !mfaAt.IsZero(), MFAAt: mfaAt}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return aws.Credentials{AccessKeyID: c.AccessKeyID, SecretAccessKey: c.SecretAccessKey, SessionToken: token}
}

// TestLongTermKeysRefused: a route set to refuse long-term keys refuses alice's AKIA key
// (whatever her policies allow), audited with the reason, and allows her STS session; other
// routes of the API still take the key; the gateway-wide default refuses it everywhere.
func TestLongTermKeysRefused(t *testing.T) {
	e := newEnv(t)
	key := e.keys["alice"]
	get := func(path string, creds aws.Credentials) (int, string) {
		status, body, _ := e.send(t, testCall{method: "GET", path: path, creds: &creds, plain: true})
		return status, body
	}
	if st, body := get("/prod/orders/7", key); st != 200 {
		t.Fatalf("before: alice's key on /orders/7: %d %s", st, body)
	}

	withSpec(t, e, `{path: "/orders/{id}", methods: [GET], backend: orders}`, `{path: "/orders/{id}", methods: [GET], backend: orders, longTermKeys: refuse}`)
	e.audit.take()
	st, body := get("/prod/orders/7", key)
	if st != 403 {
		t.Fatalf("alice's key on a route refusing long-term keys: %d %s", st, body)
	}
	msg, enc := decodeError(t, body)
	if !strings.Contains(msg, "accepts only temporary credentials from STS") || !strings.HasPrefix(msg, "User: arn:aws:iam::123456789012:user/alice") || enc != "" {
		t.Errorf("message %q (encoded %q)", msg, enc)
	}
	evs := e.audit.take()
	if len(evs) != 1 || evs[0].ErrorCode != "AccessDenied" || !strings.Contains(evs[0].AdditionalEventData["reason"].(string), "long-term") ||
		evs[0].UserIdentity.AccessKeyID != key.AccessKeyID {
		t.Errorf("audit: %+v", evs)
	}
	if st, body := get("/prod/orders/7", userSession(t, e, "alice", time.Time{})); st != 200 {
		t.Errorf("alice's STS session on the same route: %d %s", st, body)
	}
	if st, body := get("/prod/orders/7", e.session("app", "s1", time.Hour)); st != 200 {
		t.Errorf("a role session on the same route: %d %s", st, body)
	}
	if st, body := get("/prod/orders", key); st != 200 {
		t.Errorf("alice's key on another route of the API: %d %s", st, body)
	}

	// A body whose hash the request does not declare: the signature is checked only once
	// the body is read, which a refused caller never gets to send, so the answer names
	// nobody and the audit record says the signature was not verified.
	withSpec(t, e, `{path: /orders, methods: [GET, POST], backend: orders}`, `{path: /orders, methods: [GET, POST], backend: orders, longTermKeys: refuse}`)
	e.audit.take()
	status, body, _ := e.send(t, testCall{method: "POST", path: "/prod/orders", body: []byte(`{"item":"book"}`), creds: &key, plain: true})
	if msg, _ := decodeError(t, body); status != 403 || strings.Contains(msg, "alice") || !strings.Contains(msg, "accepts only temporary credentials") {
		t.Fatalf("a long-term key with an unverified body: %d %q", status, msg)
	}
	if evs := e.audit.take(); len(evs) != 1 || evs[0].UserIdentity.ARN != "" || evs[0].AdditionalEventData["signatureVerified"] != false {
		t.Errorf("audit of the unverified refusal: %+v", evs)
	}
	sess := userSession(t, e, "alice", time.Time{})
	if status, body, _ := e.send(t, testCall{method: "POST", path: "/prod/orders", body: []byte(`{"item":"book"}`), creds: &sess, plain: true}); status != 200 {
		t.Errorf("alice's session posting: %d %s", status, body)
	}

	withSpec(t, e, "  clockSkew: 5m\n", "  clockSkew: 5m\n  longTermKeys: refuse\n")
	if st, _ := get("/prod/orders", key); st != 403 {
		t.Errorf("the gateway-wide default: alice's key on /orders: %d", st)
	}
	if st, body := get("/prod/orders", userSession(t, e, "alice", time.Time{})); st != 200 {
		t.Errorf("the gateway-wide default: alice's session: %d %s", st, body)
	}
}

// TestMFAConditionKeys: a session issued with MFA carries aws:MultiFactorAuthPresent
// true and aws:MultiFactorAuthAge in seconds since the code; one without carries false
// and no age; a policy denying calls without recent MFA refuses the second only.
func TestMFAConditionKeys(t *testing.T) {
	e := newEnv(t)
	withSpec(t, e, "            - Sid: NoSecrets\n", `            - Sid: RecentMFAForPrivate
              Effect: Deny
              Action: execute-api:Invoke
              Resource: "arn:aws:execute-api:us-east-1:123456789012:a1b2c3d4e5/*/*/orders/*"
              Condition:
                NumericGreaterThanIfExists: {"aws:MultiFactorAuthAge": "3600"}
            - Sid: MFARequired
              Effect: Deny
              Action: execute-api:Invoke
              Resource: "arn:aws:execute-api:us-east-1:123456789012:a1b2c3d4e5/*/*/orders/*"
              Condition:
                BoolIfExists: {"aws:MultiFactorAuthPresent": "false"}
            - Sid: NoSecrets
`)
	mfaAt := e.clock.Now().Add(-90 * time.Second)
	with := userSession(t, e, "alice", mfaAt)
	if st, body, _ := e.send(t, testCall{method: "GET", path: "/prod/orders/7", creds: &with, plain: true}); st != 200 {
		t.Fatalf("an MFA session: %d %s", st, body)
	}
	without := userSession(t, e, "alice", time.Time{})
	st, body, _ := e.send(t, testCall{method: "GET", path: "/prod/orders/7", creds: &without, plain: true})
	if st != 403 {
		t.Fatalf("a session without MFA: %d %s", st, body)
	}
	wantKeys(t, conditions(t, e, body), map[string]string{"aws:MultiFactorAuthPresent": "false"}, "aws:MultiFactorAuthAge")
	stale := userSession(t, e, "alice", e.clock.Now().Add(-2*time.Hour))
	st, body, _ = e.send(t, testCall{method: "GET", path: "/prod/orders/7", creds: &stale, plain: true})
	if st != 403 {
		t.Fatalf("a session whose MFA is two hours old: %d %s", st, body)
	}
	wantKeys(t, conditions(t, e, body), map[string]string{"aws:MultiFactorAuthPresent": "true", "aws:MultiFactorAuthAge": "7200"})
}
