package sts

import (
	"context"
	"encoding/xml"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awssts "github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/phantom-perimeter/phantom/internal/config"
	"github.com/phantom-perimeter/phantom/internal/oidc"
	"github.com/phantom-perimeter/phantom/internal/oidc/oidctest"
	"github.com/phantom-perimeter/phantom/internal/testenv"
)

// webSpec is a perimeter with the test issuer as its OIDC provider: role ci trusts tokens
// of repo:example/orders:* from it for two hours; role other trusts only GitHub's provider.
const webSpec = `version: 1
account: "123456789012"
region: us-east-1
roles:
  - name: ci
    maxSessionDuration: 2h
    trustPolicy: |
      {"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
        "Principal": {"Federated": "%[1]s"},
        "Action": "sts:AssumeRoleWithWebIdentity",
        "Condition": {"StringEquals": {"%[2]s:aud": "sts.amazonaws.com"},
                      "StringLike": {"%[2]s:sub": "repo:example/orders:*"}}}]}
  - name: other
    trustPolicy: |
      {"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
        "Principal": {"Federated": "arn:aws:iam::123456789012:oidc-provider/token.actions.githubusercontent.com"},
        "Action": "sts:AssumeRoleWithWebIdentity"}]}
  - name: tagged
    trustPolicy: |
      {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"Federated": "%[1]s"}, "Action": "sts:AssumeRoleWithWebIdentity"},
        {"Effect": "Allow", "Principal": {"Federated": "%[1]s"}, "Action": "sts:TagSession",
         "Condition": {"StringEquals": {"aws:RequestTag/team": "payments"}}}]}
oidcProviders:
  - url: %[3]s
    clientIds: [sts.amazonaws.com]
  - url: https://token.actions.githubusercontent.com
    clientIds: [sts.amazonaws.com]
`

type webEnv struct {
	*env
	is *oidctest.Issuer
}

func newWebEnv(t *testing.T) *webEnv {
	t.Helper()
	is := oidctest.Start(t, oidctest.Options{})
	p := is.Provider()
	spec, err := config.Parse("web.yaml", []byte(fmt.Sprintf(webSpec, p.ARN, p.Name, p.URL)))
	if err != nil {
		t.Fatalf("parse spec: %v", err)
	}
	v, err := oidc.New(oidc.Config{Providers: spec.OIDCProviders, HTTPClient: is.Client()})
	if err != nil {
		t.Fatalf("new verifier: %v", err)
	}
	e := &env{spec: spec, creds: &fakeCreds{keys: map[string]fakeEntry{}}, audit: &memAudit{}, users: map[string]aws.Credentials{}}
	e.issuer = &fakeIssuer{creds: e.creds}
	e.h, err = New(Config{
		Account:     testAccount,
		Region:      "us-east-1",
		Directory:   func() Directory { return spec },
		WebIdentity: func() WebIdentityVerifier { return v },
		Logger:      slog.New(slog.NewTextHandler(io.Discard, nil)),
	}, e.creds, e.issuer, e.audit)
	if err != nil {
		t.Fatalf("new handler: %v", err)
	}
	return &webEnv{env: e, is: is}
}

func (w *webEnv) roleARN(name string) string { return "arn:aws:iam::123456789012:role/" + name }

// token mints a valid token for sub, edited by edit.
func (w *webEnv) token(t *testing.T, sub string, edit func(map[string]any)) string {
	t.Helper()
	c := w.is.Claims(sub, time.Now())
	if edit != nil {
		edit(c)
	}
	return w.is.Mint(t, c)
}

// unsigned runs one AssumeRoleWithWebIdentity call without a signature, as the SDKs send it.
func (w *webEnv) unsigned(t *testing.T, kv ...string) (int, []byte) {
	t.Helper()
	body := form("AssumeRoleWithWebIdentity", kv...).Encode()
	r := httptest.NewRequest(http.MethodPost, "https://sts.us-east-1.amazonaws.com/", strings.NewReader(body))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")
	rec := httptest.NewRecorder()
	w.h.ServeHTTP(rec, r)
	return rec.Code, rec.Body.Bytes()
}

