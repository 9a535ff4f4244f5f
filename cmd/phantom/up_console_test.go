package main

import (
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"testing"
)

// TestUpConsole: `phantom up` serves the web console at PHANTOM_CONSOLE_URL (demo.env)
// over the perimeter CA's TLS; it sends an anonymous visitor to sign in, refuses a wrong
// secret, and lets the demo user in with the key demo.env holds.
func TestUpConsole(t *testing.T) {
	u := startUp(t, buildPhantom(t))
	base := u.env["PHANTOM_CONSOLE_URL"]
	if !strings.HasPrefix(base, "https://127.0.0.1:") {
		t.Fatalf("PHANTOM_CONSOLE_URL = %q", base)
	}
	c := u.goClient(t, nil)
	jar, _ := cookiejar.New(nil)
	c.Jar = jar

	resp, err := c.Get(base)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Request.URL.Path != "/signin" {
		t.Fatalf("anonymous visit ended at %s with %d, want the sign-in page", resp.Request.URL, resp.StatusCode)
	}
	m := regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindSubmatch(body)
	if m == nil {
		t.Fatalf("no CSRF token on the sign-in page:\n%s", body)
	}
	signIn := func(secret string) (*http.Response, string) {
		t.Helper()
		form := url.Values{"csrf": {string(m[1])}, "accessKeyId": {u.env["AWS_ACCESS_KEY_ID"]}, "secretAccessKey": {secret}}
		req, _ := http.NewRequest(http.MethodPost, strings.TrimSuffix(base, "/")+"/signin", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Sec-Fetch-Site", "same-origin")
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp, string(b)
	}
	if resp, _ := signIn(strings.Repeat("x", 40)); resp.Request.URL.Path != "/signin" || resp.StatusCode == 200 {
		t.Errorf("a wrong secret ended at %s with %d, want a refusal on the sign-in page", resp.Request.URL, resp.StatusCode)
	}
	// A refused attempt sets a new token: read it again.
	resp, err = c.Get(strings.TrimSuffix(base, "/") + "/signin")
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if m = regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindSubmatch(body); m == nil {
		t.Fatal("no CSRF token on the sign-in page")
	}
	resp, page := signIn(u.env["AWS_SECRET_ACCESS_KEY"])
	if resp.StatusCode != 200 || resp.Request.URL.Path != "/" || !strings.Contains(page, "vpce-") {
		t.Fatalf("sign-in as the demo user ended at %s with %d:\n%.2000s", resp.Request.URL, resp.StatusCode, page)
	}
}
