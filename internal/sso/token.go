package sso

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Token is a token endpoint's successful answer (RFC 6749 §5.1, OpenID Connect Core
// §3.1.3.3). IDToken is "" when the answer had none (a refresh may omit it).
type Token struct {
	AccessToken  string
	TokenType    string
	IDToken      string
	RefreshToken string
	// Expiry is when the access token expires; zero when the provider did not say.
	Expiry time.Time
	Scope  string
}

// OAuthError is an error answer of the token or device authorization endpoint (RFC 6749
// §5.2, RFC 8628 §3.5): authorization_pending, slow_down, access_denied, expired_token,
// invalid_grant, ...
type OAuthError struct {
	Status      int
	Code        string
	Description string
}

func (e *OAuthError) Error() string {
	if e.Description == "" {
		return "the provider answered " + e.Code
	}
	return "the provider answered " + e.Code + ": " + e.Description
}

// Bounds of a token answer: far above real tokens, far below abuse. AWS takes web identity
// tokens of at most 20,000 characters.
const (
	maxIDToken       = 20000
	maxOpaqueToken   = 16 << 10
	maxExpiresIn     = 10 * 365 * 24 * 3600
	maxErrorDescText = 1024
)

type tokenJSON struct {
	AccessToken  *string        `json:"access_token"`
	TokenType    *string        `json:"token_type"`
	IDToken      *string        `json:"id_token"`
	RefreshToken *string        `json:"refresh_token"`
	ExpiresIn    flexibleNumber `json:"expires_in"`
	Scope        *string        `json:"scope"`
}

type errorJSON struct {
	Error            *string `json:"error"`
	ErrorDescription *string `json:"error_description"`
}

// flexibleNumber is a JSON number, or a string of digits as some providers send
// expires_in.
type flexibleNumber struct {
	set bool
	n   int64
}

func (f *flexibleNumber) UnmarshalJSON(b []byte) error {
	s := string(b)
	if strings.HasPrefix(s, `"`) {
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
	}
	if s == "" || len(s) > 12 || strings.Trim(s, "0123456789") != "" {
		return fmt.Errorf("%q is not a whole number of seconds", printable(s))
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return err
	}
	f.set, f.n = true, n
	return nil
}

// ParseToken reads a token endpoint's answer: status 200 is a Token, 400 and 401 an
// *OAuthError (RFC 6749 §5.2), anything else an error.
func ParseToken(status int, body []byte, now time.Time) (*Token, error) {
	var j tokenJSON
	if err := decodeAnswer(status, body, &j, "token endpoint"); err != nil {
		return nil, err
	}
	if j.AccessToken == nil || !vschar(*j.AccessToken, 1, maxOpaqueToken) {
		return nil, errors.New("token response: access_token is missing or not a token")
	}
	// RFC 6749 §7.1 and RFC 6750: the only type a client may use without knowing more.
	if j.TokenType == nil || !strings.EqualFold(*j.TokenType, "Bearer") {
		return nil, errors.New("token response: token_type is not Bearer")
	}
	t := &Token{AccessToken: *j.AccessToken, TokenType: "Bearer"}
	if j.IDToken != nil {
		if !jwsChars(*j.IDToken) {
			return nil, errors.New("token response: id_token is not a compact JWS")
		}
		t.IDToken = *j.IDToken
	}
	if j.RefreshToken != nil {
		if !vschar(*j.RefreshToken, 1, maxOpaqueToken) {
			return nil, errors.New("token response: refresh_token is not a token")
		}
		t.RefreshToken = *j.RefreshToken
	}
	if j.ExpiresIn.set {
		if j.ExpiresIn.n <= 0 || j.ExpiresIn.n > maxExpiresIn {
			return nil, fmt.Errorf("token response: expires_in %d is out of range", j.ExpiresIn.n)
		}
		t.Expiry = now.Add(time.Duration(j.ExpiresIn.n) * time.Second)
	}
	if j.Scope != nil {
		if !vschar(*j.Scope, 0, maxOpaqueToken) {
			return nil, errors.New("token response: scope is not printable")
		}
		t.Scope = *j.Scope
	}
	return t, nil
}

// decodeAnswer reads an endpoint's answer into v: 200 is the answer, 400 and 401 an
// *OAuthError (RFC 6749 §5.2, RFC 8628 §3.5), anything else an error.
func decodeAnswer(status int, body []byte, v any, endpoint string) error {
	switch status {
	case http.StatusOK:
	case http.StatusBadRequest, http.StatusUnauthorized:
		return parseOAuthError(status, body)
	default:
		return fmt.Errorf("%s answered status %d", endpoint, status)
	}
	if err := decodeObject(body, v); err != nil {
		return fmt.Errorf("%s answer: %w", endpoint, err)
	}
	return nil
}

