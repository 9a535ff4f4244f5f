// Package ssotest runs a real OpenID Connect provider for tests: zitadel/oidc's OP
// (github.com/zitadel/oidc/v3/pkg/op, a maintained provider library Phantom does not
// write) over an in-memory storage written here, with a login page and a device
// verification page a person (or a test acting as the person's browser) uses. It serves
// discovery, the authorization endpoint (code flow with PKCE), the token endpoint
// (authorization_code, refresh_token, device_code grants), the device authorization
// endpoint (RFC 8628) and the JWKS, over plain http on 127.0.0.1 (the zitadel OP's
// "allow insecure" mode; Phantom accepts http issuers on loopback only).
//
// ID tokens carry sub, preferred_username, email, groups, the role claim (RoleClaim) and
// AWS's session-tag claim https://aws.amazon.com/tags built from the user's Tags, as an
// identity provider's claim mappers would.
//
// It is test support only: keys are generated per provider and never leave the process.
package ssotest

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"fmt"
	"html/template"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
	"golang.org/x/text/language"
)

// Defaults of Options.
const (
	DefaultClientID  = "phantom"
	DefaultRoleClaim = "phantom_roles"
	// TagsClaim is AWS's claim of session tags for AssumeRoleWithWebIdentity ("Passing
	// session tags using AssumeRoleWithWebIdentity").
	TagsClaim = "https://aws.amazon.com/tags"
)

// User is a person who can sign in.
type User struct {
	Name     string // preferred_username; also the login name
	Password string
	Email    string
	Groups   []string
	// Roles is the value of the role claim: role names or ARNs.
	Roles []string
	// Tags become principal_tags of the tags claim; Transitive their transitive keys.
	Tags       map[string]string
	Transitive []string
}

// Options configures Start. Zero values take the defaults.
type Options struct {
	ClientID string // default "phantom"
	// RedirectURIs registered for the client (a native app: loopback URIs match any
	// port). Default http://127.0.0.1/callback and https://127.0.0.1/sso/callback.
	RedirectURIs []string
	RoleClaim    string // default "phantom_roles"
	Users        []User
	// IDTokenLifetime and AccessTokenLifetime default to 5 minutes.
	IDTokenLifetime     time.Duration
	AccessTokenLifetime time.Duration
	// PollInterval is the device grant's polling interval (default 1s).
	PollInterval time.Duration
}

// OP is a running provider.
type OP struct {
	// URL is the issuer: http://127.0.0.1:PORT.
	URL      string
	ClientID string
	st       *storage
	srv      *httptest.Server
	callback func(context.Context, string) string
}

