package console

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/phantom-perimeter/phantom/internal/audit"
	"github.com/phantom-perimeter/phantom/internal/config"
	"github.com/phantom-perimeter/phantom/internal/identity"
	"github.com/phantom-perimeter/phantom/internal/requestid"
)

// request is one signed-in request in progress.
type request struct {
	w    http.ResponseWriter
	r    *http.Request
	spec *config.Spec
	now  time.Time
	s    *session
	p    *principal
	risk string // phantom:RiskLevel of the principal, "" none
}

// errBadCredentials is the one answer to every refused sign-in: which of key, secret or
// token was wrong is for the audit log, not for the person trying.
const errBadCredentials = "The access key ID, secret access key or session token is not valid."

// signedIn returns the request's live session and principal. Without one it sends the
// browser to /signin (api: answers 401) and returns false. The credential is resolved
// again on every request: revoked, expired, disabled or deleted credentials and principals
// gone from the spec end the console session.
func (h *Handler) signedIn(w http.ResponseWriter, r *http.Request, api bool) (*request, bool) {
	now := h.cfg.Now()
	rq := &request{w: w, r: r, spec: h.cfg.Spec(), now: now}
	s, err := h.sessions.get(r.Context(), cookieValue(r, sessionCookie), now)
	if err != nil {
		h.log.Error("read console session", "error", err)
		h.unavailable(w, r, api)
		return nil, false
	}
	if s == nil {
		h.toSignin(w, r, api, "")
		return nil, false
	}
	h.sessions.sweep(r.Context(), now)
	rv, err := h.cfg.Identity.Resolve(r.Context(), s.accessKey, s.token)
	if errors.Is(err, identity.ErrStale) || errors.Is(err, identity.ErrNotLoaded) {
		h.unavailable(w, r, api)
		return nil, false
	}
	var p *principal
	ok := err == nil
	if ok {
		sum := sha256.Sum256([]byte(rv.Credential.SecretAccessKey))
		ok = subtle.ConstantTimeCompare(sum[:], s.secretHash[:]) == 1 && rv.Credential.Principal == s.principal
	}
	if ok {
		p, ok = identify(rq.spec, rv)
	}
	if !ok {
		reason := "the principal is no longer in the perimeter spec"
		if err != nil {
			reason = err.Error()
		}
		h.endSession(w, r, s, now, reason)
		h.toSignin(w, r, api, "ended")
		return nil, false
	}
	risk, err := h.riskLevel(r.Context(), p)
	if err != nil {
		h.log.Error("read risk levels", "error", err)
		h.unavailable(w, r, api)
		return nil, false
	}
	rq.s, rq.p, rq.risk = s, p, risk
	return rq, true
}

// endSession removes a session whose credential stopped resolving, and audits it.
func (h *Handler) endSession(w http.ResponseWriter, r *http.Request, s *session, now time.Time, reason string) {
	if err := h.sessions.remove(r.Context(), s); err != nil {
		// It is refused anyway: the credential is resolved on every request.
		h.log.Error("delete an ended console session", "error", err)
	}
	clearCookie(w, sessionCookie)
	ev := h.event(r, now, "ConsoleSignOut")
	ev.UserIdentity = audit.UserIdentity{ARN: s.principal, AccessKeyID: s.accessKey}
	ev.AdditionalEventData = map[string]any{"reason": "credential no longer valid: " + reason}
	if err := h.cfg.Auditor.Record(r.Context(), ev); err != nil {
		h.log.Error("console could not audit an ended session", "error", err)
	}
	h.log.Info("console session ended", "principal", s.principal, "reason", reason)
}

func (h *Handler) toSignin(w http.ResponseWriter, r *http.Request, api bool, why string) {
	if api {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		w.Write([]byte(`{"error":"not signed in"}`))
		return
	}
	target := "/signin"
	if why != "" {
		target += "?" + why + "=1"
	}
	http.Redirect(w, r, target, http.StatusSeeOther)
}

func (h *Handler) unavailable(w http.ResponseWriter, r *http.Request, api bool) {
	if api {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusServiceUnavailable)
		w.Write([]byte(`{"error":"perimeter state unavailable"}`))
		return
	}
	h.errorPage(w, r, nil, http.StatusServiceUnavailable, "Perimeter state unavailable",
		"The console cannot confirm credentials with the store right now. Try again shortly.")
}

type signinData struct {
	CSRF        string
	Error       string
	Notice      string
	AccessKeyID string
	// SSO names the sign-in provider when single sign-on is offered; KeySignIn says
	// whether the access-key form is.
	SSO       string
	KeySignIn bool
}

