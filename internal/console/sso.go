package console

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"time"

	"github.com/phantom-perimeter/phantom/internal/config"
	"github.com/phantom-perimeter/phantom/internal/identity"
	"github.com/phantom-perimeter/phantom/internal/oidc"
	"github.com/phantom-perimeter/phantom/internal/sso"
	"github.com/phantom-perimeter/phantom/internal/store"
)

// Single sign-on: the authorization code flow with PKCE against the spec's sign-in provider
// (oidcProviders[].signIn). GET /sso/start sends the browser to the provider; its answer
// comes to GET /sso/callback, which checks the state (bound to the browser by a cookie),
// exchanges the code with the PKCE verifier, verifies the ID token (signature, issuer,
// audience, expiry, and the nonce of this sign-in), and asks STS for a session of the
// person's role (AssumeRoleWithWebIdentity: the role's trust policy decides). The console
// session is then bound to that role session like a key sign-in with it: it ends when the
// session expires or is revoked.

// WebIdentitySTS exchanges an ID token for a role session (login.STS, over HTTPS to STS).
type WebIdentitySTS interface {
	AssumeRoleWithWebIdentity(ctx context.Context, role, session, token string, duration time.Duration) (accessKeyID, secretAccessKey, sessionToken string, err error)
}

// IDTokenVerifier verifies ID tokens of the spec's providers (*oidc.Verifier).
type IDTokenVerifier interface {
	Verify(ctx context.Context, token string) (*oidc.Identity, error)
}

const (
	// ssoCookie binds a sign-in in progress to the browser that started it. SameSite=Lax,
	// not Strict: the provider's redirect back is a cross-site navigation, on which
	// browsers do not send Strict cookies.
	ssoCookie   = "__Host-phantom-sso"
	ssoLifetime = 10 * time.Minute
	maxPending  = 10000
)

// pendingSSO is a sign-in in progress: started (waiting for the provider), or signed in
// at the provider with several roles to choose from. It is kept in the store (sealed,
// pendingTable), so the provider's redirect back and the role choice may reach any
// replica.
type pendingSSO struct {
	Issuer      string    `json:"issuer"`
	ClientID    string    `json:"clientId"`
	Redirect    string    `json:"redirect"`
	Verifier    string    `json:"verifier"`
	Nonce       string    `json:"nonce"`
	Created     time.Time `json:"created"`
	Token       string    `json:"token,omitempty"`   // the verified ID token, once the provider answered
	Subject     string    `json:"subject,omitempty"` // its subject
	Roles       []string  `json:"roles,omitempty"`
	RoleClaim   string    `json:"roleClaim,omitempty"`
	SessionName string    `json:"sessionName,omitempty"`
}

// discoveryTTL is how long the provider's endpoints are reused: sign-ins (and anyone
// requesting /sso/start) do not make the console fetch the discovery document each time.
const discoveryTTL = 5 * time.Minute

// discoveries caches the sign-in provider's endpoints.
type discoveries struct {
	mu sync.Mutex
	m  map[string]discovered
}

type discovered struct {
	p  *sso.Provider
	at time.Time
}

func (d *discoveries) get(ctx context.Context, hc *http.Client, issuer string, now time.Time) (*sso.Provider, error) {
	d.mu.Lock()
	c, ok := d.m[issuer]
	d.mu.Unlock()
	if ok && now.Sub(c.at) < discoveryTTL && now.Sub(c.at) >= 0 {
		return c.p, nil
	}
	p, err := sso.Discover(ctx, hc, issuer)
	if err != nil {
		return nil, err
	}
	d.mu.Lock()
	if d.m == nil || len(d.m) > 16 {
		d.m = map[string]discovered{} // one provider signs in; a spec change may add another
	}
	d.m[issuer] = discovered{p: p, at: now}
	d.mu.Unlock()
	return p, nil
}

// pendingTable holds sign-ins in progress in the store, each under the SHA-256 of the
// token the browser holds for it (the state, or the chooser form's token) and sealed
// (AES-256-GCM) under a key derived from that token: the store never holds a PKCE
// verifier or an ID token readably, and a row opens only for the browser that has the
// token. Each is taken once, by whichever replica the browser reaches.
type pendingTable struct{ st SessionStore }

// pendingKey is the sealing key of the sign-in held under token.
func pendingKey(token string) []byte {
	m := hmac.New(sha256.New, []byte(token))
	m.Write([]byte("phantom console sso"))
	return m.Sum(nil)
}

func pendingAEAD(token string) cipher.AEAD {
	b, err := aes.NewCipher(pendingKey(token))
	if err != nil {
		panic("console: AES-256: " + err.Error()) // a 32-byte key never fails
	}
	g, err := cipher.NewGCM(b)
	if err != nil {
		panic("console: GCM: " + err.Error())
	}
	return g
}

