package sts

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/phantom-perimeter/phantom/internal/config"
	"github.com/phantom-perimeter/phantom/internal/sso"
)

// TestSignInConfig: STS publishes the spec's sign-in provider for `phantom login`, in the
// shape sso.ParseSignInConfig reads; without one it answers 404, and it takes GET only.
func TestSignInConfig(t *testing.T) {
	spec, err := config.Parse("signin.yaml", []byte(`version: 1
account: "123456789012"
region: eu-west-1
oidcProviders:
  - url: https://idp.example
    clientIds: [phantom]
    signIn: {clientId: phantom, roleClaim: phantom_roles}
`))
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t)
	get := func(dir *config.Spec, method string) (int, []byte) {
		h, err := New(Config{Account: testAccount, Region: "eu-west-1", Directory: func() Directory { return dir },
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, e.creds, e.issuer, e.audit)
		if err != nil {
			t.Fatal(err)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(method, "https://sts.example"+sso.SignInConfigPath, nil))
		return rec.Code, rec.Body.Bytes()
	}
	code, body := get(spec, http.MethodGet)
	if code != http.StatusOK {
		t.Fatalf("%d %s", code, body)
	}
	c, err := sso.ParseSignInConfig(body)
	if err != nil || c.Issuer != "https://idp.example" || c.ClientID != "phantom" || c.RoleClaim != "phantom_roles" ||
		c.Account != testAccount || c.Region != "eu-west-1" || len(c.Scopes) != 4 {
		t.Fatalf("%+v, %v", c, err)
	}
	if code, _ := get(e.spec, http.MethodGet); code != http.StatusNotFound {
		t.Errorf("without a sign-in provider: %d", code)
	}
	if code, _ := get(spec, http.MethodPost); code != http.StatusMethodNotAllowed {
		t.Errorf("POST: %d", code)
	}
	if len(e.audit.all()) != 0 {
		t.Error("publishing public settings was audited as an STS call")
	}
}