// newSigninData is the sign-in page's data with a fresh double-submit token, which the
// caller sets as signinCookie.
func (h *Handler) newSigninData() signinData {
	spec := h.cfg.Spec()
	d := signinData{CSRF: newToken(32), KeySignIn: spec.Console.KeySignIn != config.KeySignInRefuse}
	if p, ok := h.signInProvider(spec); ok {
		d.SSO = p.Name
	}
	return d
}

// signinForm shows the sign-in form with a fresh double-submit token.
func (h *Handler) signinForm(w http.ResponseWriter, r *http.Request) {
	d := h.newSigninData()
	q := r.URL.Query()
	switch {
	case q.Has("ended"):
		d.Notice = "Your console session ended: its credential is no longer valid, or it timed out."
	case q.Has("out"):
		d.Notice = "You are signed out."
	}
	setCookie(w, signinCookie, d.CSRF, 3600)
	h.render(w, r, http.StatusOK, "signin", nil, "Sign in", d)
}

// signinPage shows the sign-in page with an error.
func (h *Handler) signinPage(w http.ResponseWriter, r *http.Request, status int, msg string) {
	d := h.newSigninData()
	d.Error = msg
	setCookie(w, signinCookie, d.CSRF, 3600)
	h.render(w, r, status, "signin", nil, "Sign in", d)
}

// Bounds of the sign-in form's fields: far above real values, far below abuse.
const (
	maxAccessKeyIDLen = 128
	maxSecretLen      = 128
)

// signin verifies the submitted credential and starts a session.
func (h *Handler) signin(w http.ResponseWriter, r *http.Request) {
	now := h.cfg.Now()
	ip := sourceIP(r)
	form := h.newSigninData()
	fail := func(status int, msg string) {
		form.Error = msg
		setCookie(w, signinCookie, form.CSRF, 3600)
		h.render(w, r, status, "signin", nil, "Sign in", form)
	}
	if err := r.ParseForm(); err != nil {
		fail(http.StatusBadRequest, "The form could not be read.")
		return
	}
	got, want := r.PostForm.Get("csrf"), cookieValue(r, signinCookie)
	if got == "" || want == "" || subtle.ConstantTimeCompare([]byte(got), []byte(want)) != 1 || !sameOrigin(r) {
		h.auditLogin(r, now, "", "", "InvalidCsrfToken", "the sign-in form's CSRF token is missing or wrong")
		fail(http.StatusForbidden, "The sign-in form expired. Please try again.")
		return
	}
	akid := strings.TrimSpace(r.PostForm.Get("accessKeyId"))
	secret := strings.TrimSpace(r.PostForm.Get("secretAccessKey"))
	token := strings.TrimSpace(r.PostForm.Get("sessionToken"))
	if h.cfg.Spec().Console.KeySignIn == config.KeySignInRefuse {
		// The spec allows single sign-on only: no key is looked at, whatever it is.
		h.auditLogin(r, now, "", "", "Failed authentication", "key sign-in is switched off (console.keySignIn: refuse)")
		fail(http.StatusForbidden, "Sign-in with an access key is switched off for this console: use single sign-on.")
		return
	}
	if identity.ValidAccessKeyID(akid, identity.PrefixLongTerm) || identity.ValidAccessKeyID(akid, identity.PrefixTemporary) {
		form.AccessKeyID = akid
	}
	tk, ok, wait, delay, err := h.limiter.admit(r.Context(), ip, limiterKey(akid), now)
	if err != nil {
		h.log.Error("console sign-in refused: the limiter cannot count it", "error", err)
		h.auditLogin(r, now, form.AccessKeyID, "", "ServiceUnavailable", "the sign-in limiter's store cannot be reached")
		fail(http.StatusServiceUnavailable, "The console cannot sign you in right now. Try again shortly.")
		return
	}
	// An attempt that did not fail gives its tokens back; a failed one keeps them taken.
	failed := false
	defer func() {
		if err := h.limiter.settle(context.WithoutCancel(r.Context()), tk, failed, now); err != nil {
			h.log.Warn("console sign-in limiter: give back an attempt's tokens", "error", err)
		}
	}()
	if !ok {
		h.auditLogin(r, now, form.AccessKeyID, "", "Throttling", "too many failed sign-ins from this address")
		w.Header().Set("Retry-After", fmt.Sprint(int(wait.Seconds())+1))
		fail(http.StatusTooManyRequests, fmt.Sprintf("Too many failed sign-ins from your address. Try again in %d seconds.", int(wait.Seconds())+1))
		return
	}
	if delay > 0 {
		// Slower, not refused: the failures of this key, or of everyone, ask for pacing.
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			return
		}
	}
	p, rv, reason := h.verify(r, akid, secret, token)
	if reason == "unavailable" {
		fail(http.StatusServiceUnavailable, "The console cannot verify credentials right now. Try again shortly.")
		return
	}
	if p == nil {
		failed = true
		h.auditLogin(r, now, form.AccessKeyID, "", "Failed authentication", reason)
		fail(http.StatusUnauthorized, errBadCredentials)
		return
	}
	if status, msg := h.startSession(w, r, now, p, rv, akid, token, secret, nil); msg != "" {
		fail(status, msg)
		return
	}
	clearCookie(w, signinCookie)
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