// parseOAuthError reads an error object; its code is checked against RFC 6749 §5.2's
// characters, its description made printable.
func parseOAuthError(status int, body []byte) error {
	var j errorJSON
	if err := decodeObject(body, &j); err != nil || j.Error == nil || !errorChars(*j.Error) {
		return fmt.Errorf("the provider answered status %d without an OAuth error", status)
	}
	e := &OAuthError{Status: status, Code: *j.Error}
	if j.ErrorDescription != nil {
		d := *j.ErrorDescription
		if len(d) > maxErrorDescText {
			d = d[:maxErrorDescText]
		}
		e.Description = printable(d)
	}
	return e
}

// errorChars: RFC 6749 §5.2, error = 1*( %x20-21 / %x23-5B / %x5D-7E ).
func errorChars(s string) bool {
	if s == "" || len(s) > 256 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c == 0x22 || c == 0x5c || c > 0x7e {
			return false
		}
	}
	return true
}

// vschar: RFC 6749 Appendix A, VSCHAR = %x20-7E, between min and max bytes.
func vschar(s string, min, max int) bool {
	if len(s) < min || len(s) > max {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// jwsChars: three base64url parts separated by dots (RFC 7515 §7.1).
func jwsChars(s string) bool {
	if len(s) < 5 || len(s) > maxIDToken || strings.Count(s, ".") != 2 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// Client is a public OAuth 2.0 client of the provider (no secret: PKCE and the device
// grant prove possession instead).
type Client struct {
	Provider *Provider
	ClientID string
	Scopes   []string
	HTTP     *http.Client     // nil: NewHTTPClient(nil)
	Now      func() time.Time // nil: time.Now
}

func (c *Client) now() time.Time {
	if c.Now == nil {
		return time.Now()
	}
	return c.Now()
}

// post sends form, with the client id, to endpoint and returns the answer's status and body.
func (c *Client) post(ctx context.Context, endpoint string, form url.Values) (int, []byte, error) {
	form.Set("client_id", c.ClientID)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, strings.NewReader(form.Encode()))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	status, body, err := do(c.HTTP, req)
	if err != nil {
		return 0, nil, fmt.Errorf("%s: %w", endpoint, err)
	}
	return status, body, nil
}

// token posts form to the token endpoint and parses the answer.
func (c *Client) token(ctx context.Context, form url.Values) (*Token, error) {
	status, body, err := c.post(ctx, c.Provider.TokenEndpoint, form)
	if err != nil {
		return nil, err
	}
	return ParseToken(status, body, c.now())
}

// AuthCodeURL is where the browser goes to sign in: the authorization endpoint with the
// code flow's parameters, PKCE S256 (RFC 7636 §4.3) and the OIDC nonce.
func (c *Client) AuthCodeURL(redirectURI, state, nonce, challenge string) string {
	q := url.Values{
		"response_type":         {"code"},
		"client_id":             {c.ClientID},
		"redirect_uri":          {redirectURI},
		"scope":                 {strings.Join(c.Scopes, " ")},
		"state":                 {state},
		"nonce":                 {nonce},
		"code_challenge":        {challenge},
		"code_challenge_method": {"S256"},
	}
	sep := "?"
	if strings.Contains(c.Provider.AuthorizationEndpoint, "?") {
		sep = "&"
	}
	return c.Provider.AuthorizationEndpoint + sep + q.Encode()
}

// Exchange trades an authorization code for tokens (RFC 6749 §4.1.3), proving the PKCE
// verifier. The answer must carry an ID token.
func (c *Client) Exchange(ctx context.Context, code, redirectURI, verifier string) (*Token, error) {
	t, err := c.token(ctx, url.Values{
		"grant_type":    {"authorization_code"},
		"code":          {code},
		"redirect_uri":  {redirectURI},
		"code_verifier": {verifier},
	})
	return needIDToken(t, err)
}

// Refresh trades a refresh token for new tokens (RFC 6749 §6). The answer must carry an
// ID token (OpenID Connect Core §12.2 lets the provider send one; STS needs it).
func (c *Client) Refresh(ctx context.Context, refreshToken string) (*Token, error) {
	t, err := c.token(ctx, url.Values{
		"grant_type":    {"refresh_token"},
		"refresh_token": {refreshToken},
		"scope":         {strings.Join(c.Scopes, " ")},
	})
	t, err = needIDToken(t, err)
	if err == nil && t.RefreshToken == "" {
		t.RefreshToken = refreshToken // not rotated: the old one stays valid
	}
	return t, err
}

func needIDToken(t *Token, err error) (*Token, error) {
	if err != nil {
		return nil, err
	}
	if t.IDToken == "" {
		return nil, errors.New("the provider sent no ID token: is openid among the scopes?")
	}
	return t, nil
}
