// Package findingsapi is the findings HTTPS API: list, get, archive and unarchive the
// detector's findings, in GuardDuty's JSON or exported as OCSF or ASFF. Every request is
// authenticated with SigV4 (service "guardduty", the perimeter's region) against the
// identity service and authorized with IAM policy evaluation of the caller's identity
// policies from the spec (inline, managed, permissions boundary, session policies) for
// the GuardDuty action (guardduty:ListFindings, GetFindings, ArchiveFindings,
// UnarchiveFindings) on the detector's ARN, arn:aws:guardduty:REGION:ACCOUNT:detector/ID.
// Nothing is allowed unless a policy allows it. Every request is audited as a CloudTrail
// event from guardduty.amazonaws.com, before its effect; a request that cannot be audited
// is refused (500).
//
//	GET  /findings?archived=false|true|all&type=T&minSeverity=N&limit=N&format=guardduty|ocsf|asff
//	GET  /findings/{id}?format=...
//	POST /findings/{id}/archive
//	POST /findings/{id}/unarchive
//
// and GuardDuty's own routes (POST /detector/{id}/findings, .../findings/get,
// .../findings/archive, .../findings/unarchive with GuardDuty's JSON bodies), so the AWS
// CLI and SDKs work unchanged: aws guardduty list-findings --detector-id ID --endpoint-url URL.
//
// Errors are GuardDuty's REST-JSON shape: status, x-amzn-ErrorType and
// {"__type": T, "message": M}. It does not own TLS (the caller serves it over HTTPS),
// the findings (internal/store) or their formats (package export).
package findingsapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/phantom-perimeter/phantom/internal/audit"
	"github.com/phantom-perimeter/phantom/internal/config"
	"github.com/phantom-perimeter/phantom/internal/detect"
	"github.com/phantom-perimeter/phantom/internal/detect/export"
	"github.com/phantom-perimeter/phantom/internal/identity"
	"github.com/phantom-perimeter/phantom/internal/policy"
	"github.com/phantom-perimeter/phantom/internal/requestid"
	"github.com/phantom-perimeter/phantom/internal/sigv4"
	"github.com/phantom-perimeter/phantom/internal/store"
)

// EventSource is the audit eventSource of API calls.
const EventSource = "guardduty.amazonaws.com"

// DefaultDetectorID is the detector id when Config.DetectorID is empty.
const DefaultDetectorID = "phantom"

// Store is what the API needs of the store (*store.SQLite).
type Store interface {
	GetFinding(ctx context.Context, id string) (store.Finding, error)
	ListFindings(ctx context.Context, f store.FindingFilter) ([]store.Finding, error)
	ArchiveFinding(ctx context.Context, id string, archived bool) error
}

// Auditor records API calls (*audit.Log).
type Auditor interface {
	Record(ctx context.Context, ev *audit.Event) error
}

// RiskSource supplies phantom:RiskLevel for the caller (*respond.Responder); optional.
type RiskSource interface {
	RiskLevel(principalARN string) string
}

// Config configures New.
type Config struct {
	// Spec returns the current perimeter spec: its users, roles and policies. The region
	// SigV4 scopes must name is the spec's region at New.
	Spec  func() *config.Spec
	Store Store
	// Credentials resolves access keys (the *identity.Service; session claims are taken
	// through identity.Capture, and a session without claims is refused).
	Credentials sigv4.CredentialSource
	Auditor     Auditor
	Risk        RiskSource
	// DetectorID names the detector in the resource ARN policies are evaluated against.
	DetectorID string
	MaxSkew    time.Duration
	Logger     *slog.Logger
	Now        func() time.Time
}

// Handler serves the API.
type Handler struct {
	cfg Config
	v   *sigv4.Verifier
	log *slog.Logger
}