// Start runs a provider until the test ends.
func Start(t testing.TB, opts Options) *OP {
	t.Helper()
	if opts.ClientID == "" {
		opts.ClientID = DefaultClientID
	}
	if opts.RedirectURIs == nil {
		opts.RedirectURIs = []string{"http://127.0.0.1/callback", "https://127.0.0.1/sso/callback"}
	}
	if opts.RoleClaim == "" {
		opts.RoleClaim = DefaultRoleClaim
	}
	if opts.IDTokenLifetime == 0 {
		opts.IDTokenLifetime = 5 * time.Minute
	}
	if opts.AccessTokenLifetime == 0 {
		opts.AccessTokenLifetime = 5 * time.Minute
	}
	if opts.PollInterval == 0 {
		opts.PollInterval = time.Second
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	issuer := "http://" + ln.Addr().String()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	st := newStorage(opts, key)
	var crypto [32]byte
	rand.Read(crypto[:])
	provider, err := op.NewOpenIDProvider(issuer, &op.Config{
		CryptoKey:             crypto,
		CryptoKeyId:           "ssotest",
		CodeMethodS256:        true,
		AuthMethodPost:        true,
		GrantTypeRefreshToken: true,
		SupportedUILocales:    []language.Tag{language.English},
		DeviceAuthorization: op.DeviceAuthorizationConfig{
			Lifetime:     5 * time.Minute,
			PollInterval: opts.PollInterval,
			UserFormPath: "/device",
			UserCode:     op.UserCodeBase20,
		},
	}, st, op.WithAllowInsecure())
	if err != nil {
		t.Fatal(err)
	}
	o := &OP{URL: issuer, ClientID: opts.ClientID, st: st, callback: op.AuthCallbackURL(provider)}
	mux := http.NewServeMux()
	pages := op.NewIssuerInterceptor(provider.IssuerFromRequest)
	mux.Handle("/login", pages.Handler(http.HandlerFunc(o.login)))
	mux.Handle("/device", pages.Handler(http.HandlerFunc(o.device)))
	mux.Handle("/", provider)
	o.srv = httptest.NewUnstartedServer(mux)
	o.srv.Listener.Close()
	o.srv.Listener = ln
	o.srv.Config.ErrorLog = nil
	o.srv.Start()
	t.Cleanup(o.srv.Close)
	return o
}

// Refreshes is how many refresh_token grants the provider has answered.
func (o *OP) Refreshes() int { return int(o.st.refreshes.Load()) }

// RevokeRefreshTokens makes every refresh token issued so far invalid.
func (o *OP) RevokeRefreshTokens() {
	o.st.mu.Lock()
	clear(o.st.refresh)
	o.st.mu.Unlock()
}

var loginPage = template.Must(template.New("login").Parse(`<!doctype html>
<html><head><title>Test IdP sign-in</title></head><body>
<h1>Sign in to the test identity provider</h1>
{{if .Error}}<p id="error">{{.Error}}</p>{{end}}
<form method="post" action="{{.Action}}">
<input type="hidden" name="id" value="{{.ID}}">
{{if .UserCode}}<label>Code <input id="user_code" name="user_code" value="{{.UserCode}}"></label>{{end}}
<label>User <input id="username" name="username"></label>
<label>Password <input id="password" name="password" type="password"></label>
<button id="submit" type="submit" name="action" value="approve">Sign in</button>
{{if .UserCode}}<button id="deny" type="submit" name="action" value="deny">Deny</button>{{end}}
</form></body></html>`))

type pageData struct{ Action, ID, UserCode, Error string }

// login is the page the authorization endpoint sends the browser to.
func (o *OP) login(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodGet {
		loginPage.Execute(w, pageData{Action: "/login", ID: r.URL.Query().Get("authRequestID")})
		return
	}
	id := r.PostFormValue("id")
	u, err := o.st.authenticate(r.PostFormValue("username"), r.PostFormValue("password"))
	if err == nil {
		err = o.st.completeAuth(id, u)
	}
	if err != nil {
		w.WriteHeader(http.StatusUnauthorized)
		loginPage.Execute(w, pageData{Action: "/login", ID: id, Error: err.Error()})
		return
	}
	http.Redirect(w, r, o.callback(r.Context(), id), http.StatusFound)
}

// device is the verification page of the device grant (RFC 8628 §3.3).
func (o *OP) device(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodGet {
		loginPage.Execute(w, pageData{Action: "/device", UserCode: r.URL.Query().Get("user_code")})
		return
	}
	code := r.PostFormValue("user_code")
	u, err := o.st.authenticate(r.PostFormValue("username"), r.PostFormValue("password"))
	if err == nil {
		err = o.st.completeDevice(code, u, r.PostFormValue("action") == "approve")
	}
	if err != nil {
		w.WriteHeader(http.StatusUnauthorized)
		loginPage.Execute(w, pageData{Action: "/device", UserCode: code, Error: err.Error()})
		return
	}
	io.WriteString(w, "Signed in: you may close this page and return to your terminal.")
}

// ApproveDevice signs in as name on the device page and approves userCode, as the person
// would in a browser.
func (o *OP) ApproveDevice(t testing.TB, userCode, name, password string) {
	t.Helper()
	resp, err := http.PostForm(o.URL+"/device", url.Values{"user_code": {userCode}, "username": {name}, "password": {password}, "action": {"approve"}})
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("approve device code %s: %d %s", userCode, resp.StatusCode, body)
	}
}

