package sso

import (
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)

func TestParseToken(t *testing.T) {
	const jwt = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhIn0.c2ln"
	for _, tc := range []struct {
		name   string
		status int
		body   string
		ok     bool
		code   string // OAuth error code
	}{
		{"full", 200, `{"access_token":"at","token_type":"Bearer","id_token":"` + jwt + `","refresh_token":"rt","expires_in":300,"scope":"openid"}`, true, ""},
		{"lower-case bearer, expires_in as a string", 200, `{"access_token":"at","token_type":"bearer","expires_in":"300"}`, true, ""},
		{"no access token", 200, `{"token_type":"Bearer"}`, false, ""},
		{"another token type", 200, `{"access_token":"at","token_type":"mac"}`, false, ""},
		{"negative expires_in", 200, `{"access_token":"at","token_type":"Bearer","expires_in":-1}`, false, ""},
		{"fractional expires_in", 200, `{"access_token":"at","token_type":"Bearer","expires_in":1.5}`, false, ""},
		{"an id_token that is not a JWS", 200, `{"access_token":"at","token_type":"Bearer","id_token":"a.b"}`, false, ""},
		{"a control character in the access token", 200, `{"access_token":"a\u001bt","token_type":"Bearer"}`, false, ""},
		{"trailing data", 200, `{"access_token":"at","token_type":"Bearer"} {}`, false, ""},
		{"an array", 200, `["access_token"]`, false, ""},
		{"pending", 400, `{"error":"authorization_pending"}`, false, "authorization_pending"},
		{"an error code with a quote", 400, `{"error":"bad\"code"}`, false, ""},
		{"an error without a code", 400, `{"error_description":"x"}`, false, ""},
		{"a server error", 500, `{"error":"server_error"}`, false, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tok, err := ParseToken(tc.status, []byte(tc.body), t0)
			if tc.ok != (err == nil) {
				t.Fatalf("ParseToken: %+v, %v", tok, err)
			}
			var oe *OAuthError
			if got := errors.As(err, &oe); got != (tc.code != "") || (got && oe.Code != tc.code) {
				t.Fatalf("OAuth error: %v, want code %q", err, tc.code)
			}
			if tc.name == "full" && (tok.IDToken != jwt || tok.RefreshToken != "rt" || !tok.Expiry.Equal(t0.Add(300*time.Second))) {
				t.Errorf("token %+v", tok)
			}
		})
	}
}

func TestParseDeviceAuthorization(t *testing.T) {
	good := `{"device_code":"dc","user_code":"WDJB-MJHT","verification_uri":"https://idp.example/device","verification_uri_complete":"https://idp.example/device?user_code=WDJB-MJHT","expires_in":1800,"interval":5}`
	d, err := ParseDeviceAuthorization(200, []byte(good), t0)
	if err != nil || d.UserCode != "WDJB-MJHT" || d.Interval != 5*time.Second || !d.ExpiresAt.Equal(t0.Add(30*time.Minute)) {
		t.Fatalf("%+v, %v", d, err)
	}
	d, err = ParseDeviceAuthorization(200, []byte(`{"device_code":"dc","user_code":"X","verification_uri":"http://127.0.0.1:9/device","expires_in":60}`), t0)
	if err != nil || d.Interval != 5*time.Second {
		t.Fatalf("default interval: %+v, %v", d, err)
	}
	for name, body := range map[string]string{
		"an escape sequence in the user code": `{"device_code":"dc","user_code":"\u001b[2J","verification_uri":"https://idp.example/device","expires_in":60}`,
		"a plain-http verification URI":       `{"device_code":"dc","user_code":"X","verification_uri":"http://idp.example/device","expires_in":60}`,
		"a javascript: URI":                   `{"device_code":"dc","user_code":"X","verification_uri":"javascript:alert(1)","expires_in":60}`,
		"no expiry":                           `{"device_code":"dc","user_code":"X","verification_uri":"https://idp.example/device"}`,
		"a week-long code":                    `{"device_code":"dc","user_code":"X","verification_uri":"https://idp.example/device","expires_in":604800}`,
		"a zero interval":                     `{"device_code":"dc","user_code":"X","verification_uri":"https://idp.example/device","expires_in":60,"interval":0}`,
		"no device code":                      `{"user_code":"X","verification_uri":"https://idp.example/device","expires_in":60}`,
	} {
		if d, err := ParseDeviceAuthorization(200, []byte(body), t0); err == nil {
			t.Errorf("%s: accepted %+v", name, d)
		}
	}
}