// startSession starts a console session for p, bound to the credential rv (key akid,
// session token token, secret secret): a new id at every sign-in (no session fixation; the
// old session, if any, ends), at most SessionLifetime long and never past the credential's
// expiry, audited as a successful ConsoleLogin with extra in additionalEventData. It sets
// the session cookie; on failure it returns the status and what to tell the person.
func (h *Handler) startSession(w http.ResponseWriter, r *http.Request, now time.Time, p *principal, rv identity.Resolved, akid, token, secret string, extra map[string]any) (int, string) {
	if c := cookieValue(r, sessionCookie); c != "" && len(c) <= 128 {
		if err := h.sessions.remove(r.Context(), &session{id: sessionID(c)}); err != nil {
			h.log.Error("console sign-in refused: the old session cannot be ended", "error", err)
			return http.StatusServiceUnavailable, "The console cannot sign you in right now. Try again shortly."
		}
	}
	s := &session{
		accessKey:  akid,
		token:      token,
		secretHash: sha256.Sum256([]byte(secret)),
		principal:  p.arn,
		expires:    now.Add(h.cfg.SessionLifetime),
	}
	if exp := rv.Credential.Expires; !exp.IsZero() && exp.Before(s.expires) {
		s.expires = exp
	}
	id, err := h.sessions.add(r.Context(), s, now)
	switch {
	case err != nil:
		h.log.Error("console sign-in refused: the session cannot be stored", "error", err)
		return http.StatusServiceUnavailable, "The console cannot sign you in right now. Try again shortly."
	case id == "":
		return http.StatusServiceUnavailable, "Too many console sessions are open. Try again later."
	}
	ev := h.event(r, now, "ConsoleLogin")
	h.identityOf(ev, p)
	ev.EventType = "AwsConsoleSignIn"
	ev.ResponseElements = map[string]any{"ConsoleLogin": "Success"}
	ev.AdditionalEventData = map[string]any{"sessionExpires": s.expires.UTC().Format(time.RFC3339)}
	for k, v := range extra {
		ev.AdditionalEventData[k] = v
	}
	if err := h.cfg.Auditor.Record(r.Context(), ev); err != nil {
		if err := h.sessions.remove(r.Context(), s); err != nil {
			h.log.Error("delete an unaudited console session", "error", err) // its cookie is never sent
		}
		h.log.Error("console could not audit a sign-in; refusing it", "error", err)
		return http.StatusInternalServerError, "The sign-in could not be recorded, so it was refused."
	}
	setCookie(w, sessionCookie, id, int(s.expires.Sub(now).Seconds()))
	return 0, ""
}

// limiterKey is the access key id the limiter counts failures under: the id as typed when
// it has the shape of one, else "" (an arbitrary string is not a key to pace).
func limiterKey(akid string) string {
	if len(akid) > maxAccessKeyIDLen {
		return ""
	}
	if identity.ValidAccessKeyID(akid, identity.PrefixLongTerm) || identity.ValidAccessKeyID(akid, identity.PrefixTemporary) {
		return akid
	}
	return ""
}

// dummySecret is compared against when there is no real secret, so a wrong key id takes
// as long as a wrong secret.
var dummySecret = strings.Repeat("x", 40)

// verify resolves the credential and checks the secret. It returns the principal, or nil
// and the reason for the audit log ("unavailable" when the identity service cannot say).
func (h *Handler) verify(r *http.Request, akid, secret, token string) (*principal, identity.Resolved, string) {
	if len(akid) > maxAccessKeyIDLen || len(secret) > maxSecretLen || len(token) > identity.MaxTokenLen {
		subtle.ConstantTimeCompare([]byte(secret), []byte(dummySecret))
		return nil, identity.Resolved{}, "a field is longer than any valid credential"
	}
	rv, err := h.cfg.Identity.Resolve(r.Context(), akid, token)
	if errors.Is(err, identity.ErrStale) || errors.Is(err, identity.ErrNotLoaded) {
		return nil, rv, "unavailable"
	}
	want := dummySecret
	if err == nil {
		want = rv.Credential.SecretAccessKey
	}
	match := subtle.ConstantTimeCompare([]byte(secret), []byte(want)) == 1
	switch {
	case err != nil:
		return nil, rv, err.Error()
	case !match || secret == "":
		return nil, rv, "the secret access key does not match"
	}
	p, ok := identify(h.cfg.Spec(), rv)
	if !ok {
		return nil, rv, "the principal " + rv.Credential.Principal + " is not a user or role session of the perimeter spec"
	}
	return p, rv, ""
}

