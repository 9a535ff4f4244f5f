// Package console is Phantom's web console: an http.Handler, served over HTTPS only,
// that shows the perimeter as a picture, the live stream of decisions from the audit
// chains, the detector's findings with their evidence (one click to archive a finding or
// revoke a role's sessions) and a policy simulator, behind sign-in with Phantom
// credentials.
//
// Sign-in takes an access key id and secret access key (and the session token of an ASIA
// key), unless the spec switches it off (console.keySignIn: refuse), or goes through the
// spec's OIDC sign-in provider (single sign-on, sso.go): the authorization code flow with
// PKCE, the ID token verified and exchanged with STS for a session of the person's role, to
// which the console session is bound like a key sign-in with that session. The identity service resolves the key (long-term keys must be Active; sessions
// must open, be unexpired and not revoked) and the secret is compared in constant time.
// Unknown keys, wrong secrets, inactive keys and refused sessions all get the same answer;
// failures are rate limited per source address (the connection's, never a forwarding
// header), per key and in all (limiter.go), and every attempt is audited as a
// ConsoleLogin event. A successful sign-in starts a server-side session: a random 256-bit
// secret in a __Host- cookie (Secure, HttpOnly, SameSite=Strict, Path=/), at most
// SessionLifetime long (and never past the credential's own expiry), ended after
// IdleTimeout without a request. Sessions and the limiter's counts are kept in the store
// (session.go), so any number of console replicas on one store serve any request, with
// no sticky sessions, and a sign-out on one is refused on all; when the store cannot be
// reached, no one signs in and no session is served (503). Every request
// resolves the credential again, so a revoked session, a disabled or deleted key, or a
// principal removed from the spec signs the console session out at once. Every POST
// carries the session's synchronizer CSRF token (sign-in: a double-submit cookie) and,
// when the browser sends one, an Origin equal to the console's own.
//
// Authorization is IAM: each action is evaluated by internal/policy over the signed-in
// principal's identity policies, permissions boundary and session policies from the spec
// (as the gateway and the findings API build them), with the global condition keys of
// the request, and nothing is allowed unless a policy allows it. The actions, named after
// the AWS console pages that do the same, are:
//
//	page or action                    IAM action                            resource
//	/ (perimeter picture)             iam:GetAccountAuthorizationDetails    *
//	                                  ec2:DescribeVpcEndpoints              *
//	                                  apigateway:GET                        arn:aws:apigateway:REGION::/restapis
//	/decisions, /decisions.json       cloudtrail:LookupEvents               *
//	/findings, /findings/{id}         guardduty:ListFindings (the list)     arn:aws:guardduty:REGION:ACCOUNT:detector/ID
//	                                  guardduty:GetFindings
//	archive / unarchive a finding     guardduty:ArchiveFindings             the detector ARN
//	                                  guardduty:UnarchiveFindings
//	revoke a role's sessions          iam:PutRolePolicy                     the role's ARN
//	/nodes (enrolled nodes)           ec2:DescribeInstances                 *
//	/simulate                         iam:SimulatePrincipalPolicy           the simulated user's or role's ARN
//
// The picture needs all three of its actions. Revoking is iam:PutRolePolicy because that
// is what AWS's "Revoke active sessions" does: it puts the AWSRevokeOlderSessions inline
// policy on the role; Phantom records the revocation in its store instead.
//
// Audit: sign-in attempts (ConsoleLogin, eventType AwsConsoleSignIn, responseElements
// {"ConsoleLogin": "Success"|"Failure"}), sign-outs (ConsoleSignOut), every denial
// (errorCode AccessDenied, InvalidCsrfToken), and every action (ArchiveFindings,
// UnarchiveFindings, RevokeSessions, SimulatePrincipalPolicy) are CloudTrail events from
// eventSource console.phantom.amazonaws.com, recorded before the action takes effect; an
// action that cannot be audited is refused. Allowed page views are not audited: the
// decisions view polls every few seconds and would drown the chain in its own reads.
//
// Pages are server-rendered (html/template escapes every value); the pictures are SVG
// drawn on the server. Nothing is loaded from another origin: the CSS and the one small
// script (the live refresh of /decisions) are inline, allowed by a per-response CSP
// nonce; no other inline script or style runs. Responses are never cached and may not be
// framed.
//
// The package does not own TLS (the caller serves it, with a certificate from the
// perimeter CA), the findings (internal/store), credentials (internal/identity) or the
// policy grammar (internal/policy). The simulator builds the policy set from the spec
// the way the gateway does (identity, boundary, the API's resource policy for an
// execute-api resource, the endpoint policy when "through endpoint" is chosen, a role's
// trust policy for sts:AssumeRole); the gateway's own builder is not exported.
package console

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"html/template"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/phantom-perimeter/phantom/internal/audit"
	"github.com/phantom-perimeter/phantom/internal/config"
	"github.com/phantom-perimeter/phantom/internal/detect/findingsapi"
	"github.com/phantom-perimeter/phantom/internal/identity"
	"github.com/phantom-perimeter/phantom/internal/store"
)