// New checks cfg and builds the handler.
func New(cfg Config) (*Handler, error) {
	switch {
	case cfg.Spec == nil || cfg.Spec() == nil:
		return nil, errors.New("findings API: no spec")
	case cfg.Store == nil:
		return nil, errors.New("findings API: no store")
	case cfg.Credentials == nil:
		return nil, errors.New("findings API: no credential source")
	case cfg.Auditor == nil:
		return nil, errors.New("findings API: no auditor: every call must be audited")
	}
	if cfg.DetectorID == "" {
		cfg.DetectorID = DefaultDetectorID
	}
	if !validID(cfg.DetectorID) {
		return nil, fmt.Errorf("findings API: detector id %q is not [A-Za-z0-9._:-]{1,128}", cfg.DetectorID)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	v, err := sigv4.New(sigv4.Config{Region: cfg.Spec().Region, Service: "guardduty", MaxSkew: cfg.MaxSkew, Now: cfg.Now, MaxBodyBytes: 64 << 10},
		revocationAware{cfg.Credentials})
	if err != nil {
		return nil, fmt.Errorf("findings API: %w", err)
	}
	return &Handler{cfg: cfg, v: v, log: cfg.Logger}, nil
}

// revocationAware answers a revoked role session as AWS does: AccessDenied, not an
// invalid token.
type revocationAware struct{ sigv4.CredentialSource }

func (c revocationAware) LookupCredential(ctx context.Context, id, token string) (sigv4.Credential, error) {
	cred, err := c.CredentialSource.LookupCredential(ctx, id, token)
	if err != nil && errors.Is(err, identity.ErrSessionRevoked) {
		return cred, errors.Join(sigv4.ErrAccessDenied, err)
	}
	return cred, err
}

// apiError is an error answer.
type apiError struct {
	status  int
	typ     string // x-amzn-ErrorType and __type
	code    string // the audit errorCode
	message string
}

func errBadRequest(msg string) *apiError {
	return &apiError{http.StatusBadRequest, "BadRequestException", "BadRequestException", msg}
}

func errInternal() *apiError {
	return &apiError{http.StatusInternalServerError, "InternalServerErrorException", "InternalFailure", "The request failed because of an internal error."}
}

func errAccessDenied(msg string) *apiError {
	return &apiError{http.StatusForbidden, "AccessDeniedException", "AccessDenied", msg}
}

// call is one request in progress.
type call struct {
	r     *http.Request
	id    string
	now   time.Time
	spec  *config.Spec
	ev    *audit.Event
	route Route
}

// ServeHTTP authenticates, authorizes, audits and serves one request.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	c := &call{r: r, id: requestid.New(), now: h.cfg.Now(), spec: h.cfg.Spec()}
	c.ev = h.event(c)
	body, apiErr := h.serve(c)
	if apiErr != nil {
		c.ev.ErrorCode, c.ev.ErrorMessage = apiErr.code, apiErr.message
		c.ev.ResponseElements = map[string]any{"status": apiErr.status}
	}
	if err := h.cfg.Auditor.Record(r.Context(), c.ev); err != nil {
		h.log.Error("findings API could not audit a call; refusing it", "request_id", c.id, "error", err)
		writeError(w, c.id, errInternal())
		return
	}
	if apiErr != nil {
		writeError(w, c.id, apiErr)
		return
	}
	// The effect (an archive) happens only once the call is recorded.
	out, apiErr := body()
	if apiErr != nil {
		h.log.Error("findings API call failed after it was audited", "request_id", c.id, "operation", c.route.Op, "error", apiErr.message)
		writeError(w, c.id, apiErr)
		return
	}
	b, err := json.Marshal(out)
	if err != nil {
		writeError(w, c.id, errInternal())
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Amzn-Requestid", c.id)
	w.WriteHeader(http.StatusOK)
	w.Write(b)
}

// event is the call's audit record, filled in as the call proceeds.
func (h *Handler) event(c *call) *audit.Event {
	r := c.r
	ip := r.RemoteAddr
	if host, _, err := net.SplitHostPort(ip); err == nil {
		ip = host
	}
	ev := &audit.Event{
		EventVersion:       audit.EventVersion,
		EventTime:          c.now.UTC(),
		EventSource:        EventSource,
		EventName:          "Unknown",
		AWSRegion:          c.spec.Region,
		SourceIPAddress:    ip,
		UserAgent:          r.UserAgent(),
		RequestParameters:  map[string]any{"detectorId": h.cfg.DetectorID},
		RequestID:          c.id,
		ReadOnly:           r.Method == http.MethodGet,
		EventType:          "AwsApiCall",
		ManagementEvent:    true,
		RecipientAccountID: c.spec.Account,
		EventCategory:      "Management",
	}
	if r.TLS != nil {
		ev.TLSDetails = &audit.TLSDetails{TLSVersion: audit.TLSVersionName(r.TLS.Version), ClientProvidedHostHeader: r.Host}
	}
	return ev
}

// serve decides the call; on success it returns the function that performs it.
func (h *Handler) serve(c *call) (func() (any, *apiError), *apiError) {
	r := c.r
	// 1. Authenticate. The identity service hands the session's claims back through ctx.
	body, err := h.v.ReadBody(r)
	if err != nil {
		return nil, sigv4Error(err)
	}
	ctx, rv := identity.Capture(r.Context())
	res, err := h.v.Verify(ctx, r, body)
	if err != nil {
		return nil, sigv4Error(err)
	}
	var claims *identity.Claims
	if rv.Credential.AccessKeyID == res.AccessKeyID {
		claims = rv.Claims
	}
	p, apiErr := identify(c.spec, res, claims, c.ev)
	if apiErr != nil {
		return nil, apiErr
	}

	// 2. Route.
	route, err := ParsePath(r.Method, r.URL.EscapedPath())
	switch {
	case errors.Is(err, errMethod):
		c.ev.EventName = string(route.Op)
		return nil, &apiError{http.StatusMethodNotAllowed, "BadRequestException", "MethodNotAllowed", "The method " + r.Method + " is not allowed on this resource."}
	case err != nil:
		return nil, &apiError{http.StatusNotFound, "NotFoundException", "NotFound", "No resource at this path."}
	}
	c.route = route
	c.ev.EventName = string(route.Op)
	c.ev.ReadOnly = route.Op == OpListFindings || route.Op == OpGetFindings
	if route.ID != "" {
		c.ev.RequestParameters["findingIds"] = []string{route.ID}
	}

	// 3. Authorize.
	detector := h.cfg.DetectorID
	if route.GuardDuty {
		detector = route.Detector
		c.ev.RequestParameters["detectorId"] = detector
	}
	resource := "arn:aws:guardduty:" + c.spec.Region + ":" + c.spec.Account + ":detector/" + detector
	action := "guardduty:" + string(route.Op)
	req := policy.Request{Principal: p.arn, Action: action, Resource: resource, ResourceAccount: c.spec.Account,
		Context: policy.NewContext(h.conditionKeys(c, p))}
	d := p.set.Evaluate(&req)
	c.ev.AdditionalEventData = map[string]any{"decision": d.Effect.String()}
	if d.Effect != policy.Allow {
		msg := "User: " + p.arn + " is not authorized to perform: " + action + " on resource: " + resource
		if d.Effect == policy.ExplicitDeny {
			msg += " with an explicit deny"
		}
		return nil, errAccessDenied(msg)
	}

	// 4. Validate and check the target, so the audit record says what happened.
	if route.GuardDuty {
		if detector != h.cfg.DetectorID {
			return nil, errBadRequest("The request is rejected because the input detectorId is not owned by the current account.")
		}
		return h.guardDuty(c, body)
	}
	q, err := ParseQuery(route.Op, r.URL.RawQuery)
	if err != nil {
		return nil, errBadRequest(err.Error())
	}
	if route.Op == OpListFindings {
		f := q.Filter
		crit := map[string]any{"limit": f.Limit, "format": q.Format}
		switch {
		case f.Archived == nil:
			crit["archived"] = "all"
		default:
			crit["archived"] = *f.Archived
		}
		if f.Type != "" {
			crit["type"] = f.Type
		}
		if f.MinSeverity > 0 {
			crit["minSeverity"] = f.MinSeverity
		}
		c.ev.RequestParameters["findingCriteria"] = crit
		return func() (any, *apiError) { return h.list(r.Context(), q) }, nil
	}
	c.ev.RequestParameters["format"] = q.Format
	rec, err := h.cfg.Store.GetFinding(r.Context(), route.ID)
	if errors.Is(err, store.ErrNotFound) {
		return nil, &apiError{http.StatusNotFound, "ResourceNotFoundException", "ResourceNotFoundException", "The finding " + route.ID + " does not exist."}
	}
	if err != nil {
		h.log.Error("findings API: read finding", "request_id", c.id, "error", err)
		return nil, errInternal()
	}
	switch route.Op {
	case OpGetFindings:
		return func() (any, *apiError) {
			f, err := export.FromStore(rec)
			if err != nil {
				return nil, &apiError{http.StatusInternalServerError, "InternalServerErrorException", "InternalFailure", err.Error()}
			}
			return export.One(q.Format, f), nil
		}, nil
	default:
		archive := route.Op == OpArchiveFindings
		return func() (any, *apiError) {
			if err := h.cfg.Store.ArchiveFinding(r.Context(), route.ID, archive); err != nil {
				return nil, &apiError{http.StatusInternalServerError, "InternalServerErrorException", "InternalFailure", err.Error()}
			}
			return struct{}{}, nil
		}, nil
	}
}

// guardDuty decides a call on GuardDuty's own routes.
func (h *Handler) guardDuty(c *call, body []byte) (func() (any, *apiError), *apiError) {
	ctx := c.r.Context()
	internal := func(err error) *apiError {
		h.log.Error("findings API: store", "request_id", c.id, "error", err)
		return errInternal()
	}
	if c.route.Op == OpListFindings {
		l, err := ParseGuardDutyList(body)
		if err != nil {
			return nil, errBadRequest(err.Error())
		}
		var raw any
		if json.Unmarshal(body, &raw) == nil {
			c.ev.RequestParameters["listFindingsRequest"] = raw
		}
		return func() (any, *apiError) {
			recs, err := h.cfg.Store.ListFindings(ctx, l.Filter)
			if err != nil {
				return nil, internal(err)
			}
			var fs []detect.Finding
			for _, rec := range recs {
				f, err := export.FromStore(rec)
				if err != nil {
					return nil, internal(err)
				}
				keep := true
				for _, k := range l.keep {
					keep = keep && k(f)
				}
				if keep {
					fs = append(fs, f)
				}
			}
			sortFindings(fs, l.sort)
			out := map[string]any{"findingIds": []string{}}
			ids := []string{}
			for i := l.Offset; i < len(fs) && len(ids) < l.Max; i++ {
				ids = append(ids, fs[i].ID)
			}
			out["findingIds"] = ids
			if next := l.Offset + len(ids); next < len(fs) {
				out["nextToken"] = strconv.Itoa(next)
			}
			return out, nil
		}, nil
	}
	ids, sortBy, err := ParseFindingIDs(body)
	if err != nil {
		return nil, errBadRequest(err.Error())
	}
	c.ev.RequestParameters["findingIds"] = ids
	recs := make([]store.Finding, 0, len(ids))
	for _, id := range ids {
		rec, err := h.cfg.Store.GetFinding(ctx, id)
		switch {
		case errors.Is(err, store.ErrNotFound):
			if c.route.Op != OpGetFindings {
				return nil, errBadRequest("The request is rejected because the finding " + id + " does not exist.")
			}
			continue // GetFindings returns the findings that exist
		case err != nil:
			return nil, internal(err)
		}
		recs = append(recs, rec)
	}
	if c.route.Op == OpGetFindings {
		return func() (any, *apiError) {
			fs := make([]detect.Finding, 0, len(recs))
			for _, rec := range recs {
				f, err := export.FromStore(rec)
				if err != nil {
					return nil, internal(err)
				}
				fs = append(fs, f)
			}
			if sortBy != nil {
				sortFindings(fs, *sortBy)
			}
			return map[string]any{"findings": fs}, nil
		}, nil
	}
	archive := c.route.Op == OpArchiveFindings
	return func() (any, *apiError) {
		for _, rec := range recs {
			if err := h.cfg.Store.ArchiveFinding(ctx, rec.ID, archive); err != nil {
				return nil, internal(err)
			}
		}
		return struct{}{}, nil
	}, nil
}

func (h *Handler) list(ctx context.Context, q Query) (any, *apiError) {
	recs, err := h.cfg.Store.ListFindings(ctx, q.Filter)
	if err != nil {
		return nil, &apiError{http.StatusInternalServerError, "InternalServerErrorException", "InternalFailure", err.Error()}
	}
	fs := make([]detect.Finding, 0, len(recs))
	for _, rec := range recs {
		f, err := export.FromStore(rec)
		if err != nil {
			return nil, &apiError{http.StatusInternalServerError, "InternalServerErrorException", "InternalFailure", err.Error()}
		}
		fs = append(fs, f)
	}
	return export.List(q.Format, fs), nil
}

// principal is an authenticated caller of the spec with its policies.
type principal struct {
	arn     string // user ARN or assumed-role session ARN
	account string
	user    *config.User
	role    *config.Role
	claims  *identity.Claims
	set     *policy.Set
}

// identify resolves the verified credential to a user or role of the spec and builds its
// identity policy set; a principal the spec does not have is refused (its policies cannot
// be known).
func identify(spec *config.Spec, res *sigv4.Result, claims *identity.Claims, ev *audit.Event) (*principal, *apiError) {
	p := &principal{arn: res.Credential.Principal, claims: claims}
	if i := strings.Index(p.arn, "::"); i >= 0 {
		p.account, _, _ = strings.Cut(p.arn[i+2:], ":")
	}
	ev.UserIdentity = audit.UserIdentity{ARN: p.arn, AccountID: p.account, AccessKeyID: res.AccessKeyID}
	denied := errAccessDenied("The calling principal " + p.arn + " is not an IAM user or role session of this perimeter.")
	switch {
	case strings.Contains(p.arn, ":assumed-role/"):
		if claims == nil || claims.Role == "" {
			return nil, denied
		}
		role, ok := spec.RoleByARN(claims.Role)
		if !ok {
			return nil, denied
		}
		p.role = role
		ev.UserIdentity.Type = "AssumedRole"
		ev.UserIdentity.SessionContext = &audit.SessionContext{
			SessionIssuer: &audit.SessionIssuer{Type: "Role", ARN: role.ARN, AccountID: p.account, UserName: role.Name},
			Attributes:    map[string]string{"creationDate": claims.IssuedAt.UTC().Format(time.RFC3339), "mfaAuthenticated": strconv.FormatBool(claims.MFA)},
		}
	case strings.Contains(p.arn, ":user/"):
		if claims != nil && claims.Role != p.arn {
			return nil, denied
		}
		u, ok := spec.UserByARN(p.arn)
		if !ok {
			return nil, denied
		}
		p.user = u
		ev.UserIdentity.Type, ev.UserIdentity.UserName = "IAMUser", u.Name
	default:
		return nil, denied
	}
	p.set = buildSet(spec, p)
	return p, nil
}

// buildSet collects the caller's identity policies, permissions boundary and session
// policies, as the gateway does. A policy without its compiled form enters with no
// statements: it allows nothing, and a boundary or session policy without statements
// denies everything (fail closed).
func buildSet(spec *config.Spec, p *principal) *policy.Set {
	var entries []policy.Entry
	compiled := func(cp *config.Policy) *policy.Policy {
		if cp == nil {
			return nil
		}
		return cp.Compiled
	}
	add := func(ips []config.IdentityPolicy, boundary *config.ManagedPolicy) {
		for _, ip := range ips {
			entries = append(entries, policy.Entry{Kind: policy.Identity, Policy: compiled(ip.Policy)})
		}
		if boundary != nil {
			entries = append(entries, policy.Entry{Kind: policy.Boundary, Policy: compiled(boundary.Policy)})
		}
	}
	switch {
	case p.role != nil:
		add(p.role.IdentityPolicies(), p.role.PermissionsBoundary)
	case p.user != nil:
		add(p.user.IdentityPolicies(), p.user.PermissionsBoundary)
	}
	if s := p.claims; s != nil {
		if s.Policy != "" {
			sp, err := policy.Parse([]byte(s.Policy))
			if err != nil {
				sp = nil
			}
			entries = append(entries, policy.Entry{Kind: policy.Session, Policy: sp})
		}
		for _, arn := range s.PolicyARNs {
			var sp *policy.Policy
			if mp, ok := spec.ManagedPolicyByARN(arn); ok {
				sp = compiled(mp.Policy)
			}
			entries = append(entries, policy.Entry{Kind: policy.Session, Policy: sp})
		}
	}
	return policy.NewSet(entries...)
}

// conditionKeys are the request's global condition keys (IAM User Guide, "AWS global
// condition context keys"), as the gateway sets them, minus the network keys only an
// endpoint can vouch for.
func (h *Handler) conditionKeys(c *call, p *principal) map[string][]string {
	m := map[string][]string{
		"aws:SecureTransport":  {strconv.FormatBool(c.r.TLS != nil)},
		"aws:CurrentTime":      {c.now.UTC().Format("2006-01-02T15:04:05Z")},
		"aws:EpochTime":        {strconv.FormatInt(c.now.Unix(), 10)},
		"aws:RequestedRegion":  {c.spec.Region},
		"aws:ViaAWSService":    {"false"},
		"aws:PrincipalAccount": {p.account},
	}
	if c.ev.SourceIPAddress != "" {
		m["aws:SourceIp"] = []string{c.ev.SourceIPAddress}
	}
	if ua := c.r.UserAgent(); ua != "" {
		m["aws:UserAgent"] = []string{ua}
	}
	var tags map[string]string
	switch {
	case p.role != nil:
		m["aws:PrincipalArn"] = []string{p.role.ARN} // the role's, not the session's
		m["aws:PrincipalType"] = []string{"AssumedRole"}
		tags = p.role.Tags
	case p.user != nil:
		m["aws:PrincipalArn"] = []string{p.user.ARN}
		m["aws:PrincipalType"] = []string{"User"}
		m["aws:username"] = []string{p.user.Name}
		tags = p.user.Tags
	}
	for k, v := range tags {
		m["aws:PrincipalTag/"+k] = []string{v}
	}
	if s := p.claims; s != nil {
		for _, t := range s.Tags {
			m["aws:PrincipalTag/"+t.Key] = []string{t.Value}
		}
		m["aws:TokenIssueTime"] = []string{s.IssuedAt.UTC().Format("2006-01-02T15:04:05Z")}
		m["aws:MultiFactorAuthPresent"] = []string{strconv.FormatBool(s.MFA)}
		if age, ok := s.MFAAge(c.now); ok {
			m["aws:MultiFactorAuthAge"] = []string{age}
		}
		if s.SourceIdentity != "" {
			m["aws:SourceIdentity"] = []string{s.SourceIdentity}
		}
	}
	if h.cfg.Risk != nil {
		if lvl := h.cfg.Risk.RiskLevel(p.arn); lvl != "" {
			m["phantom:RiskLevel"] = []string{lvl}
		}
	}
	return m
}

// sigv4Error maps an authentication failure to GuardDuty's answer.
func sigv4Error(err error) *apiError {
	var e *sigv4.Error
	if !errors.As(err, &e) {
		return errInternal()
	}
	status := e.HTTPStatus
	if status == 0 {
		status = http.StatusForbidden
	}
	typ := e.GatewayType
	if typ == "" {
		typ = e.Code
	}
	// The canonical request and string to sign are for the key holder's debugging;
	// this API answers with the message only.
	msg := e.Message
	if e.GatewayMessage != "" {
		msg = e.GatewayMessage
	}
	return &apiError{status: status, typ: typ, code: e.Code, message: msg}
}

func writeError(w http.ResponseWriter, id string, e *apiError) {
	b, _ := json.Marshal(map[string]string{"__type": e.typ, "message": e.message})
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Amzn-Errortype", e.typ)
	w.Header().Set("X-Amzn-Requestid", id)
	w.WriteHeader(e.status)
	w.Write(b)
}
