package sts

import (
	"context"
	"errors"
	"mime"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/phantom-perimeter/phantom/internal/arn"
	"github.com/phantom-perimeter/phantom/internal/audit"
	"github.com/phantom-perimeter/phantom/internal/config"
	"github.com/phantom-perimeter/phantom/internal/requestid"
	"github.com/phantom-perimeter/phantom/internal/sigv4"
	"github.com/phantom-perimeter/phantom/internal/sso"
)

// apiVersion is the only STS API version.
const apiVersion = "2011-06-15"

// call is one request in flight.
type call struct {
	id     string
	now    time.Time
	r      *http.Request
	dir    Directory
	caller caller
	ev     *Event
	start  time.Time // for the metrics
	// enrolled is when the node the call authenticated (node API) was last enrolled,
	// zero without a registry.
	enrolled time.Time
}

// auditFailed is what the metrics record for a call whose audit record failed.
var auditFailed = &apiError{Code: "AuditFailed", Status: http.StatusInternalServerError}

// observe reports a call to the metrics: allow, deny (a 4xx) or error (a 5xx), with the
// audit errorCode.
func (h *Handler) observe(c *call, action string, e *apiError) {
	m := h.cfg.Metrics
	if m == nil {
		return
	}
	result, code := "allow", ""
	if e != nil {
		result, code = "deny", e.Code
		if e.Status >= http.StatusInternalServerError {
			result = "error"
		}
	}
	m.Request(MetricAction(action), result, code, time.Since(c.start))
}

// MetricAction bounds an action name for a metric label: the actions this package
// serves, "" for a call that named none, and "other" for anything a caller made up.
func MetricAction(action string) string {
	switch action {
	case "", "AssumeRole", "AssumeRoleWithWebIdentity", "GetSessionToken", "GetCallerIdentity", "DecodeAuthorizationMessage",
		"EnrollNode", "RenewNodeCertificate", "NodeCredentials", "WatchNodeSession",
		"EnrollComponent", "RenewComponentCertificate", "CertifyAuditWriter":
		return action
	}
	return "other"
}

// caller is the authenticated principal of a call.
type caller struct {
	arn         string // user ARN or assumed-role session ARN
	account     string
	accessKeyID string
	session     *Session     // nil for long-term keys
	user        *config.User // set for IAM users (long-term keys and GetSessionToken sessions)
	role        *config.Role // set for assumed-role sessions
}

// chained reports whether the caller is itself a role session (AssumeRole from it is
// "role chaining").
func (c *caller) chained() bool { return c.session != nil && c.session.Role != "" }

// ServeHTTP answers one STS query-API call.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if isNodePath(r) || isComponentPath(r) {
		h.serveNode(w, r) // the JSON APIs of the workload agent (node.go) and components (component.go)
		return
	}
	if r.URL.Path == sso.SignInConfigPath {
		h.serveSignIn(w, r) // how people sign in (signin.go)
		return
	}
	c := &call{id: h.newID(), now: h.now(), r: r}
	if h.cfg.Metrics != nil {
		c.start = time.Now()
	}
	c.ev = h.newEvent(c)
	resp, aerr := h.serve(r.Context(), c)
	if aerr != nil {
		c.ev.ErrorCode, c.ev.ErrorMessage = aerr.Code, aerr.Message
		c.ev.ResponseElements = nil
	}
	if err := h.audit.Record(r.Context(), c.ev); err != nil {
		h.log.Error("sts audit record failed; failing the call closed", "request_id", c.id, "event_name", c.ev.EventName, "error", err)
		h.observe(c, c.ev.EventName, auditFailed)
		writeError(w, c.id, internalFailure())
		return
	}
	h.observe(c, c.ev.EventName, aerr)
	if aerr != nil {
		writeError(w, c.id, aerr)
		return
	}
	writeXML(w, c.id, http.StatusOK, resp)
}

func (h *Handler) newEvent(c *call) *Event {
	ev := &Event{
		EventVersion:       "1.08",
		EventTime:          c.now.UTC(),
		EventSource:        "sts.amazonaws.com",
		AWSRegion:          h.cfg.Region,
		SourceIPAddress:    sourceIP(c.r),
		UserAgent:          c.r.UserAgent(),
		RequestID:          c.id,
		EventID:            requestid.New(),
		EventType:          "AwsApiCall",
		ManagementEvent:    true,
		RecipientAccountID: h.cfg.Account,
		EventCategory:      "Management",
	}
	if cs := c.r.TLS; cs != nil {
		ev.TLSDetails = &TLSDetails{TLSVersion: audit.TLSVersionName(cs.Version), CipherSuite: audit.CipherSuiteName(cs.CipherSuite), ClientProvidedHostHeader: c.r.Host}
	}
	return ev
}