// SignIn acts as the person's browser: it opens authURL (the authorization endpoint), signs
// in as name, and returns where the provider then redirects the browser (the client's
// redirect URI with the code and state), without following it.
func (o *OP) SignIn(t testing.TB, authURL, name, password string) string {
	t.Helper()
	c := &http.Client{CheckRedirect: func(req *http.Request, via []*http.Request) error {
		if req.URL.Host != strings.TrimPrefix(o.URL, "http://") {
			return http.ErrUseLastResponse
		}
		return nil
	}}
	resp, err := c.Get(authURL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	id := resp.Request.URL.Query().Get("authRequestID")
	if resp.StatusCode != http.StatusOK || id == "" {
		t.Fatalf("the authorization endpoint led to %s (%d), not the login page", resp.Request.URL, resp.StatusCode)
	}
	resp, err = c.PostForm(o.URL+"/login", url.Values{"id": {id}, "username": {name}, "password": {password}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc := resp.Header.Get("Location")
	if resp.StatusCode != http.StatusFound || loc == "" {
		t.Fatalf("sign-in as %s: %d, no redirect to the client", name, resp.StatusCode)
	}
	return loc
}

// --- storage ---

type storage struct {
	opts   Options
	key    *rsa.PrivateKey
	client *client

	mu       sync.Mutex
	auth     map[string]*authRequest // by id
	codes    map[string]string       // code -> auth request id
	refresh  map[string]*refreshToken
	devices  map[string]*deviceEntry // by device code
	userCode map[string]string       // user code -> device code

	refreshes atomic.Int64
}

func newStorage(opts Options, key *rsa.PrivateKey) *storage {
	return &storage{
		opts: opts, key: key,
		client:   &client{id: opts.ClientID, redirects: opts.RedirectURIs, idLife: opts.IDTokenLifetime},
		auth:     map[string]*authRequest{},
		codes:    map[string]string{},
		refresh:  map[string]*refreshToken{},
		devices:  map[string]*deviceEntry{},
		userCode: map[string]string{},
	}
}

func randomID() string {
	b := make([]byte, 16)
	rand.Read(b)
	return fmt.Sprintf("%x", b)
}

var errNotFound = errors.New("not found")

func (s *storage) user(name string) (*User, bool) {
	for i := range s.opts.Users {
		if s.opts.Users[i].Name == name {
			return &s.opts.Users[i], true
		}
	}
	return nil, false
}

func (s *storage) authenticate(name, password string) (*User, error) {
	u, ok := s.user(name)
	if !ok || u.Password != password {
		return nil, errors.New("wrong user name or password")
	}
	return u, nil
}

func (s *storage) completeAuth(id string, u *User) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, ok := s.auth[id]
	if !ok {
		return errors.New("unknown sign-in request")
	}
	a.subject, a.done, a.authTime = u.Name, true, time.Now()
	return nil
}

func (s *storage) completeDevice(userCode string, u *User, approve bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	d, ok := s.devices[s.userCode[userCode]]
	if !ok || time.Now().After(d.state.Expires) {
		return errors.New("unknown or expired code")
	}
	if approve {
		d.state.Done, d.state.Subject, d.state.AuthTime, d.state.AMR = true, u.Name, time.Now(), []string{"pwd"}
	} else {
		d.state.Denied = true
	}
	return nil
}

type authRequest struct {
	id       string
	req      *oidc.AuthRequest
	subject  string
	done     bool
	authTime time.Time
}

func (a *authRequest) GetID() string                         { return a.id }
func (a *authRequest) GetACR() string                        { return "" }
func (a *authRequest) GetAMR() []string                      { return []string{"pwd"} }
func (a *authRequest) GetAudience() []string                 { return []string{a.req.ClientID} }
func (a *authRequest) GetAuthTime() time.Time                { return a.authTime }
func (a *authRequest) GetClientID() string                   { return a.req.ClientID }
func (a *authRequest) GetCodeChallenge() *oidc.CodeChallenge { return challenge(a.req) }
func (a *authRequest) GetNonce() string                      { return a.req.Nonce }
func (a *authRequest) GetRedirectURI() string                { return a.req.RedirectURI }
func (a *authRequest) GetResponseType() oidc.ResponseType    { return a.req.ResponseType }
func (a *authRequest) GetResponseMode() oidc.ResponseMode    { return a.req.ResponseMode }
func (a *authRequest) GetScopes() []string                   { return a.req.Scopes }
func (a *authRequest) GetState() string                      { return a.req.State }
func (a *authRequest) GetSubject() string                    { return a.subject }
func (a *authRequest) Done() bool                            { return a.done }

func challenge(r *oidc.AuthRequest) *oidc.CodeChallenge {
	if r.CodeChallenge == "" {
		return nil
	}
	return &oidc.CodeChallenge{Challenge: r.CodeChallenge, Method: r.CodeChallengeMethod}
}

type refreshToken struct {
	subject, clientID string
	scopes, amr       []string
	authTime          time.Time
}

func (r *refreshToken) GetAMR() []string                 { return r.amr }
func (r *refreshToken) GetAudience() []string            { return []string{r.clientID} }
func (r *refreshToken) GetAuthTime() time.Time           { return r.authTime }
func (r *refreshToken) GetClientID() string              { return r.clientID }
func (r *refreshToken) GetScopes() []string              { return r.scopes }
func (r *refreshToken) GetSubject() string               { return r.subject }
func (r *refreshToken) SetCurrentScopes(scopes []string) { r.scopes = scopes }

type deviceEntry struct{ state op.DeviceAuthorizationState }

func (s *storage) CreateAuthRequest(_ context.Context, r *oidc.AuthRequest, _ string) (op.AuthRequest, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a := &authRequest{id: randomID(), req: r}
	s.auth[a.id] = a
	return a, nil
}

func (s *storage) AuthRequestByID(_ context.Context, id string) (op.AuthRequest, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, ok := s.auth[id]
	if !ok {
		return nil, errNotFound
	}
	return a, nil
}

func (s *storage) AuthRequestByCode(ctx context.Context, code string) (op.AuthRequest, error) {
	s.mu.Lock()
	id, ok := s.codes[code]
	s.mu.Unlock()
	if !ok {
		return nil, errNotFound
	}
	return s.AuthRequestByID(ctx, id)
}

func (s *storage) SaveAuthCode(_ context.Context, id, code string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.codes[code] = id
	return nil
}

func (s *storage) DeleteAuthRequest(_ context.Context, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.auth, id)
	for c, a := range s.codes {
		if a == id {
			delete(s.codes, c)
		}
	}
	return nil
}

func (s *storage) CreateAccessToken(context.Context, op.TokenRequest) (string, time.Time, error) {
	return randomID(), time.Now().Add(s.opts.AccessTokenLifetime), nil
}

func (s *storage) CreateAccessAndRefreshTokens(_ context.Context, req op.TokenRequest, current string) (string, string, time.Time, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rt := &refreshToken{subject: req.GetSubject(), scopes: req.GetScopes(), authTime: time.Now(), amr: []string{"pwd"}}
	switch r := req.(type) {
	case op.IDTokenRequest:
		rt.clientID, rt.authTime, rt.amr = r.GetClientID(), r.GetAuthTime(), r.GetAMR()
	}
	if current != "" {
		s.refreshes.Add(1)
		delete(s.refresh, current) // rotated: the old one is spent
	}
	tok := randomID()
	s.refresh[tok] = rt
	return randomID(), tok, time.Now().Add(s.opts.AccessTokenLifetime), nil
}

func (s *storage) TokenRequestByRefreshToken(_ context.Context, token string) (op.RefreshTokenRequest, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rt, ok := s.refresh[token]
	if !ok {
		return nil, op.ErrInvalidRefreshToken
	}
	cp := *rt
	return &cp, nil
}

func (s *storage) TerminateSession(context.Context, string, string) error { return nil }

func (s *storage) RevokeToken(_ context.Context, token, _, _ string) *oidc.Error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.refresh, token)
	return nil
}

