package main

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/phantom-perimeter/phantom/internal/audit"
	"github.com/phantom-perimeter/phantom/internal/config"
	"github.com/phantom-perimeter/phantom/internal/gateway"
	"github.com/phantom-perimeter/phantom/internal/keys"
	"github.com/phantom-perimeter/phantom/internal/pki"
	"github.com/phantom-perimeter/phantom/internal/sigv4"
)

type noCreds struct{}

func (noCreds) LookupCredential(context.Context, string, string) (sigv4.Credential, error) {
	return sigv4.Credential{}, sigv4.ErrUnknownAccessKey
}

type noAudit struct{}

func (noAudit) Record(context.Context, *audit.Event) error { return nil }

// TestExampleBackend holds the documented example to what the gateway sends: the API's
// key file a real gateway derives (HS256, the default) or the JWKS it publishes (EdDSA),
// assertions made the way it makes them, its client certificate from the perimeter CA.
// The request an assertion names passes once; a replay, another query, another body,
// another API, the other algorithm are refused; a client that is not the gateway does not
// get a connection.
func TestExampleBackend(t *testing.T) {
	for _, hs256 := range []bool{true, false} {
		name := "eddsa"
		if hs256 {
			name = "hs256"
		}
		t.Run(name, func(t *testing.T) { testExampleBackend(t, hs256) })
	}
}

func testExampleBackend(t *testing.T, hs256 bool) {
	master := make([]byte, 32)
	master[0] = 1
	key, err := keys.DeriveEd25519(master, keys.Assertion)
	if err != nil {
		t.Fatal(err)
	}
	gw, err := gateway.New(gateway.Config{Spec: func() *config.Spec { return &config.Spec{} }, Credentials: noCreds{}, Auditor: noAudit{}, AssertionKey: key})
	if err != nil {
		t.Fatal(err)
	}
	v := &Verifier{API: "a1b2c3d4e5", Now: time.Now}
	keyFile, err := gw.BackendKey("a1b2c3d4e5")
	if err != nil {
		t.Fatal(err)
	}
	if hs256 {
		v.Key, err = ParseKeyFile(keyFile)
	} else {
		v.Keys, err = ParseJWKS(gw.JWKS())
	}
	if err != nil {
		t.Fatal(err)
	}
	apiKey, err := keys.ParseBackendKey(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := pki.New(pki.Config{Dir: t.TempDir(), Account: "123456789012"})
	if err != nil {
		t.Fatal(err)
	}
	srvCert, err := ca.Issue(pki.Request{Identity: pki.Identity{Account: "123456789012", Kind: pki.KindGateway, Name: "orders"}, IPs: []netip.Addr{netip.MustParseAddr("127.0.0.1")}, Server: true})
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca.Certificate())
	srv := httptest.NewUnstartedServer(Handler(v))
	srv.TLS = GatewayOnly(*srvCert, roots, "spiffe://phantom/123456789012/gateway/gateway")
	srv.StartTLS()
	defer srv.Close()
	client := func(kind pki.Kind, name string) *http.Client {
		c, err := ca.Issue(pki.Request{Identity: pki.Identity{Account: "123456789012", Kind: kind, Name: name}, Client: true})
		if err != nil {
			t.Fatal(err)
		}
		return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{*c}}}}
	}
	gwClient := client(pki.KindGateway, "gateway")
	body := `{"item":"book"}`
	sum := sha256.Sum256([]byte(body))
	// signAs makes an assertion as the gateway does, HS256 under the API's key or EdDSA.
	signAs := func(mac bool, id, api, query string) string {
		now := time.Now()
		a := &gateway.Assertion{Issuer: gateway.AssertionIssuer, Audience: api, Principal: "arn:aws:iam::123456789012:user/alice",
			RequestID: id, ID: id, Method: "POST", Path: "/orders", Query: query, PayloadHash: hex.EncodeToString(sum[:]),
			IssuedAt: now.Unix(), ExpiresAt: now.Add(gateway.AssertionLifetime).Unix()}
		tok, err := gateway.SignAssertion(key, a)
		if mac {
			tok, err = gateway.SignAssertionHS256(apiKey, a)
		}
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	sign := func(id, api, query string) string { return signAs(hs256, id, api, query) }
	post := func(c *http.Client, tok, path, b string) (int, error) {
		req, _ := http.NewRequest(http.MethodPost, srv.URL+path, strings.NewReader(b))
		req.Header.Set("X-Phantom-Identity", tok)
		resp, err := c.Do(req)
		if err != nil {
			return 0, err
		}
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	for _, tc := range []struct {
		name, tok, path, body string
		want                  int
	}{
		{"another API's assertion", sign("r0", "zzzzzzzzzz", ""), "/orders", body, 401},
		{"another query", sign("r1", "a1b2c3d4e5", ""), "/orders?admin=1", body, 401},
		{"another body", sign("r2", "a1b2c3d4e5", ""), "/orders", `{"item":"car"}`, 401},
		{"the request", sign("r3", "a1b2c3d4e5", "x=1"), "/orders?x=1", body, 200},
		{"the request again", sign("r3", "a1b2c3d4e5", "x=1"), "/orders?x=1", body, 401},
		{"no assertion", "", "/orders", body, 401},
		{"the other algorithm's genuine assertion", signAs(!hs256, "r5", "a1b2c3d4e5", ""), "/orders", body, 401},
	} {
		if code, err := post(gwClient, tc.tok, tc.path, tc.body); err != nil || code != tc.want {
			t.Errorf("%s: %d %v, want %d", tc.name, code, err, tc.want)
		}
	}
	if _, err := post(client(pki.KindEndpoint, "vpce-0123456789abcdef0"), sign("r4", "a1b2c3d4e5", ""), "/orders", body); err == nil {
		t.Error("an endpoint's certificate got a connection")
	}
}