// put stores p under token; false when the store holds maxPending sign-ins.
func (t pendingTable) put(ctx context.Context, token string, p *pendingSSO) (bool, error) {
	plain, err := json.Marshal(p)
	if err != nil {
		return false, fmt.Errorf("seal a sign-in in progress: %w", err)
	}
	id := sha256.Sum256([]byte(token))
	g := pendingAEAD(token)
	nonce := make([]byte, g.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return false, fmt.Errorf("seal a sign-in in progress: %w", err)
	}
	ok, err := t.st.PutConsoleSSO(ctx, id, g.Seal(nonce, nonce, plain, id[:]), p.Created.Add(ssoLifetime), maxPending)
	if err != nil {
		return false, fmt.Errorf("%w: %w", errSessionStore, err)
	}
	return ok, nil
}

// take removes and returns the live sign-in under token: each is used once. nil when
// there is none (expired, used, or never this browser's).
func (t pendingTable) take(ctx context.Context, token string, now time.Time) (*pendingSSO, error) {
	if token == "" || len(token) > 128 {
		return nil, nil
	}
	id := sha256.Sum256([]byte(token))
	sealed, err := t.st.TakeConsoleSSO(ctx, id, now)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("%w: %w", errSessionStore, err)
	}
	g := pendingAEAD(token)
	if len(sealed) < g.NonceSize() {
		return nil, nil
	}
	plain, err := g.Open(nil, sealed[:g.NonceSize()], sealed[g.NonceSize():], id[:])
	if err != nil {
		return nil, nil // not sealed for this token: altered in the store
	}
	var p pendingSSO
	if err := json.Unmarshal(plain, &p); err != nil || now.Sub(p.Created) >= ssoLifetime {
		return nil, nil
	}
	return &p, nil
}

// signInProvider is the spec's sign-in provider when single sign-on can run.
func (h *Handler) signInProvider(spec *config.Spec) (*config.OIDCProvider, bool) {
	if h.cfg.STS == nil || h.cfg.IDTokens == nil {
		return nil, false
	}
	return spec.SignInProvider()
}

// ssoStart sends the browser to the provider. A GET, so that the sign-in page's link is
// not subject to form-action (the provider is another origin); it changes nothing but a
// table entry and a cookie of this browser, so a cross-site link to it gains nothing.
func (h *Handler) ssoStart(w http.ResponseWriter, r *http.Request) {
	now := h.cfg.Now()
	spec := h.cfg.Spec()
	p, ok := h.signInProvider(spec)
	if !ok {
		h.errorPage(w, r, nil, http.StatusNotFound, "Single sign-on is not set up", "This perimeter's spec has no OIDC provider with signIn.")
		return
	}
	redirect, ok := callbackURL(r)
	if !ok {
		h.errorPage(w, r, nil, http.StatusBadRequest, "Bad request", "The request's host is not a host name or address.")
		return
	}
	pr, err := h.discovery.get(r.Context(), h.cfg.ProviderHTTP, p.URL, now)
	if err != nil {
		h.log.Error("console sso: discover the provider", "issuer", p.URL, "error", err)
		h.signinPage(w, r, http.StatusBadGateway, "The identity provider cannot be reached right now. Try again shortly.")
		return
	}
	verifier, challenge := sso.NewPKCE()
	state := sso.RandomToken()
	pend := &pendingSSO{Issuer: p.URL, ClientID: p.SignIn.ClientID, Redirect: redirect, Verifier: verifier, Nonce: sso.RandomToken(),
		Created: now, RoleClaim: p.SignIn.RoleClaim}
	if !h.putPending(w, r, state, pend) {
		return
	}
	c := &sso.Client{Provider: pr, ClientID: p.SignIn.ClientID, Scopes: p.SignIn.Scopes}
	http.SetCookie(w, &http.Cookie{Name: ssoCookie, Value: state, Path: "/", MaxAge: int(ssoLifetime / time.Second),
		Secure: true, HttpOnly: true, SameSite: http.SameSiteLaxMode})
	http.Redirect(w, r, c.AuthCodeURL(redirect, state, pend.Nonce, challenge), http.StatusSeeOther)
}

// putPending stores a sign-in in progress; on failure it answers and returns false.
func (h *Handler) putPending(w http.ResponseWriter, r *http.Request, token string, pend *pendingSSO) bool {
	ok, err := h.pending.put(r.Context(), token, pend)
	switch {
	case err != nil:
		h.log.Error("console sso: store a sign-in in progress", "error", err)
		h.signinPage(w, r, http.StatusServiceUnavailable, "The console cannot sign you in right now. Try again shortly.")
		return false
	case !ok:
		h.signinPage(w, r, http.StatusServiceUnavailable, "Too many sign-ins are in progress. Try again later.")
		return false
	}
	return true
}

