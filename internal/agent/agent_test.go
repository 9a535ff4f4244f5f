package agent

import (
	"context"
	"crypto"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/phantom-perimeter/phantom/internal/nodeapi"
	"github.com/phantom-perimeter/phantom/internal/testenv"
)

func req(t testing.TB, method, url string, hdr ...string) (int, http.Header, string) {
	t.Helper()
	r, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		r.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(r)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

func imdsToken(t testing.TB, a *servedAgent, ttl string) string {
	t.Helper()
	code, h, tok := req(t, "PUT", a.imds+"/latest/api/token", "X-aws-ec2-metadata-token-ttl-seconds", ttl)
	if code != 200 || h.Get("X-aws-ec2-metadata-token-ttl-seconds") != ttl || tok == "" {
		t.Fatalf("token: %d %v %q", code, h, tok)
	}
	return tok
}

// TestIMDS: the IMDSv2 rules of the EC2 User Guide, row by row.
func TestIMDS(t *testing.T) {
	p := newPerimeter(t)
	a := startAgent(t, p, "service-a-1", nil)
	tok := imdsToken(t, a, "21600")
	creds := a.imds + "/latest/meta-data/iam/security-credentials/"
	forged := []byte(tok)
	forged[len(forged)/2] ^= 1
	tests := []struct {
		name   string
		method string
		url    string
		hdr    []string
		status int
	}{
		{"token without a TTL", "PUT", a.imds + "/latest/api/token", nil, 400},
		{"token TTL 0", "PUT", a.imds + "/latest/api/token", []string{"X-aws-ec2-metadata-token-ttl-seconds", "0"}, 400},
		{"token TTL above 21600", "PUT", a.imds + "/latest/api/token", []string{"X-aws-ec2-metadata-token-ttl-seconds", "21601"}, 400},
		{"token TTL not a number", "PUT", a.imds + "/latest/api/token", []string{"X-aws-ec2-metadata-token-ttl-seconds", "+60"}, 400},
		{"token through a proxy (X-Forwarded-For)", "PUT", a.imds + "/latest/api/token", []string{"X-aws-ec2-metadata-token-ttl-seconds", "60", "X-Forwarded-For", "10.0.0.1"}, 403},
		{"token by GET", "GET", a.imds + "/latest/api/token", []string{"X-aws-ec2-metadata-token-ttl-seconds", "60"}, 405},
		{"IMDSv1 (no token)", "GET", creds, nil, 401},
		{"forged token", "GET", creds, []string{"X-aws-ec2-metadata-token", string(forged)}, 401},
		{"garbage token", "GET", creds, []string{"X-aws-ec2-metadata-token", "AQAEAB"}, 401},
		{"valid token through a proxy", "GET", creds, []string{"X-aws-ec2-metadata-token", tok, "X-Forwarded-For", "10.0.0.1"}, 403},
		// RFC 7239's Forwarded says the same as X-Forwarded-For.
		{"token through a proxy (Forwarded)", "PUT", a.imds + "/latest/api/token", []string{"X-aws-ec2-metadata-token-ttl-seconds", "60", "Forwarded", "for=10.0.0.1"}, 403},
		{"valid token through a proxy (Forwarded)", "GET", creds, []string{"X-aws-ec2-metadata-token", tok, "Forwarded", "for=\"[2001:db8::1]\";proto=https"}, 403},
		{"token through a proxy (forwarded, lower case)", "PUT", a.imds + "/latest/api/token", []string{"X-aws-ec2-metadata-token-ttl-seconds", "60", "forwarded", "for=unknown"}, 403},
		{"role list", "GET", creds, []string{"X-aws-ec2-metadata-token", tok}, 200},
		{"another role", "GET", creds + "admin", []string{"X-aws-ec2-metadata-token", tok}, 404},
		{"unknown path", "GET", a.imds + "/latest/meta-data/ami-id", []string{"X-aws-ec2-metadata-token", tok}, 404},
		{"POST credentials", "POST", creds + "app", []string{"X-aws-ec2-metadata-token", tok}, 405},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if code, _, body := req(t, tc.method, tc.url, tc.hdr...); code != tc.status {
				t.Fatalf("got %d %q, want %d", code, body, tc.status)
			}
		})
	}
	if _, _, role := req(t, "GET", creds, "X-aws-ec2-metadata-token", tok); role != "app" {
		t.Fatalf("role list %q", role)
	}
	code, h, body := req(t, "GET", creds+"app", "X-aws-ec2-metadata-token", tok)
	var doc map[string]string
	if err := json.Unmarshal([]byte(body), &doc); code != 200 || err != nil || h.Get("Content-Type") != "application/json" {
		t.Fatalf("credentials: %d %v", code, err)
	}
	c, _ := a.Credentials()
	exp := c.Expiration.Format("2006-01-02T15:04:05Z")
	if doc["Code"] != "Success" || doc["Type"] != "AWS-HMAC" || doc["AccessKeyId"] != c.AccessKeyID || doc["SecretAccessKey"] != c.SecretAccessKey ||
		doc["Token"] != c.Token || doc["Expiration"] != exp || doc["LastUpdated"] == "" || len(doc) != 7 {
		t.Fatalf("credentials document %v", docKeys(doc))
	}
	_, _, proxy := req(t, "GET", a.imds+"/latest/meta-data/phantom/egress-proxy", "X-aws-ec2-metadata-token", tok)
	if want := a.ProxyURL("127.0.0.1:3128"); proxy != want || !strings.HasPrefix(proxy, "http://service-a-1:") || !strings.HasSuffix(proxy, "@127.0.0.1:3128") {
		t.Fatalf("egress proxy URL mismatch")
	}
}