func (s *storage) GetRefreshTokenInfo(_ context.Context, _ string, token string) (string, string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rt, ok := s.refresh[token]
	if !ok {
		return "", "", op.ErrInvalidRefreshToken
	}
	return rt.subject, token, nil
}

type signingKey struct{ k *rsa.PrivateKey }

func (k signingKey) SignatureAlgorithm() jose.SignatureAlgorithm { return jose.RS256 }
func (k signingKey) Key() any                                    { return k.k }
func (k signingKey) ID() string                                  { return "ssotest-1" }

type publicKey struct{ k *rsa.PrivateKey }

func (k publicKey) ID() string                         { return "ssotest-1" }
func (k publicKey) Algorithm() jose.SignatureAlgorithm { return jose.RS256 }
func (k publicKey) Use() string                        { return "sig" }
func (k publicKey) Key() any                           { return &k.k.PublicKey }

func (s *storage) SigningKey(context.Context) (op.SigningKey, error) { return signingKey{s.key}, nil }
func (s *storage) SignatureAlgorithms(context.Context) ([]jose.SignatureAlgorithm, error) {
	return []jose.SignatureAlgorithm{jose.RS256}, nil
}
func (s *storage) KeySet(context.Context) ([]op.Key, error) { return []op.Key{publicKey{s.key}}, nil }

func (s *storage) GetClientByClientID(_ context.Context, id string) (op.Client, error) {
	if id != s.client.id {
		return nil, errNotFound
	}
	return s.client, nil
}

func (s *storage) AuthorizeClientIDSecret(context.Context, string, string) error {
	return errors.New("the client is public: it has no secret")
}

func (s *storage) SetUserinfoFromScopes(context.Context, *oidc.UserInfo, string, string, []string) error {
	return nil
}

// SetUserinfoFromRequest puts the person's claims in the ID token.
func (s *storage) SetUserinfoFromRequest(_ context.Context, ui *oidc.UserInfo, req op.IDTokenRequest, _ []string) error {
	return s.claims(ui, req.GetSubject())
}