type xmlWebIdentity struct {
	XMLName xml.Name `xml:"https://sts.amazonaws.com/doc/2011-06-15/ AssumeRoleWithWebIdentityResponse"`
	Result  struct {
		Credentials struct {
			AccessKeyID     string `xml:"AccessKeyId"`
			SecretAccessKey string
			SessionToken    string
			Expiration      string
		}
		SubjectFromWebIdentityToken string
		AssumedRoleUser             struct {
			AssumedRoleID string `xml:"AssumedRoleId"`
			Arn           string
		}
		PackedPolicySize *int
		Provider         string
		Audience         string
	} `xml:"AssumeRoleWithWebIdentityResult"`
	RequestID string `xml:"ResponseMetadata>RequestId"`
}

func TestAssumeRoleWithWebIdentity(t *testing.T) {
	w := newWebEnv(t)
	tok := w.token(t, "repo:example/orders:ref:refs/heads/main", nil)
	code, body := w.unsigned(t, "RoleArn", w.roleARN("ci"), "RoleSessionName", "gha-run-1", "WebIdentityToken", tok, "DurationSeconds", "7200")
	if code != http.StatusOK {
		t.Fatalf("AssumeRoleWithWebIdentity: %d %s", code, body)
	}
	var x xmlWebIdentity
	if err := xml.Unmarshal(body, &x); err != nil {
		t.Fatalf("%v: %s", err, body)
	}
	r := x.Result
	wantARN := "arn:aws:sts::123456789012:assumed-role/ci/gha-run-1"
	if r.AssumedRoleUser.Arn != wantARN || r.SubjectFromWebIdentityToken != "repo:example/orders:ref:refs/heads/main" ||
		r.Audience != "sts.amazonaws.com" || r.Provider != w.is.Provider().ARN || x.RequestID == "" ||
		!strings.HasPrefix(r.AssumedRoleUser.AssumedRoleID, "AROA") || r.PackedPolicySize != nil {
		t.Fatalf("result %+v", x)
	}
	if got := w.issuer.last(); got.Principal != wantARN || got.Role != w.roleARN("ci") || got.Expires.Sub(got.IssuedAt) != 2*time.Hour {
		t.Fatalf("issued %+v", got)
	}
	creds := aws.Credentials{AccessKeyID: r.Credentials.AccessKeyID, SecretAccessKey: r.Credentials.SecretAccessKey, SessionToken: r.Credentials.SessionToken}
	code, body = w.call(t, creds, form("GetCallerIdentity"))
	if code != http.StatusOK || !strings.Contains(string(body), "<Arn>"+wantARN+"</Arn>") {
		t.Fatalf("GetCallerIdentity with the web identity session: %d %s", code, body)
	}

	evs := w.audit.all()
	if len(evs) != 2 {
		t.Fatalf("%d audit events, want 2", len(evs))
	}
	ev := evs[0]
	if ev.EventName != "AssumeRoleWithWebIdentity" || ev.UserIdentity.Type != "WebIdentityUser" ||
		ev.UserIdentity.UserName != "repo:example/orders:ref:refs/heads/main" || ev.UserIdentity.IdentityProvider != w.is.Provider().Name || ev.ErrorCode != "" {
		t.Fatalf("audit event %+v", ev)
	}
	noSecrets(t, evs, tok, creds.SecretAccessKey, creds.SessionToken)
}