// auditLogin records a failed ConsoleLogin.
func (h *Handler) auditLogin(r *http.Request, now time.Time, akid, arn, code, reason string) {
	ev := h.event(r, now, "ConsoleLogin")
	ev.EventType = "AwsConsoleSignIn"
	ev.UserIdentity = audit.UserIdentity{AccessKeyID: akid, ARN: arn}
	ev.ErrorCode, ev.ErrorMessage = code, "Failed authentication"
	ev.ResponseElements = map[string]any{"ConsoleLogin": "Failure"}
	ev.AdditionalEventData = map[string]any{"reason": reason}
	if err := h.cfg.Auditor.Record(r.Context(), ev); err != nil {
		h.log.Error("console could not audit a failed sign-in", "error", err)
	}
}

// signout ends the session.
func (h *Handler) signout(w http.ResponseWriter, r *http.Request) {
	now := h.cfg.Now()
	s, err := h.sessions.get(r.Context(), cookieValue(r, sessionCookie), now)
	if err != nil {
		h.log.Error("read console session", "error", err)
		h.unavailable(w, r, false)
		return
	}
	if s == nil {
		h.toSignin(w, r, false, "")
		return
	}
	if err := r.ParseForm(); err != nil || !s.validCSRF(r.PostForm.Get("csrf")) || !sameOrigin(r) {
		ev := h.event(r, now, "ConsoleSignOut")
		ev.UserIdentity = audit.UserIdentity{ARN: s.principal, AccessKeyID: s.accessKey}
		ev.ErrorCode, ev.ErrorMessage = "InvalidCsrfToken", "the CSRF token is missing or wrong"
		if err := h.cfg.Auditor.Record(r.Context(), ev); err != nil {
			h.log.Error("console could not audit a refused sign-out", "error", err)
		}
		h.errorPage(w, r, nil, http.StatusForbidden, "Request refused", "The form's CSRF token is missing or wrong. Reload the page and try again.")
		return
	}
	if err := h.sessions.remove(r.Context(), s); err != nil {
		// Not signed out: the session would still be served by every replica.
		h.log.Error("console sign-out failed", "error", err)
		h.errorPage(w, r, nil, http.StatusServiceUnavailable, "Sign-out failed",
			"The console cannot reach its store, so your session could not be ended. Try again shortly.")
		return
	}
	clearCookie(w, sessionCookie)
	ev := h.event(r, now, "ConsoleSignOut")
	ev.UserIdentity = audit.UserIdentity{ARN: s.principal, AccessKeyID: s.accessKey}
	if err := h.cfg.Auditor.Record(r.Context(), ev); err != nil {
		h.log.Error("console could not audit a sign-out", "error", err)
	}
	http.Redirect(w, r, "/signin?out=1", http.StatusSeeOther)
}

// checkCSRF verifies a signed-in POST's token and origin; on failure it audits, answers
// 403 and returns false.
func (h *Handler) checkCSRF(rq *request, eventName string) bool {
	if err := rq.r.ParseForm(); err == nil && rq.s.validCSRF(rq.r.PostForm.Get("csrf")) && sameOrigin(rq.r) {
		return true
	}
	ev := h.event(rq.r, rq.now, eventName)
	h.identityOf(ev, rq.p)
	ev.ErrorCode, ev.ErrorMessage = "InvalidCsrfToken", "the CSRF token is missing or wrong"
	if err := h.cfg.Auditor.Record(rq.r.Context(), ev); err != nil {
		h.log.Error("console could not audit a refused request", "error", err)
	}
	h.errorPage(rq.w, rq.r, rq, http.StatusForbidden, "Request refused", "The form's CSRF token is missing or wrong. Reload the page and try again.")
	return false
}

// event is a console audit event's common part.
func (h *Handler) event(r *http.Request, now time.Time, name string) *audit.Event {
	spec := h.cfg.Spec()
	ev := &audit.Event{
		EventVersion:       audit.EventVersion,
		EventTime:          now.UTC(),
		EventSource:        EventSource,
		EventName:          name,
		AWSRegion:          spec.Region,
		SourceIPAddress:    sourceIP(r),
		UserAgent:          truncate(r.UserAgent(), 512),
		RequestParameters:  map[string]any{},
		RequestID:          requestid.New(),
		EventType:          "AwsApiCall",
		ManagementEvent:    true,
		RecipientAccountID: spec.Account,
		EventCategory:      "Management",
	}
	if r.TLS != nil {
		ev.TLSDetails = &audit.TLSDetails{TLSVersion: audit.TLSVersionName(r.TLS.Version), ClientProvidedHostHeader: truncate(r.Host, 256)}
	}
	return ev
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}