func docKeys(m map[string]string) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	return ks
}

// TestIMDSTokenTTL: a token stops working when its TTL has passed.
func TestIMDSTokenTTL(t *testing.T) {
	now := time.Now()
	clock := func() time.Time { return now }
	a := &Agent{now: clock, rand: strings.NewReader(strings.Repeat("r", 64)), imdsKey: []byte("0123456789abcdef0123456789abcdef")}
	tok, err := a.newIMDSToken(10 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if !a.validIMDSToken(tok) {
		t.Fatal("fresh token refused")
	}
	now = now.Add(9 * time.Second)
	if !a.validIMDSToken(tok) {
		t.Fatal("token refused before its TTL")
	}
	now = now.Add(time.Second)
	if a.validIMDSToken(tok) {
		t.Fatal("token accepted at its TTL")
	}
	other := &Agent{now: clock, rand: strings.NewReader(strings.Repeat("r", 64)), imdsKey: []byte("another key, another agent......")}
	if other.validIMDSToken(tok) {
		t.Fatal("another agent's token accepted")
	}
}

// TestContainerEndpoint: the container credentials protocol and its authorization.
func TestContainerEndpoint(t *testing.T) {
	p := newPerimeter(t)
	a := startAgent(t, p, "service-a-1", nil)
	u := a.container + ContainerPath
	tok := a.ContainerToken()
	tests := []struct {
		name   string
		method string
		url    string
		hdr    []string
		status int
	}{
		{"no Authorization", "GET", u, nil, 401},
		{"wrong token", "GET", u, []string{"Authorization", tok[:len(tok)-1] + "x"}, 403},
		{"token prefix", "GET", u, []string{"Authorization", tok[:10]}, 403},
		{"Bearer form", "GET", u, []string{"Authorization", "Bearer " + tok}, 403},
		{"through a proxy", "GET", u, []string{"Authorization", tok, "X-Forwarded-For", "10.0.0.1"}, 403},
		{"through a proxy (Forwarded)", "GET", u, []string{"Authorization", tok, "Forwarded", "for=10.0.0.1"}, 403},
		{"other path", "GET", a.container + "/v2/credentials", []string{"Authorization", tok}, 404},
		{"POST", "POST", u, []string{"Authorization", tok}, 405},
		{"valid", "GET", u, []string{"Authorization", tok}, 200},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if code, _, body := req(t, tc.method, tc.url, tc.hdr...); code != tc.status {
				t.Fatalf("got %d %q, want %d", code, body, tc.status)
			}
		})
	}
	_, _, body := req(t, "GET", u, "Authorization", tok)
	var doc map[string]string
	if err := json.Unmarshal([]byte(body), &doc); err != nil {
		t.Fatal(err)
	}
	c, _ := a.Credentials()
	if doc["AccessKeyId"] != c.AccessKeyID || doc["Token"] != c.Token || doc["RoleArn"] != "arn:aws:iam::123456789012:role/app" || doc["AccountId"] != testAccount ||
		doc["Expiration"] != c.Expiration.Format("2006-01-02T15:04:05Z") {
		t.Fatalf("container document %v", docKeys(doc))
	}
}