func (h *Handler) serve(ctx context.Context, c *call) (any, *apiError) {
	r := c.r
	if r.Method != http.MethodPost && r.Method != http.MethodGet {
		return nil, &apiError{Code: "InvalidAction", Message: "The STS query API accepts GET and POST only.", Status: http.StatusMethodNotAllowed}
	}
	body, err := h.verifier.ReadBody(r)
	if err != nil {
		return nil, sigv4Error(err)
	}
	// Name the event before authenticating, so a denied call is recorded under its action.
	p := params{}
	perr := parseParams(p, r.URL.RawQuery)
	if perr == nil && len(body) > 0 {
		if ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); ct != "application/x-www-form-urlencoded" {
			perr = &paramError{"the body must be application/x-www-form-urlencoded"}
		} else {
			perr = parseParams(p, string(body))
		}
	}
	if perr == nil {
		c.ev.EventName = p["Action"]
	}
	if perr == nil && p["Action"] == "AssumeRoleWithWebIdentity" {
		return h.assumeRoleWithWebIdentity(ctx, c, p) // unsigned: the token is the credential
	}

	slot := &sessionSlot{}
	res, err := h.verifier.Verify(context.WithValue(ctx, slotKey{}, slot), r, body)
	if err != nil {
		var se *sigv4.Error
		if errors.As(err, &se) {
			c.ev.UserIdentity.AccessKeyID = sigv4.ClaimedAccessKey(r)
		}
		return nil, sigv4Error(err)
	}
	if perr != nil {
		return nil, &apiError{Code: "MalformedQueryString", Message: perr.Error(), Status: http.StatusBadRequest}
	}
	c.dir = h.cfg.Directory()
	if c.dir == nil {
		return nil, internalFailure()
	}
	if aerr := h.identify(c, res, slot.s); aerr != nil {
		return nil, aerr
	}

	action, ok := p["Action"]
	if !ok {
		return nil, &apiError{Code: "MissingAction", Message: "Missing Action", Status: http.StatusBadRequest}
	}
	if v := p["Version"]; v != apiVersion {
		if v == "" {
			return nil, &apiError{Code: "MissingParameter", Message: "The request must contain the parameter Version", Status: http.StatusBadRequest}
		}
		return nil, &apiError{Code: "InvalidAction", Message: "Could not find operation " + truncate(action, 64) + " for version " + truncate(v, 32), Status: http.StatusBadRequest}
	}
	switch action {
	case "GetCallerIdentity":
		c.ev.ReadOnly = true
		return h.getCallerIdentity(c)
	case "AssumeRole":
		return h.assumeRole(ctx, c, p)
	case "GetSessionToken":
		return h.getSessionToken(ctx, c, p)
	case "DecodeAuthorizationMessage":
		return h.decodeAuthorizationMessage(c, p)
	}
	c.ev.EventName = ""
	return nil, &apiError{Code: "InvalidAction", Message: "Could not find operation " + truncate(action, 64) + " for version " + apiVersion, Status: http.StatusBadRequest}
}

// identify fills c.caller from the verified credential and records it in the event.
func (h *Handler) identify(c *call, res *sigv4.Result, sess *Session) *apiError {
	cr := &c.caller
	cr.arn, cr.accessKeyID, cr.session = res.Credential.Principal, res.AccessKeyID, sess
	cr.account = arn.Account(cr.arn)
	ui := &c.ev.UserIdentity
	ui.AccessKeyID, ui.ARN, ui.AccountID = cr.accessKeyID, cr.arn, cr.account
	switch {
	case strings.Contains(cr.arn, ":assumed-role/"):
		if sess == nil || sess.Role == "" {
			// A session ARN without session claims: the credential source is inconsistent.
			return accessDenied("The security token included in the request is invalid.")
		}
		role, ok := c.dir.RoleByARN(sess.Role)
		if !ok {
			return accessDenied("The role of the calling session no longer exists.")
		}
		cr.role = role
		ui.Type, ui.PrincipalID = "AssumedRole", arn.RoleID(role.ARN)+":"+sess.SessionName
		ui.SessionContext = &SessionContext{
			SessionIssuer:  &SessionIssuer{Type: "Role", PrincipalID: arn.RoleID(role.ARN), ARN: role.ARN, AccountID: arn.Account(role.ARN), UserName: role.Name},
			Attributes:     map[string]string{"creationDate": isoTime(sess.IssuedAt), "mfaAuthenticated": boolString(sess.MFA)},
			SourceIdentity: sess.SourceIdentity,
		}
	case strings.Contains(cr.arn, ":user/"):
		if sess != nil && sess.Role != "" {
			return accessDenied("The security token included in the request is invalid.")
		}
		u, ok := c.dir.UserByARN(cr.arn)
		if !ok {
			return &apiError{Code: "InvalidClientTokenId", Message: "The security token included in the request is invalid.", Status: http.StatusForbidden}
		}
		cr.user = u
		ui.Type, ui.PrincipalID, ui.UserName = "IAMUser", arn.UserID(u.ARN), u.Name
		if sess != nil {
			ui.SessionContext = &SessionContext{Attributes: map[string]string{"creationDate": isoTime(sess.IssuedAt), "mfaAuthenticated": boolString(sess.MFA)}}
		}
	default:
		return accessDenied("The calling principal " + cr.arn + " is not an IAM user or role session.")
	}
	return nil
}

func (h *Handler) getCallerIdentity(c *call) (any, *apiError) {
	id := c.ev.UserIdentity.PrincipalID
	return &getCallerIdentityResponse{Xmlns: xmlns, Result: callerResult{Arn: c.caller.arn, UserID: id, Account: c.caller.account}, Metadata: responseMetadata{c.id}}, nil
}

// sigv4Error maps the verifier's typed error to the wire; anything else is ours.
func sigv4Error(err error) *apiError {
	var se *sigv4.Error
	if !errors.As(err, &se) {
		return internalFailure()
	}
	var detail string
	if se.CanonicalRequest != "" {
		// STS, like every query API, shows the key holder what it expected.
		detail = "\n\nThe Canonical String for this request should have been\n'" + se.CanonicalRequest + "'\n\nThe String-to-Sign should have been\n'" + se.StringToSign + "'\n"
	}
	status := se.HTTPStatus
	if status == 0 {
		status = http.StatusForbidden
	}
	return &apiError{Code: se.Code, Message: se.Message, Status: status, Detail: detail}
}

func sourceIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

func boolString(b bool) string {
	if b {
		return "true"
	}
	return "false"
}

func truncate(s string, n int) string {
	if len(s) > n {
		s = s[:n]
	}
	return strings.ToValidUTF8(s, "?")
}
