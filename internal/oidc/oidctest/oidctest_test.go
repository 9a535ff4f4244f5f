package oidctest_test

import (
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/phantom-perimeter/phantom/internal/oidc/oidctest"
)

func TestIssuerServesDiscoveryAndKeys(t *testing.T) {
	for _, plain := range []bool{false, true} {
		is := oidctest.Start(t, oidctest.Options{Path: "/p", PlainHTTP: plain, ClientIDs: []string{"app"}})
		var doc struct {
			Issuer  string `json:"issuer"`
			JWKSURI string `json:"jwks_uri"`
		}
		get(t, is.Client(), is.URL+"/.well-known/openid-configuration", &doc)
		if doc.Issuer != is.URL || doc.JWKSURI != is.JWKSURL() {
			t.Fatalf("discovery = %+v", doc)
		}
		var set struct {
			Keys []map[string]any `json:"keys"`
		}
		get(t, is.Client(), doc.JWKSURI, &set)
		if len(set.Keys) != 1 || set.Keys[0]["kid"] != is.SigningKey().ID {
			t.Fatalf("jwks = %+v", set)
		}
		p := is.Provider()
		if p.URL != is.URL || !strings.HasSuffix(p.ARN, ":oidc-provider/"+p.Name) || p.ClientIDs[0] != "app" {
			t.Fatalf("provider = %+v", p)
		}
		if tok := is.Mint(t, is.Claims("alice", time.Now())); strings.Count(tok, ".") != 2 {
			t.Fatalf("token %q", tok)
		}
		if got := is.CertPEM(); plain != (got == nil) {
			t.Fatalf("plain=%v CertPEM=%q", plain, got)
		} else if !plain {
			b, _ := pem.Decode(got)
			if _, err := x509.ParseCertificate(b.Bytes); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func get(t *testing.T, c *http.Client, url string, v any) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatal(err)
	}
}
