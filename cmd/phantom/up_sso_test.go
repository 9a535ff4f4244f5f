package main

import (
	"bufio"
	"context"
	"encoding/base32"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/chromedp/chromedp"
	"go.yaml.in/yaml/v3"

	"github.com/phantom-perimeter/phantom/internal/login"
	"github.com/phantom-perimeter/phantom/internal/mfa"
	"github.com/phantom-perimeter/phantom/internal/sso/ssotest"
	"github.com/phantom-perimeter/phantom/internal/testenv"
)

// ssoUp is `phantom up` with the demo spec extended by a real OIDC provider (zitadel's OP,
// started here) as its sign-in provider, a role people take through it, and a role that
// requires MFA.
type ssoUp struct {
	*upServer
	bin   string
	op    *ssotest.OP
	home  string // HOME and the sign-in cache of the person at the terminal
	cache string
}

const (
	developerARN = "arn:aws:iam::123456789012:role/developer"
	mfaAdminARN  = "arn:aws:iam::123456789012:role/mfa-admin"
)

func startSSOUp(t *testing.T) *ssoUp {
	t.Helper()
	testenv.LookPath(t, "aws")
	testenv.LookPath(t, "curl")
	bin := buildPhantom(t)
	s := &ssoUp{upServer: startUp(t, bin), bin: bin, home: t.TempDir()}
	s.cache = filepath.Join(s.home, "cache")
	s.op = ssotest.Start(t, ssotest.Options{Users: []ssotest.User{
		{Name: "alice", Password: "correct horse", Email: "alice@example.com", Groups: []string{"payments"},
			Roles: []string{"developer"}, Tags: map[string]string{"team": "payments"}},
	}})
	s.extendSpec(t)
	return s
}

