package login

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestChooseRole(t *testing.T) {
	const acct = "123456789012"
	dev, ops := "arn:aws:iam::123456789012:role/dev", "arn:aws:iam::123456789012:role/ops"
	one := map[string]any{"roles": []any{"dev"}}
	two := map[string]any{"roles": []any{"dev", "ops"}}
	for _, tc := range []struct {
		name      string
		claims    map[string]any
		claim     string
		flag      string
		want, err string
	}{
		{"the claim's only role", one, "roles", "", dev, ""},
		{"a flag among the claim's roles", two, "roles", "ops", ops, ""},
		{"a flag ARN among them", two, "roles", ops, ops, ""},
		{"several roles and no flag", two, "roles", "", "", "pick one with --role"},
		{"a flag the claim does not list", one, "roles", "ops", "", "does not list the role"},
		{"no roles listed", map[string]any{}, "roles", "", "", "lists no roles"},
		{"no role claim: the flag", map[string]any{}, "", "dev", dev, ""},
		{"no role claim and no flag", map[string]any{}, "", "", "", "--role"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := chooseRole(tc.claims, tc.claim, acct, tc.flag)
			if got != tc.want || (err == nil) != (tc.err == "") || (err != nil && !strings.Contains(err.Error(), tc.err)) {
				t.Fatalf("chooseRole = %q, %v; want %q, %q", got, err, tc.want, tc.err)
			}
		})
	}
}

func validEntry() *Entry {
	return &Entry{STSURL: "https://127.0.0.1:8444", Issuer: "https://idp.example", ClientID: "phantom", Scopes: []string{"openid"},
		Account: "123456789012", Region: "us-east-1", RoleARN: "arn:aws:iam::123456789012:role/dev", SessionName: "alice",
		IDToken: "a.b.c", IDTokenExpiresAt: time.Now().Add(time.Hour), RefreshToken: "rt",
		Credentials: &Credentials{Version: 1, AccessKeyID: "ASIA", SecretAccessKey: "s", SessionToken: "t", Expiration: time.Now().Add(time.Hour)}}
}

// TestCache: entries are private (0700 directory, 0600 file), named by the SHA-1 of the
// session name, read back equal, and removed; names that could escape the directory are
// refused.
func TestCache(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "cache")
	if _, err := Load(dir, "default"); !errors.Is(err, ErrNotSignedIn) {
		t.Fatalf("Load before sign-in: %v", err)
	}
	e := validEntry()
	if err := Save(dir, "default", e); err != nil {
		t.Fatal(err)
	}
	st, _ := os.Stat(dir)
	files, _ := os.ReadDir(dir)
	if st.Mode().Perm() != 0o700 || len(files) != 1 || files[0].Name() != "7505d64a54e061b7acd54ccd58b49dc43500b635.json" {
		t.Fatalf("cache dir %v, files %v", st.Mode(), files)
	}
	if fi, _ := files[0].Info(); fi.Mode().Perm() != 0o600 {
		t.Fatalf("cache file mode %v", fi.Mode())
	}
	got, err := Load(dir, "default")
	if err != nil || got.RefreshToken != "rt" || got.Credentials.AccessKeyID != "ASIA" {
		t.Fatalf("Load: %+v, %v", got, err)
	}
	for _, bad := range []string{"../x", "", "a/b", strings.Repeat("a", 65)} {
		if err := Save(dir, bad, e); err == nil {
			t.Errorf("session name %q accepted", bad)
		}
	}
	if err := Remove(dir, "default"); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(dir, "default"); !errors.Is(err, ErrNotSignedIn) {
		t.Fatalf("Load after logout: %v", err)
	}
}

func TestParseEntryRefuses(t *testing.T) {
	for name, edit := range map[string]func(*Entry){
		"an http STS":            func(e *Entry) { e.STSURL = "http://sts.example" },
		"an http remote issuer":  func(e *Entry) { e.Issuer = "http://idp.example" },
		"a relative CA bundle":   func(e *Entry) { e.CABundle = "ca.pem" },
		"no ID token":            func(e *Entry) { e.IDToken = "" },
		"no role":                func(e *Entry) { e.RoleARN = "" },
		"STS URL with user info": func(e *Entry) { e.STSURL = "https://u:p@sts.example" },
	} {
		e := validEntry()
		edit(e)
		b, _ := json.Marshal(e)
		if _, err := ParseEntry(b); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// FuzzParseEntry: an accepted cache file sends tokens only to an https STS and an https
// (or loopback) provider.
func FuzzParseEntry(f *testing.F) {
	b, _ := json.Marshal(validEntry())
	f.Add(b)
	f.Add([]byte(`{"stsUrl":"http://x","issuer":"https://i"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := ParseEntry(b)
		if err != nil {
			return
		}
		if checkHTTPS(e.STSURL) != nil || e.IDToken == "" || (e.CABundle != "" && !filepath.IsAbs(e.CABundle)) {
			t.Fatalf("accepted %+v", e)
		}
	})
}