func (s *storage) claims(ui *oidc.UserInfo, subject string) error {
	u, ok := s.user(subject)
	if !ok {
		return errNotFound
	}
	ui.Subject = u.Name
	ui.PreferredUsername = u.Name
	ui.Email = u.Email
	ui.EmailVerified = oidc.Bool(true)
	if len(u.Groups) > 0 {
		ui.AppendClaims("groups", u.Groups)
	}
	if len(u.Roles) > 0 {
		ui.AppendClaims(s.opts.RoleClaim, u.Roles)
	}
	if len(u.Tags) > 0 {
		tags := map[string][]string{}
		for k, v := range u.Tags {
			tags[k] = []string{v}
		}
		c := map[string]any{"principal_tags": tags}
		if len(u.Transitive) > 0 {
			c["transitive_tag_keys"] = u.Transitive
		}
		ui.AppendClaims(TagsClaim, c)
	}
	return nil
}

func (s *storage) SetUserinfoFromToken(_ context.Context, ui *oidc.UserInfo, _, subject, _ string) error {
	return s.claims(ui, subject)
}

func (s *storage) SetIntrospectionFromToken(context.Context, *oidc.IntrospectionResponse, string, string, string) error {
	return errors.New("introspection is not supported")
}

func (s *storage) GetPrivateClaimsFromScopes(context.Context, string, string, []string) (map[string]any, error) {
	return nil, nil
}

func (s *storage) GetKeyByIDAndClientID(context.Context, string, string) (*jose.JSONWebKey, error) {
	return nil, errNotFound
}

func (s *storage) ValidateJWTProfileScopes(context.Context, string, []string) ([]string, error) {
	return nil, errors.New("JWT profile is not supported")
}

func (s *storage) Health(context.Context) error { return nil }

// StoreDeviceAuthorization and GetDeviceAuthorizatonState implement the device grant.
func (s *storage) StoreDeviceAuthorization(_ context.Context, clientID, deviceCode, userCode string, expires time.Time, scopes []string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, dup := s.userCode[userCode]; dup {
		return op.ErrDuplicateUserCode
	}
	s.devices[deviceCode] = &deviceEntry{state: op.DeviceAuthorizationState{ClientID: clientID, Scopes: scopes, Expires: expires}}
	s.userCode[userCode] = deviceCode
	return nil
}

func (s *storage) GetDeviceAuthorizatonState(_ context.Context, clientID, deviceCode string) (*op.DeviceAuthorizationState, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d, ok := s.devices[deviceCode]
	if !ok || d.state.ClientID != clientID {
		return nil, errNotFound
	}
	st := d.state
	return &st, nil
}

// client is the perimeter's public client: a native app (loopback redirects on any port),
// code flow with PKCE, refresh tokens, the device grant.
type client struct {
	id        string
	redirects []string
	idLife    time.Duration
}

func (c *client) GetID() string                       { return c.id }
func (c *client) RedirectURIs() []string              { return c.redirects }
func (c *client) PostLogoutRedirectURIs() []string    { return nil }
func (c *client) ApplicationType() op.ApplicationType { return op.ApplicationTypeNative }
func (c *client) AuthMethod() oidc.AuthMethod         { return oidc.AuthMethodNone }
func (c *client) ResponseTypes() []oidc.ResponseType {
	return []oidc.ResponseType{oidc.ResponseTypeCode}
}
func (c *client) LoginURL(id string) string           { return "/login?authRequestID=" + url.QueryEscape(id) }
func (c *client) AccessTokenType() op.AccessTokenType { return op.AccessTokenTypeBearer }
func (c *client) IDTokenLifetime() time.Duration      { return c.idLife }
func (c *client) DevMode() bool                       { return false }
func (c *client) RestrictAdditionalIdTokenScopes() func([]string) []string {
	return func(s []string) []string { return s }
}
func (c *client) RestrictAdditionalAccessTokenScopes() func([]string) []string {
	return func(s []string) []string { return s }
}
func (c *client) IsScopeAllowed(scope string) bool {
	return slices.Contains([]string{oidc.ScopeOpenID, oidc.ScopeProfile, oidc.ScopeEmail, oidc.ScopeOfflineAccess, "groups"}, scope)
}
func (c *client) IDTokenUserinfoClaimsAssertion() bool { return true }
func (c *client) ClockSkew() time.Duration             { return 0 }
func (c *client) GrantTypes() []oidc.GrantType {
	return []oidc.GrantType{oidc.GrantTypeCode, oidc.GrantTypeRefreshToken, oidc.GrantTypeDeviceCode}
}