// takePending takes a sign-in in progress; a store failure is answered (503) and
// reported as ok false.
func (h *Handler) takePending(w http.ResponseWriter, r *http.Request, token string, now time.Time) (*pendingSSO, bool) {
	pend, err := h.pending.take(r.Context(), token, now)
	if err != nil {
		h.log.Error("console sso: take a sign-in in progress", "error", err)
		h.signinPage(w, r, http.StatusServiceUnavailable, "The console cannot sign you in right now. Try again shortly.")
		return nil, false
	}
	return pend, true
}

// callbackURL is this console's redirect URI, https://HOST/sso/callback, for the host the
// browser used (the provider accepts only the URIs registered for the client). A Host that
// is not a plain host[:port] is refused (FuzzCallbackURL found "[").
func callbackURL(r *http.Request) (string, bool) {
	host := r.Host
	if host == "" || len(host) > 256 {
		return "", false
	}
	for i := 0; i < len(host); i++ {
		c := host[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == ':' || c == '[' || c == ']') {
			return "", false
		}
	}
	raw := "https://" + host + "/sso/callback"
	u, err := url.Parse(raw)
	if err != nil || u.Host != host || u.Hostname() == "" {
		return "", false
	}
	return raw, true
}

// ssoCallback takes the provider's answer.
func (h *Handler) ssoCallback(w http.ResponseWriter, r *http.Request) {
	now := h.cfg.Now()
	q := r.URL.Query()
	state := q.Get("state")
	clearSSOCookie(w)
	if c := cookieValue(r, ssoCookie); c == "" || subtle.ConstantTimeCompare([]byte(c), []byte(state)) != 1 {
		// Not an answer to a sign-in this browser started: a forged or replayed callback
		// (login CSRF), or a stale tab.
		h.auditLogin(r, now, "", "", "InvalidCsrfToken", "single sign-on: the state does not match this browser's sign-in")
		h.signinPage(w, r, http.StatusForbidden, "This sign-in did not start in this browser, or it expired. Please sign in again.")
		return
	}
	pend, ok := h.takePending(w, r, state, now)
	if !ok {
		return
	}
	if pend == nil {
		h.auditLogin(r, now, "", "", "InvalidCsrfToken", "single sign-on: no sign-in in progress for this state (expired or used)")
		h.signinPage(w, r, http.StatusForbidden, "This sign-in expired or was used already. Please sign in again.")
		return
	}
	if e := q.Get("error"); e != "" || q.Get("code") == "" {
		h.auditLogin(r, now, "", "", "Failed authentication", "single sign-on: the provider answered "+truncate(asciiOnly(e), 64)+": "+truncate(asciiOnly(q.Get("error_description")), 256))
		h.signinPage(w, r, http.StatusUnauthorized, "The identity provider did not sign you in.")
		return
	}
	id, token, reason := h.ssoToken(r.Context(), pend, q.Get("code"), now)
	if id == nil {
		h.auditLogin(r, now, "", "", "Failed authentication", "single sign-on: "+reason)
		h.signinPage(w, r, http.StatusUnauthorized, "The sign-in could not be verified.")
		return
	}
	pend.Subject, pend.Token, pend.SessionName = id.Subject, token, sso.SessionName(id.Claims)
	roles, err := sso.Roles(id.Claims, pend.RoleClaim, h.cfg.Spec().Account)
	switch {
	case pend.RoleClaim == "":
		err = errors.New("the spec's signIn has no roleClaim: the console cannot tell which role to ask for")
	case err == nil && len(roles) == 0:
		err = errors.New("the token's " + pend.RoleClaim + " claim lists no role")
	}
	if err != nil {
		h.auditLogin(r, now, "", "", "Failed authentication", "single sign-on as "+id.Subject+": "+err.Error())
		h.signinPage(w, r, http.StatusForbidden, "Your sign-in names no role you could take in this perimeter.")
		return
	}
	if len(roles) == 1 {
		h.ssoFinish(w, r, pend, roles[0])
		return
	}
	choice := sso.RandomToken()
	pend.Roles, pend.Created = roles, now
	if !h.putPending(w, r, choice, pend) {
		return
	}
	h.render(w, r, http.StatusOK, "ssorole", nil, "Choose a role", roleChoice{Choice: choice, Subject: id.Subject, Roles: roles})
}

type roleChoice struct {
	Choice, Subject string
	Roles           []string
}