// extendSpec edits the running perimeter's spec as an operator would, and waits until STS
// publishes the sign-in provider (the reload reached it).
func (s *ssoUp) extendSpec(t *testing.T) {
	t.Helper()
	path := filepath.Join(s.dataDir, "perimeter.yaml")
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var spec map[string]any
	if err := yaml.Unmarshal(raw, &spec); err != nil {
		t.Fatal(err)
	}
	provider := "arn:aws:iam::123456789012:oidc-provider/" + strings.TrimPrefix(s.op.URL, "http://")
	region := s.env["AWS_REGION"]
	spec["oidcProviders"] = []any{map[string]any{"url": s.op.URL, "clientIds": []any{"phantom"},
		"signIn": map[string]any{"clientId": "phantom", "roleClaim": ssotest.DefaultRoleClaim}}}
	stmt := func(kv ...any) map[string]any {
		m := map[string]any{}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i].(string)] = kv[i+1]
		}
		return m
	}
	doc := func(stmts ...any) map[string]any { return map[string]any{"Version": "2012-10-17", "Statement": stmts} }
	spec["roles"] = append(spec["roles"].([]any),
		map[string]any{"name": "developer", "maxSessionDuration": "1h", "trustPolicy": doc(
			stmt("Effect", "Allow", "Principal", map[string]any{"Federated": provider}, "Action", "sts:AssumeRoleWithWebIdentity",
				"Condition", map[string]any{"StringEquals": map[string]any{strings.TrimPrefix(s.op.URL, "http://") + ":aud": "phantom"}}),
			stmt("Effect", "Allow", "Principal", map[string]any{"Federated": provider}, "Action", "sts:TagSession",
				"Condition", map[string]any{"StringEquals": map[string]any{"aws:RequestTag/team": "payments"}})),
			"policies": []any{map[string]any{"name": "reports-for-payments", "document": doc(
				stmt("Effect", "Allow", "Action", "execute-api:Invoke", "Resource", "arn:aws:execute-api:"+region+":123456789012:a1b2c3d4e5/prod/GET/reports",
					"Condition", map[string]any{"StringEquals": map[string]any{"aws:PrincipalTag/team": "payments"}}),
				stmt("Effect", "Allow", "Action", []any{"iam:GetAccountAuthorizationDetails", "ec2:DescribeVpcEndpoints", "apigateway:GET", "cloudtrail:LookupEvents"}, "Resource", "*"))}}},
		map[string]any{"name": "mfa-admin", "trustPolicy": doc(
			stmt("Effect", "Allow", "Principal", map[string]any{"AWS": "arn:aws:iam::123456789012:user/demo"}, "Action", "sts:AssumeRole",
				"Condition", map[string]any{"Bool": map[string]any{"aws:MultiFactorAuthPresent": "true"}})),
			"policies": []any{map[string]any{"name": "nothing", "document": doc(stmt("Effect", "Deny", "Action", "*", "Resource", "*"))}}},
	)
	for _, u := range spec["users"].([]any) {
		um := u.(map[string]any)
		if um["name"] == "demo" {
			um["policies"] = append(um["policies"].([]any), map[string]any{"name": "assume-mfa-admin",
				"document": doc(stmt("Effect", "Allow", "Action", "sts:AssumeRole", "Resource", mfaAdminARN))})
		}
	}
	// The demo endpoint's policy admits named principals; admit the developer role too.
	for _, e := range spec["endpoints"].([]any) {
		pol, _ := e.(map[string]any)["policy"].(map[string]any)
		stmts, _ := pol["Statement"].([]any)
		for _, st := range stmts {
			cond, _ := st.(map[string]any)["Condition"].(map[string]any)
			arnEq, _ := cond["ArnEquals"].(map[string]any)
			if list, ok := arnEq["aws:PrincipalArn"].([]any); ok {
				arnEq["aws:PrincipalArn"] = append(list, developerARN)
			}
		}
	}
	out, err := yaml.Marshal(spec)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, out, 0o600); err != nil {
		t.Fatal(err)
	}
	c := s.goClient(t, nil)
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := c.Get(s.env["PHANTOM_STS_URL"] + "/.well-known/phantom/sign-in")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the edited spec did not reach STS: %v\n%s", err, s.logs())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// phantomCmd is the binary run as the person at the terminal: their HOME and sign-in
// cache, the demo's STS and CA, no AWS key in the environment.
func (s *ssoUp) phantomCmd(args ...string) *exec.Cmd {
	cmd := exec.Command(s.bin, args...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "AWS_") && !strings.HasPrefix(kv, "PHANTOM_") && !strings.HasPrefix(kv, "HOME=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, "HOME="+s.home, "PHANTOM_SSO_CACHE="+s.cache, "PHANTOM_STS_URL="+s.env["PHANTOM_STS_URL"], "AWS_CA_BUNDLE="+s.env["AWS_CA_BUNDLE"])
	return cmd
}

// login runs phantom login with args; answer gets each line it prints to stderr until it
// returns true (it acts for the person: approves the device code, opens the URL).
func (s *ssoUp) login(t *testing.T, answer func(line string) bool, args ...string) {
	t.Helper()
	cmd := s.phantomCmd(append([]string{"login"}, args...)...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	sc := bufio.NewScanner(stderr)
	answered := false
	for sc.Scan() {
		out.WriteString(sc.Text() + "\n")
		if !answered {
			answered = answer(sc.Text())
		}
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil || !strings.Contains(out.String(), "Signed in as alice") {
			t.Fatalf("phantom login %v: %v\n%s", args, err, out.String())
		}
	case <-time.After(60 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("phantom login did not finish:\n%s", out.String())
	}
}

// credentials runs phantom credentials --login and returns its credential_process answer.
func (s *ssoUp) credentials(t *testing.T, session string) (aws.Credentials, error) {
	t.Helper()
	cmd := s.phantomCmd("credentials", "--login", "--sso-session", session)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return aws.Credentials{}, fmt.Errorf("%w: %s", err, stderr.String())
	}
	var c struct{ AccessKeyId, SecretAccessKey, SessionToken string }
	if err := json.Unmarshal([]byte(stdout.String()), &c); err != nil {
		t.Fatalf("credential_process output %q: %v", stdout.String(), err)
	}
	return aws.Credentials{AccessKeyID: c.AccessKeyId, SecretAccessKey: c.SecretAccessKey, SessionToken: c.SessionToken}, nil
}

// TestUpSSODeviceFlowAWSCLI: a person signs in with the device flow against a real OIDC
// provider, and the AWS CLI gets sessions of the role from a credential_process profile
// with no long-term key anywhere; the session's tags (from the token's claim) decide the
// API call; expired sessions are renewed with the refresh token, and fail once the
// provider revokes it. The browser flow with PKCE signs in too.
func TestUpSSODeviceFlowAWSCLI(t *testing.T) {
	s := startSSOUp(t)
	codeRe := regexp.MustCompile(`enter the code: (\S+)`)
	s.login(t, func(line string) bool {
		m := codeRe.FindStringSubmatch(line)
		if m == nil {
			return false
		}
		s.op.ApproveDevice(t, m[1], "alice", "correct horse") // the person, on another device
		return true
	}, "--use-device-code", "--no-browser")
	files, _ := os.ReadDir(s.cache)
	if st, err := os.Stat(s.cache); err != nil || st.Mode().Perm() != 0o700 || len(files) != 1 {
		t.Fatalf("sign-in cache %s: %v %v", s.cache, err, files)
	}

	// The AWS CLI through credential_process: the profile names no key.
	cfg := filepath.Join(s.home, "aws-config")
	os.WriteFile(cfg, []byte("[profile phantom]\nregion = "+s.env["AWS_REGION"]+"\ncredential_process = "+s.bin+" credentials --login\n"), 0o600)
	cli := exec.Command("aws", "sts", "get-caller-identity", "--profile", "phantom", "--endpoint-url", s.env["PHANTOM_STS_URL"], "--output", "json")
	cli.Env = append(s.phantomCmd().Env, "AWS_CONFIG_FILE="+cfg, "AWS_SHARED_CREDENTIALS_FILE=/dev/null", "AWS_EC2_METADATA_DISABLED=true")
	out, err := cli.CombinedOutput()
	if err != nil {
		t.Fatalf("aws sts get-caller-identity --profile phantom: %v\n%s", err, out)
	}
	var id callerIdentity
	if err := json.Unmarshal(out, &id); err != nil || id.Arn != "arn:aws:sts::123456789012:assumed-role/developer/alice" {
		t.Fatalf("caller identity %s (%v)", out, err)
	}

	// The session's team tag (from the token's https://aws.amazon.com/tags claim) is what
	// the developer role's policy allows /reports on, which refuses long-term keys.
	sess, err := s.credentials(t, "default")
	if err != nil {
		t.Fatal(err)
	}
	reports := "https://" + s.env["PHANTOM_ENDPOINT_ADDR"] + "/prod/reports"
	if r := s.curl(t, &sess, reports); r.Status != http.StatusOK || !strings.Contains(r.Body, "assumed-role/developer/alice") {
		t.Fatalf("the SSO session on /reports: %s", r)
	}

	// Renewal: the cached session and ID token expired; the refresh token gets new ones.
	expire := func() {
		t.Helper()
		e, err := login.Load(s.cache, "default")
		if err != nil {
			t.Fatal(err)
		}
		e.Credentials.Expiration = time.Now().Add(-time.Minute)
		e.IDTokenExpiresAt = time.Now().Add(-time.Minute)
		if err := login.Save(s.cache, "default", e); err != nil {
			t.Fatal(err)
		}
	}
	expire()
	renewed, err := s.credentials(t, "default")
	if err != nil || renewed.AccessKeyID == sess.AccessKeyID || s.op.Refreshes() != 1 {
		t.Fatalf("renewal: %v (new key %v, refreshes %d)", err, renewed.AccessKeyID != sess.AccessKeyID, s.op.Refreshes())
	}
	expire()
	s.op.RevokeRefreshTokens()
	if _, err := s.credentials(t, "default"); err == nil || !strings.Contains(err.Error(), "exit status 253") || !strings.Contains(err.Error(), "run phantom login") {
		t.Fatalf("a revoked refresh token: %v", err)
	}

	// The browser flow: the person opens the printed URL and signs in; the provider
	// redirects the browser to phantom login's loopback listener.
	urlRe := regexp.MustCompile(`^\s+(http://127\.0\.0\.1:\d+/authorize\?\S+)$`)
	s.login(t, func(line string) bool {
		m := urlRe.FindStringSubmatch(line)
		if m == nil {
			return false
		}
		go func() {
			cb := s.op.SignIn(t, m[1], "alice", "correct horse")
			if resp, err := http.Get(cb); err == nil {
				resp.Body.Close()
			}
		}()
		return true
	}, "--no-browser", "--sso-session", "web")
	if _, err := s.credentials(t, "web"); err != nil {
		t.Fatalf("after the browser flow: %v", err)
	}
}

// TestUpLongTermKeysAndMFA: the demo's /reports route refuses the demo user's long-term
// key and takes the same user's STS session; a role whose trust policy requires MFA
// refuses the demo user without a code and admits them with one from a virtual MFA device
// enabled through phantom iam, once per code, all with the AWS CLI.
func TestUpLongTermKeysAndMFA(t *testing.T) {
	s := startSSOUp(t)
	user := s.user()
	reports := "https://" + s.env["PHANTOM_ENDPOINT_ADDR"] + "/prod/reports"
	if r := s.curl(t, &user, reports); r.Status != http.StatusForbidden || r.Type != "AccessDeniedException" || !strings.Contains(r.Body, "accepts only temporary credentials") {
		t.Fatalf("the demo user's AKIA key on /reports: %s", r)
	}
	out, errOut, err := s.aws(t, user, "sts", "get-session-token", "--endpoint-url", s.env["PHANTOM_STS_URL"])
	if err != nil {
		t.Fatalf("get-session-token: %v\n%s", err, errOut)
	}
	var c cliCreds
	json.Unmarshal(out, &c)
	if sess := c.aws(); true {
		if r := s.curl(t, &sess, reports); r.Status != http.StatusOK || !strings.Contains(r.Body, "user/demo") {
			t.Fatalf("the demo user's session on /reports: %s", r)
		}
	}

	// A virtual MFA device for the demo user, through phantom iam on the running
	// perimeter's data directory.
	spec := filepath.Join(s.dataDir, "perimeter.yaml")
	seedFile := filepath.Join(t.TempDir(), "seed")
	iam := func(args ...string) []byte {
		t.Helper()
		cmd := exec.Command(s.bin, append(append([]string{"iam"}, args...), "--data-dir", s.dataDir, "--config", spec)...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("phantom iam %v: %v\n%s", args, err, out)
		}
		return out
	}
	var dev struct{ VirtualMFADevice struct{ SerialNumber string } }
	json.Unmarshal(iam("create-virtual-mfa-device", "--virtual-mfa-device-name", "demo-phone", "--outfile", seedFile, "--bootstrap-method", "Base32StringSeed"), &dev)
	serial := dev.VirtualMFADevice.SerialNumber
	raw, _ := os.ReadFile(seedFile)
	seed, err := base32.StdEncoding.WithPadding(base32.NoPadding).DecodeString(strings.TrimSpace(string(raw)))
	if err != nil || serial == "" {
		t.Fatalf("device %q, seed: %v", serial, err)
	}
	now := mfa.Step(time.Now())
	iam("enable-mfa-device", "--user-name", "demo", "--serial-number", serial,
		"--authentication-code1", mfa.Code(seed, now-1), "--authentication-code2", mfa.Code(seed, now))

	assume := func(extra ...string) ([]byte, string, error) {
		return s.aws(t, user, append([]string{"sts", "assume-role", "--role-arn", mfaAdminARN, "--role-session-name", "admin",
			"--endpoint-url", s.env["PHANTOM_STS_URL"]}, extra...)...)
	}
	if _, errOut, err := assume(); err == nil || !strings.Contains(errOut, "AccessDenied") {
		t.Fatalf("without MFA: %v %s", err, errOut)
	}
	code := mfa.Code(seed, now+1) // enabling took the current step
	if out, errOut, err := assume("--serial-number", serial, "--token-code", code); err != nil {
		t.Fatalf("with a valid code: %v\n%s", err, errOut)
	} else if !strings.Contains(string(out), "assumed-role/mfa-admin/admin") {
		t.Fatalf("with a valid code: %s", out)
	}
	if _, errOut, err := assume("--serial-number", serial, "--token-code", code); err == nil || !strings.Contains(errOut, "MultiFactorAuthentication failed") {
		t.Fatalf("the same code twice: %v %s", err, errOut)
	}
}

// TestUpConsoleSSOChromium: the console's single sign-on in Chromium against the real
// provider: "Sign in with ...", the provider's login page, back to the console signed in
// as a session of the developer role; revoking the role's sessions signs the console out.
func TestUpConsoleSSOChromium(t *testing.T) {
	const chromium = "/usr/bin/chromium"
	if _, err := os.Stat(chromium); err != nil {
		testenv.Skipf(t, "%s is missing (apt-get install chromium): skipping the console SSO browser test", chromium)
	}
	s := startSSOUp(t)
	base := strings.TrimSuffix(s.env["PHANTOM_CONSOLE_URL"], "/")
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(chromium), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck, chromedp.UserDataDir(t.TempDir()), chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		// The console's certificate is from the perimeter CA, which this profile does not
		// trust (a person's browser would, through ca.pem).
		chromedp.IgnoreCertErrors)
	t.Cleanup(cancelAlloc)
	bctx, cancel := chromedp.NewContext(alloc)
	t.Cleanup(cancel)
	if err := chromedp.Do(bctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	step := func(name string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		sctx, cancel := context.WithTimeout(bctx, 45*time.Second)
		defer cancel()
		if err := chromedp.Do(sctx, steps...); err != nil {
			loc, _ := chromedp.Run(bctx, chromedp.Location())
			t.Fatalf("%s: %v (at %s)\n%s", name, err, loc, s.logs())
		}
	}
	text := func(sel string) string {
		t.Helper()
		sctx, cancel := context.WithTimeout(bctx, 30*time.Second)
		defer cancel()
		v, err := chromedp.Run(sctx, chromedp.Text(chromedp.CSS(sel)))
		if err != nil {
			t.Fatalf("text of %s: %v", sel, err)
		}
		return v
	}
	step("open the console", chromedp.Navigate(base+"/"), chromedp.WaitVisible(chromedp.ID("sso")))
	step("sign in with the provider", chromedp.Click(chromedp.ID("sso")), chromedp.WaitVisible(chromedp.ID("username")))
	step("the provider's login page", chromedp.SendKeys(chromedp.ID("username"), "alice"), chromedp.SendKeys(chromedp.ID("password"), "correct horse"),
		chromedp.Click(chromedp.ID("submit")), chromedp.WaitVisible(chromedp.CSS("header .who")))
	if got := text("header .who"); !strings.Contains(got, "arn:aws:sts::123456789012:assumed-role/developer/alice") {
		t.Fatalf("signed in as %q", got)
	}
	if loc, _ := chromedp.Run(bctx, chromedp.Location()); loc != base+"/" {
		t.Errorf("after sign-in the browser is at %s", loc)
	}
	cmd := exec.Command(s.bin, "iam", "revoke-sessions", "--role", "developer", "--data-dir", s.dataDir, "--config", filepath.Join(s.dataDir, "perimeter.yaml"))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("revoke-sessions: %v\n%s", err, out)
	}
	// Revocations reach the console's identity service within its poll (200ms here).
	deadline := time.Now().Add(10 * time.Second)
	for {
		step("reload", chromedp.Navigate(base+"/"), chromedp.WaitReady(chromedp.CSS("main")))
		if loc, _ := chromedp.Run(bctx, chromedp.Location()); strings.HasSuffix(loc, "/signin?ended=1") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the console session outlived the revocation of its role session")
		}
		time.Sleep(300 * time.Millisecond)
	}
}