// TestHopLimit: connections accepted through HopLimitListener send with IP TTL 1, read
// back from the socket.
func TestHopLimit(t *testing.T) {
	for _, network := range []string{"tcp4", "tcp6"} {
		t.Run(network, func(t *testing.T) {
			addr := "127.0.0.1:0"
			if network == "tcp6" {
				testenv.IPv6Loopback(t)
				addr = "[::1]:0"
			}
			raw, err := net.Listen(network, addr)
			if err != nil {
				t.Fatal(err)
			}
			ln := HopLimitListener(raw, HopLimit)
			defer ln.Close()
			go func() {
				c, err := net.Dial(network, ln.Addr().String())
				if err == nil {
					time.Sleep(100 * time.Millisecond)
					c.Close()
				}
			}()
			c, err := ln.Accept()
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			got, err := hopLimit(c)
			if err != nil || got != HopLimit {
				t.Fatalf("hop limit %d, %v; want %d", got, err, HopLimit)
			}
		})
	}
}

// TestEnrollOnceThenReuse: the first start spends the join token and keeps the key
// (0600) and certificate; the next start uses them without a token.
func TestEnrollOnceThenReuse(t *testing.T) {
	p := newPerimeter(t)
	dir := filepath.Join(t.TempDir(), "state")
	tok := p.token(t, "service-a-1")
	a, err := New(Config{STS: p.srv.URL, CABundle: p.bundle, StateDir: dir, JoinToken: tok, Logger: quietLog()})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	a.Close()
	fi, err := os.Stat(filepath.Join(dir, nodeapi.KeyFile))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v %v", fi, err)
	}
	// Same token again with no state: spent.
	b, err := New(Config{STS: p.srv.URL, CABundle: p.bundle, StateDir: filepath.Join(t.TempDir(), "s2"), JoinToken: tok, Logger: quietLog()})
	if err != nil {
		t.Fatal(err)
	}
	var se *Error
	if err := b.Start(context.Background()); !errors.As(err, &se) || se.Code != "InvalidClientTokenId" {
		t.Fatalf("second enrollment with the same token: %v", err)
	}
	// The state directory, no token.
	c, err := New(Config{STS: p.srv.URL, CABundle: p.bundle, StateDir: dir, Logger: quietLog()})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(context.Background()); err != nil {
		t.Fatalf("restart from state: %v", err)
	}
	defer c.Close()
	if c.Node() != "service-a-1" || c.Role() != "app" {
		t.Fatalf("node %q role %q", c.Node(), c.Role())
	}
	// No state and no token: refused before anything runs.
	if _, err := New(Config{STS: p.srv.URL, CABundle: p.bundle, StateDir: filepath.Join(t.TempDir(), "s3"), Logger: quietLog()}); err == nil {
		t.Fatal("an agent with neither state nor token")
	}
}

