package sso_test

import (
	"context"
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/phantom-perimeter/phantom/internal/sso"
	"github.com/phantom-perimeter/phantom/internal/sso/ssotest"
)

var alice = ssotest.User{Name: "alice", Password: "correct horse", Email: "alice@example.com", Groups: []string{"payments"},
	Roles: []string{"developer"}, Tags: map[string]string{"team": "payments"}}

func startOP(t *testing.T) (*ssotest.OP, *sso.Client) {
	t.Helper()
	op := ssotest.Start(t, ssotest.Options{Users: []ssotest.User{alice}, PollInterval: time.Second})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	p, err := sso.Discover(ctx, nil, op.URL)
	if err != nil {
		t.Fatalf("discover: %v", err)
	}
	if p.DeviceAuthorizationEndpoint == "" || p.AuthorizationEndpoint == "" || p.TokenEndpoint == "" {
		t.Fatalf("endpoints: %+v", p)
	}
	return op, &sso.Client{Provider: p, ClientID: op.ClientID, Scopes: []string{"openid", "profile", "email", "offline_access"}}
}

// TestDeviceFlow: RFC 8628 against zitadel's OP: a device code, the person approves on the
// provider's page, the poll returns an ID token (with the claims the role and session name
// come from) and a refresh token, which refreshes.
func TestDeviceFlow(t *testing.T) {
	op, c := startOP(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	d, err := c.StartDevice(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(d.VerificationURI, op.URL+"/device") || d.UserCode == "" || d.Interval != time.Second {
		t.Fatalf("device authorization %+v", d)
	}
	go func() {
		time.Sleep(1500 * time.Millisecond) // one authorization_pending first
		op.ApproveDevice(t, d.UserCode, "alice", "correct horse")
	}()
	tok, err := c.PollDevice(ctx, d)
	if err != nil {
		t.Fatal(err)
	}
	if tok.RefreshToken == "" {
		t.Error("no refresh token with offline_access")
	}
	claims, err := sso.Claims(tok.IDToken)
	if err != nil {
		t.Fatal(err)
	}
	if claims["sub"] != "alice" || sso.SessionName(claims) != "alice" {
		t.Errorf("claims %v", claims)
	}
	roles, err := sso.Roles(claims, ssotest.DefaultRoleClaim, "123456789012")
	if err != nil || len(roles) != 1 || roles[0] != "arn:aws:iam::123456789012:role/developer" {
		t.Errorf("roles %v, %v", roles, err)
	}
	if _, ok := sso.Expiry(claims); !ok {
		t.Error("no exp")
	}

	again, err := c.Refresh(ctx, tok.RefreshToken)
	if err != nil {
		t.Fatalf("refresh: %v", err)
	}
	if again.IDToken == "" || again.IDToken == tok.IDToken || op.Refreshes() != 1 {
		t.Errorf("refresh gave ID token %v (refreshes %d)", again.IDToken != "", op.Refreshes())
	}
	// The provider rotates refresh tokens: the first is spent.
	var oe *sso.OAuthError
	if _, err := c.Refresh(ctx, tok.RefreshToken); !errors.As(err, &oe) || oe.Code != "invalid_grant" {
		t.Errorf("a spent refresh token: %v", err)
	}
}

func TestDeviceFlowDenied(t *testing.T) {
	op, c := startOP(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	d, err := c.StartDevice(ctx)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := postForm(op.URL+"/device", url.Values{"user_code": {d.UserCode}, "username": {"alice"}, "password": {"correct horse"}, "action": {"deny"}})
	if err != nil || resp != 200 {
		t.Fatalf("deny: %d %v", resp, err)
	}
	_, err = c.PollDevice(ctx, d)
	var oe *sso.OAuthError
	if !errors.As(err, &oe) || oe.Code != "access_denied" {
		t.Fatalf("a denied sign-in: %v", err)
	}
}

// TestCodeFlowPKCE: the authorization code flow with PKCE against zitadel's OP; a code
// presented without its verifier, or with another, is refused (RFC 7636's attack: a code
// intercepted on the way to the loopback redirect is useless).
func TestCodeFlowPKCE(t *testing.T) {
	op, c := startOP(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	redirect := "http://127.0.0.1:40123/callback"
	verifier, challenge := sso.NewPKCE()
	state, nonce := sso.RandomToken(), sso.RandomToken()
	loc := op.SignIn(t, c.AuthCodeURL(redirect, state, nonce, challenge), "alice", "correct horse")
	u, err := url.Parse(loc)
	if err != nil || !strings.HasPrefix(loc, redirect+"?") || u.Query().Get("state") != state {
		t.Fatalf("redirected to %s", loc)
	}
	code := u.Query().Get("code")
	_, other := sso.NewPKCE()
	for _, bad := range []string{"", other} {
		var oe *sso.OAuthError
		if _, err := c.Exchange(ctx, code, redirect, bad); !errors.As(err, &oe) || (oe.Code != "invalid_grant" && oe.Code != "invalid_request") {
			t.Errorf("the code with verifier %q: %v", bad, err)
		}
	}
	// The failed attempts did not spend the code at this provider; the right verifier works.
	tok, err := c.Exchange(ctx, code, redirect, verifier)
	if err != nil {
		t.Fatalf("exchange: %v", err)
	}
	claims, err := sso.Claims(tok.IDToken)
	if err != nil || claims["nonce"] != nonce || claims["sub"] != "alice" {
		t.Fatalf("claims %v, %v", claims, err)
	}
	if _, err := c.Exchange(ctx, code, redirect, verifier); err == nil {
		t.Error("a code was exchanged twice")
	}
}

func TestDiscoverRefusesAnotherIssuer(t *testing.T) {
	op, _ := startOP(t)
	if _, err := sso.Discover(context.Background(), nil, op.URL+"/"); err == nil || !strings.Contains(err.Error(), "names issuer") {
		t.Fatalf("an issuer spelt differently: %v", err)
	}
}