func TestAssumeRoleWithWebIdentityDenials(t *testing.T) {
	w := newWebEnv(t)
	other := oidctest.Start(t, oidctest.Options{})
	good := "repo:example/orders:ref:refs/heads/main"
	tampered := func(t *testing.T) string {
		tok := w.token(t, good, nil)
		parts := strings.Split(tok, ".")
		forged := w.token(t, "repo:example/orders:evil", nil)
		return strings.Split(forged, ".")[0] + "." + strings.Split(forged, ".")[1] + "." + parts[2]
	}
	tests := []struct {
		name, role, duration string
		token                func(t *testing.T) string
		code                 string
		status               int
	}{
		{"expired JWT is ExpiredTokenException", "ci", "", func(t *testing.T) string {
			return w.token(t, good, func(c map[string]any) {
				c["iat"], c["nbf"], c["exp"] = time.Now().Add(-2*time.Hour).Unix(), time.Now().Add(-2*time.Hour).Unix(), time.Now().Add(-time.Hour).Unix()
			})
		}, "ExpiredTokenException", 400},
		{"audience not a client id is InvalidIdentityToken", "ci", "", func(t *testing.T) string {
			return w.token(t, good, func(c map[string]any) { c["aud"] = "someone-else" })
		}, "InvalidIdentityToken", 400},
		{"issuer not a provider of the perimeter is InvalidIdentityToken", "ci", "", func(t *testing.T) string {
			return other.Mint(t, other.Claims(good, time.Now()))
		}, "InvalidIdentityToken", 400},
		{"issuer claim naming our provider but signed by another key is InvalidIdentityToken", "ci", "", func(t *testing.T) string {
			c := other.Claims(good, time.Now())
			c["iss"] = w.is.URL
			return other.Mint(t, c)
		}, "InvalidIdentityToken", 400},
		{"tampered claims under the original signature are InvalidIdentityToken", "ci", "", tampered, "InvalidIdentityToken", 400},
		{"trust policy sub condition not met is AccessDenied", "ci", "", func(t *testing.T) string {
			return w.token(t, "repo:example/payments:ref:refs/heads/main", nil)
		}, "AccessDenied", 403},
		{"role trusting another provider is AccessDenied", "other", "", func(t *testing.T) string { return w.token(t, good, nil) }, "AccessDenied", 403},
		{"unknown role is AccessDenied, same message", "nope", "", func(t *testing.T) string { return w.token(t, good, nil) }, "AccessDenied", 403},
		{"duration over the role's 2h max is ValidationError", "ci", "7201", func(t *testing.T) string { return w.token(t, good, nil) }, "ValidationError", 400},
		{"duration over the API max is ValidationError", "ci", "43201", func(t *testing.T) string { return w.token(t, good, nil) }, "ValidationError", 400},
		{"token too short is ValidationError", "ci", "", func(t *testing.T) string { return "zqz" }, "ValidationError", 400},
		{"not a JWT is InvalidIdentityToken", "ci", "", func(t *testing.T) string { return "not-a-jwt-at-all" }, "InvalidIdentityToken", 400},
		// AWS takes tokens of up to 20,000 characters: a long one reaches the verifier.
		{"12 KiB token reaches the verifier", "ci", "", func(t *testing.T) string { return strings.Repeat("a", 12<<10) }, "InvalidIdentityToken", 400},
		// Past the parser's bound the action cannot be read, so the unsigned request is
		// refused as unauthenticated: it never reaches AssumeRoleWithWebIdentity.
		{"token over 20,000 chars is refused", "ci", "", func(t *testing.T) string { return strings.Repeat("a", 20001) }, "MissingAuthenticationToken", 403},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tok := tc.token(t)
			kv := []string{"RoleArn", w.roleARN(tc.role), "RoleSessionName", "s1", "WebIdentityToken", tok}
			if tc.duration != "" {
				kv = append(kv, "DurationSeconds", tc.duration)
			}
			before := len(w.audit.all())
			code, body := w.unsigned(t, kv...)
			e := parseError(t, body)
			if code != tc.status || e.Code != tc.code {
				t.Fatalf("got %d %s %q, want %d %s", code, e.Code, e.Message, tc.status, tc.code)
			}
			if tc.code == "AccessDenied" && e.Message != "Not authorized to perform sts:AssumeRoleWithWebIdentity" {
				t.Errorf("message %q", e.Message)
			}
			if strings.Contains(e.Message, tok) {
				t.Errorf("the error echoes the token")
			}
			evs := w.audit.all()
			if len(evs) != before+1 || evs[len(evs)-1].ErrorCode != tc.code {
				t.Fatalf("want one audit event with %s", tc.code)
			}
			noSecrets(t, evs, tok)
		})
	}
}