// EventSource is the audit eventSource of console events.
const EventSource = "console.phantom.amazonaws.com"

// IAM actions the console authorizes (see the package comment).
const (
	ActionGetAccountAuthorizationDetails = "iam:GetAccountAuthorizationDetails"
	ActionDescribeVpcEndpoints           = "ec2:DescribeVpcEndpoints"
	ActionAPIGatewayGET                  = "apigateway:GET"
	ActionLookupEvents                   = "cloudtrail:LookupEvents"
	ActionListFindings                   = "guardduty:ListFindings"
	ActionGetFindings                    = "guardduty:GetFindings"
	ActionArchiveFindings                = "guardduty:ArchiveFindings"
	ActionUnarchiveFindings              = "guardduty:UnarchiveFindings"
	ActionRevokeSessions                 = "iam:PutRolePolicy"
	ActionSimulatePrincipalPolicy        = "iam:SimulatePrincipalPolicy"
)

// Defaults of Config.
const (
	DefaultSessionLifetime = time.Hour
	DefaultIdleTimeout     = 15 * time.Minute
	DefaultTail            = 1000
)

// Store is what the console needs of the store (store.Store): findings, risk levels and
// nodes to show, and its sessions and sign-in limiter, shared by its replicas.
type Store interface {
	SessionStore
	ListFindings(ctx context.Context, f store.FindingFilter) ([]store.Finding, error)
	GetFinding(ctx context.Context, id string) (store.Finding, error)
	ArchiveFinding(ctx context.Context, id string, archived bool) error
	ListRiskLevels(ctx context.Context) ([]store.RiskLevel, error)
	ListNodes(ctx context.Context) ([]store.Node, error)
}

// Identity is what the console needs of the identity service (*identity.Service).
type Identity interface {
	// Resolve returns the credential behind an access key id (and session token).
	Resolve(ctx context.Context, accessKeyID, sessionToken string) (identity.Resolved, error)
	// RevokeSessions denies every session of the role issued before now.
	RevokeSessions(ctx context.Context, role string) (identity.Revocation, error)
	// NodeRevocation returns when a node was last removed, if ever.
	NodeRevocation(node string) (time.Time, bool)
}

// Auditor records console events (*audit.Log).
type Auditor interface {
	Record(ctx context.Context, ev *audit.Event) error
}

// Config configures New.
type Config struct {
	// Spec returns the current perimeter spec.
	Spec     func() *config.Spec
	Store    Store
	Identity Identity
	// AuditDir is the audit directory whose chains /decisions shows.
	AuditDir string
	// Auditor records the console's own events (its chain is usually "console").
	Auditor Auditor
	// DetectorID names the detector in the findings' resource ARN (default "phantom", the
	// findings API's).
	DetectorID string
	// SessionLifetime bounds a console session (default 1 h); IdleTimeout ends one
	// without requests (default 15 min).
	SessionLifetime time.Duration
	IdleTimeout     time.Duration
	// Tail is how many of the latest events of each chain /decisions keeps (default 1000).
	Tail   int
	Logger *slog.Logger
	Now    func() time.Time

	// Single sign-on through the spec's sign-in provider (oidcProviders[].signIn); offered
	// only when STS and IDTokens are set. STS exchanges ID tokens for role sessions,
	// IDTokens returns the verifier of the current spec's providers (nil: none),
	// ProviderHTTP reaches the provider (nil: sso.NewHTTPClient(nil)).
	STS          WebIdentitySTS
	IDTokens     func() IDTokenVerifier
	ProviderHTTP *http.Client
}

// Handler serves the console.
type Handler struct {
	cfg       Config
	log       *slog.Logger
	mux       *http.ServeMux
	pages     map[string]*template.Template
	sessions  *sessions
	limiter   *limiter
	tail      *tail
	pending   pendingTable // single sign-ons in progress
	discovery discoveries  // the sign-in provider's endpoints

	graphMu   sync.Mutex
	graphSpec *config.Spec
	graphs    *pictures
}