// ssoRole takes the role chosen on the chooser page.
func (h *Handler) ssoRole(w http.ResponseWriter, r *http.Request) {
	now := h.cfg.Now()
	if err := r.ParseForm(); err != nil || !sameOrigin(r) {
		h.signinPage(w, r, http.StatusBadRequest, "The form could not be read.")
		return
	}
	pend, ok := h.takePending(w, r, r.PostForm.Get("choice"), now)
	if !ok {
		return
	}
	role := r.PostForm.Get("role")
	if pend == nil || pend.Token == "" || !slices.Contains(pend.Roles, role) {
		h.auditLogin(r, now, "", "", "InvalidCsrfToken", "single sign-on: the role choice is stale, used or not one offered")
		h.signinPage(w, r, http.StatusForbidden, "This sign-in expired or was used already. Please sign in again.")
		return
	}
	h.ssoFinish(w, r, pend, role)
}

// ssoToken exchanges the code and verifies the ID token it brings. It returns the identity
// and the raw token, or nil and why not.
func (h *Handler) ssoToken(ctx context.Context, pend *pendingSSO, code string, now time.Time) (*oidc.Identity, string, string) {
	pr, err := h.discovery.get(ctx, h.cfg.ProviderHTTP, pend.Issuer, now)
	if err != nil {
		return nil, "", "discover the provider: " + err.Error()
	}
	c := &sso.Client{Provider: pr, ClientID: pend.ClientID}
	tok, err := c.Exchange(ctx, code, pend.Redirect, pend.Verifier)
	if err != nil {
		return nil, "", "exchange the code: " + err.Error()
	}
	v := h.cfg.IDTokens()
	if v == nil {
		return nil, "", "no verifier for the spec's OIDC providers"
	}
	id, err := v.Verify(ctx, tok.IDToken)
	if err != nil {
		return nil, "", "the ID token: " + err.Error()
	}
	nonce, _ := id.Claims["nonce"].(string)
	switch {
	case id.Issuer != pend.Issuer:
		return nil, "", "the ID token is from " + id.Issuer + ", not the sign-in provider"
	case !slices.Contains(id.Audiences, pend.ClientID):
		return nil, "", "the ID token is not for the client " + pend.ClientID
	case subtle.ConstantTimeCompare([]byte(nonce), []byte(pend.Nonce)) != 1:
		// OpenID Connect Core §3.1.3.7: a token minted for another sign-in.
		return nil, "", "the ID token's nonce is not this sign-in's"
	}
	return id, tok.IDToken, ""
}

// ssoFinish asks STS for the role session and starts the console session bound to it.
func (h *Handler) ssoFinish(w http.ResponseWriter, r *http.Request, pend *pendingSSO, role string) {
	now := h.cfg.Now()
	who := "single sign-on as " + pend.Subject + " (" + pend.Issuer + ") for " + role
	akid, secret, token, err := h.cfg.STS.AssumeRoleWithWebIdentity(r.Context(), role, pend.SessionName, pend.Token, 0)
	if err != nil {
		h.auditLogin(r, now, "", "", "AccessDenied", who+": STS refused the session: "+err.Error())
		h.signinPage(w, r, http.StatusForbidden, "The perimeter refused you a session of "+role+".")
		return
	}
	rv, err := h.cfg.Identity.Resolve(r.Context(), akid, token)
	p, ok := (*principal)(nil), err == nil
	if ok {
		p, ok = identify(h.cfg.Spec(), rv)
	}
	if !ok || subtle.ConstantTimeCompare([]byte(rv.Credential.SecretAccessKey), []byte(secret)) != 1 {
		reason := "the session STS issued does not resolve to a role of the spec"
		if err != nil {
			reason = err.Error()
		}
		h.auditLogin(r, now, akid, "", "Failed authentication", who+": "+reason)
		if errors.Is(err, identity.ErrStale) || errors.Is(err, identity.ErrNotLoaded) {
			h.unavailable(w, r, false)
			return
		}
		h.signinPage(w, r, http.StatusForbidden, "The session could not be used.")
		return
	}
	extra := map[string]any{"signInMethod": "SSO", "identityProvider": pend.Issuer, "subject": pend.Subject}
	if status, msg := h.startSession(w, r, now, p, rv, akid, token, secret, extra); msg != "" {
		h.signinPage(w, r, status, msg)
		return
	}
	// The browser came here from the provider, a cross-site redirect chain, so a redirect
	// would not carry the SameSite=Strict session cookie; this page moves on to / by a
	// same-site navigation of its own.
	h.render(w, r, http.StatusOK, "continue", nil, "Signed in", nil)
}

func clearSSOCookie(w http.ResponseWriter) {
	http.SetCookie(w, &http.Cookie{Name: ssoCookie, Value: "", Path: "/", MaxAge: -1, Secure: true, HttpOnly: true, SameSite: http.SameSiteLaxMode})
}

// asciiOnly keeps outside text printable ASCII for the audit record.
func asciiOnly(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c < 0x20 || c > 0x7e {
			b[i] = '?'
		}
	}
	return string(b)
}