func TestAssumeRoleWithWebIdentityRefusals(t *testing.T) {
	w := newWebEnv(t)
	tok := w.token(t, "repo:example/orders:x", nil)
	for _, tc := range []struct {
		name string
		kv   []string
		code string
	}{
		{"ProviderId is not supported", []string{"RoleArn", w.roleARN("ci"), "RoleSessionName", "s1", "WebIdentityToken", tok, "ProviderId", "www.amazon.com"}, "InvalidParameterValue"},
		{"missing token", []string{"RoleArn", w.roleARN("ci"), "RoleSessionName", "s1"}, "ValidationError"},
		{"missing session name", []string{"RoleArn", w.roleARN("ci"), "WebIdentityToken", tok}, "ValidationError"},
		{"bad session name", []string{"RoleArn", w.roleARN("ci"), "RoleSessionName", "a b", "WebIdentityToken", tok}, "ValidationError"},
		{"malformed session policy", []string{"RoleArn", w.roleARN("ci"), "RoleSessionName", "s1", "WebIdentityToken", tok, "Policy", "{"}, "MalformedPolicyDocument"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, body := w.unsigned(t, tc.kv...)
			if e := parseError(t, body); code != http.StatusBadRequest || e.Code != tc.code {
				t.Fatalf("got %d %+v, want %s", code, e, tc.code)
			}
		})
	}
	// Without a verifier every token is refused.
	w.h.cfg.WebIdentity = nil
	code, body := w.unsigned(t, "RoleArn", w.roleARN("ci"), "RoleSessionName", "s1", "WebIdentityToken", tok)
	if e := parseError(t, body); code != http.StatusBadRequest || e.Code != "InvalidIdentityToken" {
		t.Fatalf("no verifier: %d %+v", code, e)
	}
}

const webSub = "repo:example/orders:ref:refs/heads/main"

// unsignedEnv is a client environment with no credentials at all: AssumeRoleWithWebIdentity
// is unsigned, so the clients must not need any.
func (w *webEnv) unsignedEnv(t *testing.T) []string {
	return []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + t.TempDir(),
		"AWS_DEFAULT_REGION=us-east-1",
		"AWS_CA_BUNDLE=" + w.caFile,
		"AWS_CONFIG_FILE=/dev/null",
		"AWS_SHARED_CREDENTIALS_FILE=/dev/null",
		"AWS_EC2_METADATA_DISABLED=true",
		"AWS_PAGER=",
	}
}

// TestWebIdentityAWSCLI runs aws sts assume-role-with-web-identity, then uses the returned
// credentials with aws sts get-caller-identity; a wrong audience is InvalidIdentityToken.
func TestWebIdentityAWSCLI(t *testing.T) {
	bin := needTool(t, "aws")
	w := newWebEnv(t)
	w.serve(t)
	run := func(env []string, args ...string) (string, string, error) {
		cmd := exec.Command(bin, append([]string{"--endpoint-url", w.srv.URL, "--output", "json"}, args...)...)
		cmd.Env = env
		var out, errb strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &errb
		err := cmd.Run()
		return out.String(), errb.String(), err
	}
	out, stderr, err := run(w.unsignedEnv(t), "sts", "assume-role-with-web-identity", "--role-arn", w.roleARN("ci"),
		"--role-session-name", "cli", "--web-identity-token", w.token(t, webSub, nil))
	if err != nil {
		t.Fatalf("assume-role-with-web-identity: %v\n%s", err, stderr)
	}
	var got struct {
		cliCreds
		SubjectFromWebIdentityToken, Provider, Audience string
	}
	decodeJSON(t, out, &got)
	if got.AssumedRoleUser.Arn != "arn:aws:sts::123456789012:assumed-role/ci/cli" || got.SubjectFromWebIdentityToken != webSub ||
		got.Audience != "sts.amazonaws.com" || got.Provider != w.is.Provider().ARN || !strings.HasPrefix(got.Credentials.AccessKeyID, "ASIA") {
		t.Fatalf("result %s", out)
	}
	c := got.aws()
	out, stderr, err = w.awsCLI(t, c, "sts", "get-caller-identity")
	if err != nil || !strings.Contains(out, "assumed-role/ci/cli") {
		t.Fatalf("get-caller-identity with the session: %v %s\n%s", err, out, stderr)
	}

	_, stderr, err = run(w.unsignedEnv(t), "sts", "assume-role-with-web-identity", "--role-arn", w.roleARN("ci"),
		"--role-session-name", "cli", "--web-identity-token", w.token(t, webSub, func(c map[string]any) { c["aud"] = "other" }))
	if err == nil || !strings.Contains(stderr, "(InvalidIdentityToken)") {
		t.Fatalf("wrong audience: %v\n%s", err, stderr)
	}
}