// New checks cfg and builds the handler.
func New(cfg Config) (*Handler, error) {
	switch {
	case cfg.Spec == nil || cfg.Spec() == nil:
		return nil, errors.New("console: no spec")
	case cfg.Store == nil:
		return nil, errors.New("console: no store")
	case cfg.Identity == nil:
		return nil, errors.New("console: no identity service")
	case cfg.Auditor == nil:
		return nil, errors.New("console: no auditor: every sign-in and action must be audited")
	case cfg.AuditDir == "":
		return nil, errors.New("console: no audit directory")
	case cfg.SessionLifetime < 0 || cfg.IdleTimeout < 0 || cfg.Tail < 0:
		return nil, errors.New("console: negative session lifetime, idle timeout or tail")
	}
	if cfg.DetectorID == "" {
		cfg.DetectorID = findingsapi.DefaultDetectorID
	}
	if cfg.SessionLifetime == 0 {
		cfg.SessionLifetime = DefaultSessionLifetime
	}
	if cfg.IdleTimeout == 0 {
		cfg.IdleTimeout = DefaultIdleTimeout
	}
	if cfg.IdleTimeout > cfg.SessionLifetime {
		cfg.IdleTimeout = cfg.SessionLifetime
	}
	if cfg.Tail == 0 {
		cfg.Tail = DefaultTail
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	pages, err := parsePages()
	if err != nil {
		return nil, fmt.Errorf("console: %w", err)
	}
	h := &Handler{
		cfg:      cfg,
		log:      cfg.Logger.With("component", "console"),
		pages:    pages,
		sessions: &sessions{st: cfg.Store, idle: cfg.IdleTimeout, log: cfg.Logger.With("component", "console")},
		limiter:  &limiter{st: cfg.Store},
		pending:  pendingTable{st: cfg.Store},
		tail:     newTail(cfg.AuditDir, cfg.Tail),
	}
	h.routes()
	return h, nil
}

func (h *Handler) routes() {
	m := http.NewServeMux()
	m.HandleFunc("GET /signin", h.signinForm)
	m.HandleFunc("POST /signin", h.signin)
	m.HandleFunc("POST /signout", h.signout)
	m.HandleFunc("GET /sso/start", h.ssoStart)
	m.HandleFunc("GET /sso/callback", h.ssoCallback)
	m.HandleFunc("POST /sso/role", h.ssoRole)
	m.HandleFunc("GET /{$}", h.overview)
	m.HandleFunc("GET /decisions", h.decisions)
	m.HandleFunc("GET /decisions.json", h.decisionsJSON)
	m.HandleFunc("GET /findings", h.findings)
	m.HandleFunc("GET /findings/{id}", h.finding)
	m.HandleFunc("POST /findings/{id}/archive", h.archive)
	m.HandleFunc("POST /findings/{id}/unarchive", h.archive)
	m.HandleFunc("POST /findings/{id}/revoke", h.revoke)
	m.HandleFunc("GET /nodes", h.nodes)
	m.HandleFunc("GET /simulate", h.simulateForm)
	m.HandleFunc("POST /simulate", h.simulate)
	m.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "not found", http.StatusNotFound)
	})
	h.mux = m
}

// maxBody bounds every request body: the largest form (the simulator's) is far smaller.
const maxBody = 64 << 10

type nonceKey struct{}

// ServeHTTP applies the console's transport and header rules, then routes.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hd := w.Header()
	hd.Set("Cache-Control", "no-store")
	hd.Set("Pragma", "no-cache")
	hd.Set("X-Frame-Options", "DENY")
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("Referrer-Policy", "no-referrer")
	hd.Set("Cross-Origin-Opener-Policy", "same-origin")
	hd.Set("Cross-Origin-Resource-Policy", "same-origin")
	hd.Set("Permissions-Policy", "camera=(), microphone=(), geolocation=(), payment=(), usb=()")
	if r.TLS == nil {
		// Credentials and session cookies never travel in clear text.
		http.Error(w, "the Phantom console is served over HTTPS only", http.StatusForbidden)
		return
	}
	hd.Set("Strict-Transport-Security", "max-age=31536000")
	nonce := newToken(16)
	hd.Set("Content-Security-Policy", "default-src 'none'; script-src 'nonce-"+nonce+"'; style-src 'nonce-"+nonce+
		"'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	r.Body = http.MaxBytesReader(w, r.Body, maxBody)
	r = r.WithContext(context.WithValue(r.Context(), nonceKey{}, nonce))
	h.mux.ServeHTTP(w, r)
}

func nonceOf(r *http.Request) string {
	n, _ := r.Context().Value(nonceKey{}).(string)
	return n
}

// newToken returns n random bytes, base64url: session ids, CSRF tokens, nonces.
func newToken(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic("console: crypto/rand failed: " + err.Error()) // never on supported platforms
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// sourceIP is the connection's address: the console trusts no forwarding header.
func sourceIP(r *http.Request) string {
	if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		return host
	}
	return r.RemoteAddr
}

// sameOrigin rejects a cross-site POST the browser labels as such (Origin, Fetch
// metadata); the CSRF token is the control, this is defence in depth. Under
// Referrer-Policy: no-referrer browsers send "Origin: null" even for the console's own
// forms, so "null" says nothing and Sec-Fetch-Site decides.
func sameOrigin(r *http.Request) bool {
	if o := r.Header.Get("Origin"); o != "" && o != "null" && !strings.EqualFold(o, "https://"+r.Host) {
		return false
	}
	switch r.Header.Get("Sec-Fetch-Site") {
	case "", "same-origin", "none":
		return true
	}
	return false
}