// TestStartRefused: a node whose role does not trust it fails at Start with STS's error.
func TestStartRefused(t *testing.T) {
	p := newPerimeter(t)
	a, err := New(Config{STS: p.srv.URL, CABundle: p.bundle, JoinToken: p.token(t, "untrusted"), Logger: quietLog()})
	if err != nil {
		t.Fatal(err)
	}
	var se *Error
	if err := a.Start(context.Background()); !errors.As(err, &se) || se.Code != "AccessDenied" || se.Status != 403 {
		t.Fatalf("start: %v", err)
	}
}

// TestConfigValidated: New refuses what it cannot work with.
func TestConfigValidated(t *testing.T) {
	bundle := newPerimeter(t).bundle
	for _, tc := range []struct {
		name string
		cfg  Config
	}{
		{"http STS", Config{STS: "http://127.0.0.1:8444", CABundle: bundle, JoinToken: "x"}},
		{"STS with a path", Config{STS: "https://127.0.0.1:8444/sts", CABundle: bundle, JoinToken: "x"}},
		{"no CA bundle", Config{STS: "https://127.0.0.1:8444", JoinToken: "x"}},
		{"session too short", Config{STS: "https://127.0.0.1:8444", CABundle: bundle, JoinToken: "x", SessionDuration: time.Second}},
		{"no token, no state", Config{STS: "https://127.0.0.1:8444", CABundle: bundle}},
	} {
		if _, err := New(tc.cfg); err == nil {
			t.Errorf("%s: accepted", tc.name)
		}
	}
}

// TestCertificateRenewal: the agent renews its node certificate at 2/3 of its life with a
// new key, saves it, and keeps getting credentials with it (STS refuses the superseded
// one).
func TestCertificateRenewal(t *testing.T) {
	p := newPerimeterCA(t, 6*time.Second)
	a := startAgent(t, p, "service-a-1", nil)
	first := a.node.Load()
	deadline := time.Now().Add(10 * time.Second)
	for a.node.Load() == first {
		if time.Now().After(deadline) {
			t.Fatal("the node certificate was not renewed")
		}
		time.Sleep(50 * time.Millisecond)
	}
	renewed := a.node.Load()
	if renewed.name != "service-a-1" || renewed.leaf.SerialNumber.Cmp(first.leaf.SerialNumber) == 0 ||
		renewed.leaf.PublicKey.(interface{ Equal(crypto.PublicKey) bool }).Equal(first.leaf.PublicKey) {
		t.Fatal("the renewed certificate is not a new certificate for a new key of the same node")
	}
	if renewedIn := time.Until(renewed.leaf.NotAfter); renewedIn < 5*time.Second {
		t.Fatalf("renewed certificate expires in %s", renewedIn)
	}
	if err := a.refresh(context.Background()); err != nil {
		t.Fatalf("credentials with the renewed certificate: %v", err)
	}
	saved, err := (&stateDir{dir: a.cfg.StateDir}).load(time.Now())
	if err != nil || saved == nil || saved.leaf.SerialNumber.Cmp(a.node.Load().leaf.SerialNumber) != 0 {
		t.Fatalf("state directory after renewal: %v", err)
	}
}

// TestIMDSPlacement: the perimeter's region, for SDKs that take it from IMDS.
func TestIMDSPlacement(t *testing.T) {
	p := newPerimeter(t)
	a := startAgent(t, p, "service-a-1", nil)
	tok := imdsToken(t, a, "60")
	for path, want := range map[string]string{"/latest/meta-data/placement/region": "us-east-1", "/latest/meta-data/placement/availability-zone/": "us-east-1a"} {
		if code, _, got := req(t, "GET", a.imds+path, "X-aws-ec2-metadata-token", tok); code != 200 || got != want {
			t.Errorf("%s: %d %q, want %q", path, code, got, want)
		}
	}
}