func TestParseDiscovery(t *testing.T) {
	good := `{"issuer":"https://idp.example","authorization_endpoint":"https://idp.example/authorize","token_endpoint":"https://idp.example/token","device_authorization_endpoint":"https://idp.example/device_authorization","code_challenge_methods_supported":["S256"]}`
	if p, err := ParseDiscovery([]byte(good), "https://idp.example"); err != nil || p.DeviceAuthorizationEndpoint != "https://idp.example/device_authorization" {
		t.Fatalf("%+v, %v", p, err)
	}
	for name, tc := range map[string]struct{ body, issuer string }{
		"another issuer":              {good, "https://other.example"},
		"a plain-http token endpoint": {strings.Replace(good, "https://idp.example/token", "http://idp.example/token", 1), "https://idp.example"},
		"plain PKCE only":             {strings.Replace(good, `["S256"]`, `["plain"]`, 1), "https://idp.example"},
		"no token endpoint":           {`{"issuer":"https://idp.example","authorization_endpoint":"https://idp.example/a"}`, "https://idp.example"},
		"not an object":               {`"https://idp.example"`, "https://idp.example"},
	} {
		if p, err := ParseDiscovery([]byte(tc.body), tc.issuer); err == nil {
			t.Errorf("%s: accepted %+v", name, p)
		}
	}
}

func jwtWith(payload string) string {
	return "eyJhbGciOiJSUzI1NiJ9." + base64.RawURLEncoding.EncodeToString([]byte(payload)) + ".c2ln"
}

func TestClaimsRolesSessionName(t *testing.T) {
	c, err := Claims(jwtWith(`{"sub":"00u1","email":"bob smith@example.com","roles":["dev","arn:aws:iam::123456789012:role/ops/admin","dev"],"one":"dev"}`))
	if err != nil {
		t.Fatal(err)
	}
	if got := SessionName(c); got != "bob-smith@example.com" {
		t.Errorf("SessionName = %q", got)
	}
	roles, err := Roles(c, "roles", "123456789012")
	if err != nil || strings.Join(roles, " ") != "arn:aws:iam::123456789012:role/dev arn:aws:iam::123456789012:role/ops/admin" {
		t.Errorf("Roles = %v, %v", roles, err)
	}
	if r, err := Roles(c, "one", "123456789012"); err != nil || len(r) != 1 {
		t.Errorf("a single role: %v, %v", r, err)
	}
	if r, err := Roles(c, "absent", "123456789012"); err != nil || r != nil {
		t.Errorf("an absent claim: %v, %v", r, err)
	}
	for _, bad := range []string{`{"roles":[1]}`, `{"roles":{"a":"b"}}`, `{"roles":"a b"}`, `{"roles":"arn:aws:iam::1:role/x"}`} {
		c, _ := Claims(jwtWith(bad))
		if r, err := Roles(c, "roles", "123456789012"); err == nil {
			t.Errorf("%s: roles %v", bad, r)
		}
	}
	if got := SessionName(map[string]any{"sub": "x"}); got != "phantom-sso" {
		t.Errorf("a one-character subject: %q", got)
	}
	for _, bad := range []string{"a.b", "a.b.c.d", jwtWith(`[1]`), "eyJ.e30=.x", "é.e30.x"} {
		if c, err := Claims(bad); err == nil {
			t.Errorf("Claims(%q) = %v", bad, c)
		}
	}
}
