package sso

import (
	"strings"
	"testing"
)

func printableASCII(s string) bool { return vschar(s, 0, 1<<20) }

// FuzzParseToken: an accepted answer has a Bearer access token and printable tokens; an
// OAuth error has a code of RFC 6749's characters and a printable description.
func FuzzParseToken(f *testing.F) {
	f.Add(200, []byte(`{"access_token":"at","token_type":"Bearer","id_token":"a.b.c","refresh_token":"rt","expires_in":300}`))
	f.Add(200, []byte(`{"access_token":"at","token_type":"bearer","expires_in":"300"}`))
	f.Add(400, []byte(`{"error":"slow_down","error_description":"wait"}`))
	f.Add(401, []byte(`{"error":"invalid_client"}`))
	f.Add(200, []byte(`{"access_token":1}`))
	f.Fuzz(func(t *testing.T, status int, body []byte) {
		tok, err := ParseToken(status, body, t0)
		if err == nil {
			if tok.TokenType != "Bearer" || tok.AccessToken == "" || !printableASCII(tok.AccessToken) || !printableASCII(tok.RefreshToken) {
				t.Fatalf("accepted %+v", tok)
			}
			if tok.IDToken != "" && !jwsChars(tok.IDToken) {
				t.Fatalf("id token %q", tok.IDToken)
			}
			if !tok.Expiry.IsZero() && !tok.Expiry.After(t0) {
				t.Fatalf("expiry %v", tok.Expiry)
			}
			return
		}
		if oe, ok := err.(*OAuthError); ok && (!errorChars(oe.Code) || strings.ContainsFunc(oe.Description, func(r rune) bool { return r < 0x20 })) {
			t.Fatalf("OAuth error %+v", oe)
		}
	})
}

// FuzzParseDeviceAuthorization: what an accepted answer shows the person is printable and
// its URIs https or loopback http; its timing is bounded.
func FuzzParseDeviceAuthorization(f *testing.F) {
	f.Add([]byte(`{"device_code":"dc","user_code":"WDJB-MJHT","verification_uri":"https://idp.example/device","expires_in":1800,"interval":5}`))
	f.Add([]byte(`{"device_code":"dc","user_code":"X","verification_uri":"http://127.0.0.1/d","verification_uri_complete":"http://127.0.0.1/d?c=X","expires_in":"60"}`))
	f.Add([]byte(`{"device_code":"dc","user_code":"\u001b[2J","verification_uri":"https://a","expires_in":60}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		d, err := ParseDeviceAuthorization(200, body, t0)
		if err != nil {
			return
		}
		if !vschar(d.UserCode, 1, maxUserCode) || CheckURL(d.VerificationURI) != nil || !printableASCII(d.VerificationURI) {
			t.Fatalf("shown to the person: %q %q", d.UserCode, d.VerificationURI)
		}
		if d.VerificationURIComplete != "" && (CheckURL(d.VerificationURIComplete) != nil || !printableASCII(d.VerificationURIComplete)) {
			t.Fatalf("complete URI %q", d.VerificationURIComplete)
		}
		if d.Interval <= 0 || d.Interval > maxInterval || !d.ExpiresAt.After(t0) || d.ExpiresAt.Sub(t0) > maxDeviceLife {
			t.Fatalf("timing %v %v", d.Interval, d.ExpiresAt)
		}
	})
}

// FuzzParseDiscovery: an accepted document is the issuer's, and every endpoint passes
// CheckURL.
func FuzzParseDiscovery(f *testing.F) {
	f.Add([]byte(`{"issuer":"https://idp.example","authorization_endpoint":"https://idp.example/a","token_endpoint":"https://idp.example/t","device_authorization_endpoint":"https://idp.example/d"}`), "https://idp.example")
	f.Add([]byte(`{"issuer":"http://127.0.0.1:9","authorization_endpoint":"http://127.0.0.1:9/a","token_endpoint":"http://127.0.0.1:9/t","code_challenge_methods_supported":["S256","plain"]}`), "http://127.0.0.1:9")
	f.Fuzz(func(t *testing.T, body []byte, issuer string) {
		p, err := ParseDiscovery(body, issuer)
		if err != nil {
			return
		}
		if p.Issuer != issuer || CheckURL(p.AuthorizationEndpoint) != nil || CheckURL(p.TokenEndpoint) != nil ||
			(p.DeviceAuthorizationEndpoint != "" && CheckURL(p.DeviceAuthorizationEndpoint) != nil) {
			t.Fatalf("accepted %+v for %q", p, issuer)
		}
	})
}

// FuzzClaims: Claims never panics, and what Roles and SessionName make of any token's
// claims is a role ARN list and a valid RoleSessionName.
func FuzzClaims(f *testing.F) {
	f.Add(jwtWith(`{"sub":"alice","phantom_roles":["dev","arn:aws:iam::123456789012:role/p/ops"]}`))
	f.Add(jwtWith(`{"preferred_username":"ü","phantom_roles":"dev"}`))
	f.Add("a.b.c")
	f.Fuzz(func(t *testing.T, token string) {
		c, err := Claims(token)
		if err != nil {
			return
		}
		name := SessionName(c)
		if len(name) < 2 || len(name) > 64 || sessionRe.MatchString(name) {
			t.Fatalf("SessionName = %q", name)
		}
		roles, err := Roles(c, "phantom_roles", "123456789012")
		if err != nil {
			return
		}
		for _, r := range roles {
			if !roleARNRe.MatchString(r) {
				t.Fatalf("role %q", r)
			}
		}
	})
}

// FuzzParseSignInConfig: an accepted document names an issuer that passes CheckURL, a
// printable client id and openid.
func FuzzParseSignInConfig(f *testing.F) {
	f.Add([]byte(`{"issuer":"https://idp.example","clientId":"phantom","scopes":["openid","offline_access"],"roleClaim":"phantom_roles","account":"123456789012","region":"us-east-1"}`))
	f.Add([]byte(`{"issuer":"http://evil.example","clientId":"x","scopes":["openid"],"account":"123456789012","region":"us-east-1"}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		c, err := ParseSignInConfig(body)
		if err != nil {
			return
		}
		if CheckURL(c.Issuer) != nil || !vschar(c.ClientID, 1, 255) || !contains(c.Scopes, "openid") {
			t.Fatalf("accepted %+v", c)
		}
	})
}