// TestWebIdentityBotocore calls AssumeRoleWithWebIdentity through botocore without
// credentials, and checks an untrusted subject's AccessDenied.
func TestWebIdentityBotocore(t *testing.T) {
	py := testenv.Python(t, "botocore")
	w := newWebEnv(t)
	w.serve(t)
	const script = `
import json, sys, botocore.session
from botocore.exceptions import ClientError
url, role, good, bad = sys.argv[1:5]
c = botocore.session.get_session().create_client("sts", region_name="us-east-1", endpoint_url=url)
r = c.assume_role_with_web_identity(RoleArn=role, RoleSessionName="boto", WebIdentityToken=good, DurationSeconds=900)
out = {"arn": r["AssumedRoleUser"]["Arn"], "sub": r["SubjectFromWebIdentityToken"], "aud": r["Audience"], "provider": r["Provider"], "key": r["Credentials"]["AccessKeyId"][:4]}
try:
    c.assume_role_with_web_identity(RoleArn=role, RoleSessionName="boto", WebIdentityToken=bad)
except ClientError as e:
    out["denied"] = e.response["Error"]["Code"]
    out["status"] = e.response["ResponseMetadata"]["HTTPStatusCode"]
print(json.dumps(out))
`
	cmd := exec.Command(py, "-c", script, w.srv.URL, w.roleARN("ci"), w.token(t, webSub, nil), w.token(t, "repo:example/payments:x", nil))
	cmd.Env = append(w.unsignedEnv(t), "AWS_CA_BUNDLE="+w.caFile)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("botocore: %v\n%s", err, stderr.String())
	}
	var got struct {
		Arn, Sub, Aud, Provider, Key, Denied string
		Status                               int
	}
	decodeJSON(t, string(out), &got)
	if got.Arn != "arn:aws:sts::123456789012:assumed-role/ci/boto" || got.Sub != webSub || got.Aud != "sts.amazonaws.com" ||
		got.Provider != w.is.Provider().ARN || got.Key != "ASIA" || got.Denied != "AccessDenied" || got.Status != 403 {
		t.Fatalf("botocore got %+v", got)
	}
}

// TestWebIdentitySDKGoV2 uses aws-sdk-go-v2's STS client with no credentials provider.
func TestWebIdentitySDKGoV2(t *testing.T) {
	w := newWebEnv(t)
	w.serve(t)
	ctx := context.Background()
	c := awssts.New(awssts.Options{Region: "us-east-1", BaseEndpoint: aws.String(w.srv.URL), HTTPClient: w.srv.Client(), RetryMaxAttempts: 1})
	out, err := c.AssumeRoleWithWebIdentity(ctx, &awssts.AssumeRoleWithWebIdentityInput{
		RoleArn: aws.String(w.roleARN("ci")), RoleSessionName: aws.String("sdk"), WebIdentityToken: aws.String(w.token(t, webSub, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	if aws.ToString(out.AssumedRoleUser.Arn) != "arn:aws:sts::123456789012:assumed-role/ci/sdk" || aws.ToString(out.SubjectFromWebIdentityToken) != webSub ||
		aws.ToString(out.Provider) != w.is.Provider().ARN || aws.ToString(out.Audience) != "sts.amazonaws.com" {
		t.Fatalf("output %+v", out)
	}
	creds := aws.Credentials{AccessKeyID: aws.ToString(out.Credentials.AccessKeyId), SecretAccessKey: aws.ToString(out.Credentials.SecretAccessKey), SessionToken: aws.ToString(out.Credentials.SessionToken)}
	id, err := w.sdkClient(creds).GetCallerIdentity(ctx, &awssts.GetCallerIdentityInput{})
	if err != nil || aws.ToString(id.Arn) != "arn:aws:sts::123456789012:assumed-role/ci/sdk" {
		t.Fatalf("GetCallerIdentity: %v %+v", err, id)
	}
	_, err = c.AssumeRoleWithWebIdentity(ctx, &awssts.AssumeRoleWithWebIdentityInput{
		RoleArn: aws.String(w.roleARN("ci")), RoleSessionName: aws.String("sdk"),
		WebIdentityToken: aws.String(w.token(t, webSub, func(m map[string]any) {
			m["exp"] = m["iat"].(int64) - 600
			m["iat"] = m["exp"].(int64) - 600
			m["nbf"] = m["iat"]
		})),
	})
	if code, _, status := apiCode(t, err); code != "ExpiredTokenException" || status != 400 {
		t.Fatalf("expired token: %s %d", code, status)
	}
}
