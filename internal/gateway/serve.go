package gateway

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"time"

	"github.com/phantom-perimeter/phantom/internal/audit"
	"github.com/phantom-perimeter/phantom/internal/config"
	"github.com/phantom-perimeter/phantom/internal/identity"
	"github.com/phantom-perimeter/phantom/internal/policy"
	"github.com/phantom-perimeter/phantom/internal/requestid"
)

// JWKSPath is where the gateway publishes its assertion keys (unauthenticated).
const JWKSPath = "/.well-known/phantom/jwks.json"

// call is one request in flight.
type call struct {
	id   string
	now  time.Time
	r    *http.Request
	w    http.ResponseWriter
	spec *config.Spec
	st   *state
	ev   *audit.Event

	ch       channel
	api      *config.API
	m        routeMatch
	resource string
	caller   *caller // nil: anonymous (Authorization NONE)
	decision string  // the policy decision, for the audit record
	start    time.Time
}

// observe reports the request's decision to the metrics: allow, deny (a 4xx refusal) or
// error (a 5xx: an internal failure, stale state), with the audit errorCode as reason
// (AuditFailed when the record itself failed).
func (g *Gateway) observe(cl *call, e *apiError) {
	m := g.cfg.Metrics
	if m == nil {
		return
	}
	result, reason := "allow", ""
	if e != nil {
		result, reason = "deny", e.Code
		if e.Status >= http.StatusInternalServerError {
			result = "error"
		}
	}
	m.Decision(cl.apiID(), result, reason, time.Since(cl.start))
}

// apiID is the API the request addressed, "" before one was selected.
func (cl *call) apiID() string {
	if cl.api == nil {
		return ""
	}
	return cl.api.ID
}

type callKey struct{}

// ServeHTTP authorizes one request and proxies it when allowed. Every request to an API,
// allowed or refused at any step, produces exactly one audit event, recorded before the
// response is written and, for an allowed request, before the backend is called: a request
// whose event cannot be recorded is answered 500 and never reaches the backend (fail closed).
// The event records the gateway's decision; the backend's status is not part of it (the
// backend has not answered when the event is written) and backend failures are logged.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == JWKSPath && (r.Method == http.MethodGet || r.Method == http.MethodHead) {
		h := w.Header()
		h.Set("Content-Type", "application/json")
		h.Set("Cache-Control", "public, max-age=300")
		w.Write(g.signer.jwks)
		return
	}
	cl := &call{now: g.now(), r: r, w: w}
	if g.cfg.Metrics != nil {
		cl.start = time.Now() // g.now may be a test's clock; durations need the monotonic one
	}
	var eventID string
	cl.id, eventID = requestid.New(), requestid.New()
	cl.spec = g.cfg.Spec()
	cl.ev = g.newEvent(cl, eventID)

	aerr := g.authorize(cl)
	if aerr != nil {
		cl.ev.ErrorCode, cl.ev.ErrorMessage = aerr.Code, aerr.Message
		cl.ev.ResponseElements = map[string]any{"status": aerr.Status}
	}
	if cl.decision != "" {
		cl.ev.AdditionalEventData["decision"] = cl.decision
	}
	// A caller that hangs up does not cancel its own audit record.
	if err := g.cfg.Auditor.Record(context.WithoutCancel(r.Context()), cl.ev); err != nil {
		g.log.Error("gateway audit record failed; failing the request closed", "request_id", cl.id, "error", err)
		e := errInternal()
		g.observe(cl, &apiError{Status: e.Status, Code: "AuditFailed"})
		writeError(w, cl.id, e)
		return
	}
	g.observe(cl, aerr)
	if g.log.Enabled(r.Context(), slog.LevelDebug) {
		code := ""
		if aerr != nil {
			code = aerr.Code
		}
		g.log.Debug("gateway request", "request_id", cl.id, "method", cl.ev.RequestParameters["httpMethod"], "path", cl.ev.RequestParameters["path"],
			"principal", cl.ev.UserIdentity.ARN, "vpce", cl.ev.VPCEndpointID, "source_ip", cl.ev.SourceIPAddress, "decision", cl.decision, "error_code", code)
	}
	if aerr != nil {
		writeError(w, cl.id, aerr)
		return
	}
	g.forward(cl)
}

func (g *Gateway) newEvent(cl *call, eventID string) *audit.Event {
	r := cl.r
	ev := &audit.Event{
		EventVersion:        audit.EventVersion,
		EventTime:           cl.now.UTC(),
		EventSource:         "execute-api.amazonaws.com",
		EventName:           "Invoke",
		SourceIPAddress:     peerIP(r.RemoteAddr),
		UserAgent:           truncate(r.UserAgent(), 1024),
		RequestParameters:   map[string]any{"httpMethod": truncate(r.Method, 32)},
		AdditionalEventData: map[string]any{},
		RequestID:           cl.id,
		EventID:             eventID,
		ReadOnly:            r.Method == http.MethodGet || r.Method == http.MethodHead || r.Method == http.MethodOptions,
		EventType:           "AwsApiCall",
		ManagementEvent:     false,
		EventCategory:       "Data",
	}
	if cl.spec != nil {
		ev.AWSRegion, ev.RecipientAccountID = cl.spec.Region, cl.spec.Account
	}
	return ev
}

// methods are the methods API Gateway routes; any other (including a lower-case spelling,
// which an ANY route would otherwise carry past policies naming GET) matches no route.
func knownMethod(m string) bool {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete, http.MethodOptions:
		return true
	}
	return false
}

// authorize runs the pipeline up to the decision, filling the event as it learns.
func (g *Gateway) authorize(cl *call) *apiError {
	r, ev := cl.r, cl.ev
	if cl.spec == nil {
		g.log.Error("gateway has no spec")
		return errInternal()
	}
	st, err := g.stateFor(cl.spec)
	if err != nil {
		g.log.Error("gateway state", "error", err)
		return errInternal()
	}
	cl.st = st
	if g.cfg.Fresh != nil {
		if err := g.cfg.Fresh(); err != nil {
			ev.AdditionalEventData["reason"] = err.Error()
			g.log.Warn("gateway refusing: perimeter state is stale", "request_id", cl.id, "error", err)
			return errStale()
		}
	}

	// 1. The channel: an endpoint's verified certificate, or a direct connection.
	ch, cerr := g.identify(r, cl.spec)
	cl.ch = ch
	ev.SourceIPAddress = ch.sourceIP
	ev.TLSDetails = ch.tls
	if cerr != nil {
		g.log.Warn("gateway refused a client certificate", "request_id", cl.id, "remote_addr", r.RemoteAddr, "reason", cerr.reason)
		ev.AdditionalEventData["reason"] = cerr.reason
		return errClientCertificate()
	}
	if ch.endpoint != nil {
		ev.VPCEndpointID = ch.endpoint.ID
	}

	// 2. The API, stage and route.
	api, aerr := g.selectAPI(cl)
	if aerr != nil {
		return aerr
	}
	cl.api = api
	ev.RequestParameters["apiId"] = api.ID
	p, ok := parsePath(r.URL.EscapedPath())
	if !ok {
		ev.RequestParameters["path"] = truncate(r.URL.EscapedPath(), 1024)
		return errMissingToken()
	}
	ev.RequestParameters["path"] = truncate("/"+strings.Join(p.raw, "/"), 1024)
	if !knownMethod(r.Method) {
		return errMissingToken()
	}
	m, ok := match(api, r.Method, p)
	if !ok {
		return errMissingToken()
	}
	cl.m = m
	if m.route.Backend == nil || m.route.Backend.URL == nil {
		g.log.Error("gateway route has no backend", "api_id", api.ID, "route", m.route.Path)
		return errInternal()
	}
	ev.RequestParameters["stage"] = m.stage
	ev.RequestParameters["resource"] = m.route.Path
	cl.resource = resourceARN(cl.spec, api.ID, m.stage, r.Method, m.rest.dec)
	ev.AdditionalEventData["authorization"] = string(m.route.Authorization)

	if m.route.Authorization == config.AuthNone {
		r.Body = http.MaxBytesReader(cl.w, r.Body, g.cfg.MaxBodyBytes)
		return g.decideAnonymous(cl)
	}

	// 3. SigV4.
	body, err := st.verifier.ReadBody(r)
	if err != nil {
		return fromSigV4(err)
	}
	ctx, rv := identity.Capture(r.Context())
	res, err := st.verifier.Verify(ctx, r, body)
	if err != nil {
		ev.UserIdentity.AccessKeyID = accessKeyOf(r)
		ae := fromSigV4(err)
		if ae.Status == http.StatusInternalServerError {
			g.log.Error("gateway signature verification failed internally", "request_id", cl.id, "error", err)
		}
		return ae
	}
	c, aerr := identifyCaller(st, res, rv, &ev.UserIdentity)
	if aerr != nil {
		return aerr
	}
	cl.caller = &c
	if c.claims == nil && m.route.LongTermKeys == config.LongTermKeysRefuse {
		// The key is genuine (its signature verified) but this route takes STS sessions
		// only: refused before any policy, whatever the policies would allow.
		ev.AdditionalEventData["reason"] = "the route refuses long-term access keys (longTermKeys: refuse)"
		return errAccessDeniedMsg("User: " + c.arn + " is not authorized to perform: " + actionInvoke + " on resource: " + cl.resource +
			" because this API accepts only temporary credentials from STS")
	}
	if s := c.claims; s != nil && (s.Node != "" || s.VPC != "" || s.Endpoint != "") {
		// Where the session was issued, beside where it is used (sourceIPAddress,
		// vpcEndpointId): what credential-exfiltration detection compares.
		b := map[string]any{}
		if s.Node != "" {
			b["node"] = s.Node
		}
		if s.VPC != "" {
			b["vpc"] = s.VPC
		}
		if s.PrivateIP.IsValid() {
			b["privateIp"] = s.PrivateIP.String()
		}
		if s.Endpoint != "" {
			b["vpcEndpointId"] = s.Endpoint
		}
		ev.AdditionalEventData["sessionBinding"] = b
	}
	if g.cfg.Risk != nil {
		c.risk = g.cfg.Risk.RiskLevel(c.arn)
	}

	// 4 and 5. The request context and one decision over every policy that applies.
	keys := g.keyBuilders.get()
	defer g.keyBuilders.put(keys)
	g.fillKeys(keys, cl, &c)
	k := setKey{api: api.ID, session: sessionDigest(c.claims)}
	switch {
	case c.role != nil:
		k.principal = c.role.ARN
	case c.user != nil:
		k.principal = c.user.ARN
	}
	if ch.endpoint != nil {
		k.endpoint = ch.endpoint.ID
	}
	cs := st.sets.get(k, func() *compiledSet { return buildSet(cl.spec, &c, api, ch.endpoint) })
	req := policy.Request{
		Principal:        c.arn,
		PrincipalAccount: c.account,
		Action:           actionInvoke,
		Resource:         cl.resource,
		ResourceAccount:  cl.spec.Account,
		Context:          policy.ContextOf(keys.m),
	}
	d := cs.set.Evaluate(&req)
	cl.decision = d.Effect.String()
	if d.Effect == policy.Allow {
		return nil
	}
	e := errAccessDeniedMsg(denyMessage(c.arn, cl.resource, d.Effect == policy.ExplicitDeny))
	e.Encoded = g.seal(cl, d, cs, c.arn, c.principalID, g.conditionKeys(cl, &c, true))
	return e
}

// resourceARN is arn:aws:execute-api:{region}:{account}:{api}/{stage}/{METHOD}/{path}, the
// path after the stage without its leading slash ("Control access to an API with IAM
// permissions").
func resourceARN(spec *config.Spec, api, stage, method string, segs []string) string {
	n := len("arn:aws:execute-api:::///") + len(spec.Region) + len(spec.Account) + len(api) + len(stage) + len(method)
	for _, s := range segs {
		n += len(s) + 1
	}
	var b strings.Builder
	b.Grow(n)
	b.WriteString("arn:aws:execute-api:")
	b.WriteString(spec.Region)
	b.WriteByte(':')
	b.WriteString(spec.Account)
	b.WriteByte(':')
	b.WriteString(api)
	b.WriteByte('/')
	b.WriteString(stage)
	b.WriteByte('/')
	b.WriteString(method)
	b.WriteByte('/')
	for i, s := range segs {
		if i > 0 {
			b.WriteByte('/')
		}
		b.WriteString(s)
	}
	return b.String()
}

// selectAPI applies the contract's API selection. Through an endpoint the endpoint's
// X-Phantom-Api-Id (or, without it, the same selection the endpoint makes) must name an API
// the endpoint lists.
func (g *Gateway) selectAPI(cl *call) (*config.API, *apiError) {
	r, ep := cl.r, cl.ch.endpoint
	var api *config.API
	ok := false
	if ep != nil {
		if v := r.Header.Values(hdrAPIID); len(v) > 0 {
			if len(v) == 1 {
				api, ok = cl.spec.API(v[0])
			}
		} else {
			api, ok = selectAPI(cl.spec, r.Host, r.Header, ep)
		}
		if ok && !listsAPI(ep, api.ID) {
			cl.ev.RequestParameters["apiId"] = api.ID
			cl.ev.AdditionalEventData["reason"] = "endpoint " + ep.ID + " does not serve API " + api.ID
			return nil, errForbidden()
		}
	} else {
		api, ok = selectAPI(cl.spec, r.Host, r.Header, nil)
	}
	if !ok {
		return nil, errForbidden()
	}
	return api, nil
}

// decideAnonymous decides a route with Authorization NONE. There is no principal for an
// Allow to name, so the route is open unless the API's resource policy or the endpoint's
// policy explicitly denies the request (an anonymous caller matches Principal "*"): a
// resource policy that denies everything not coming through an endpoint still holds.
func (g *Gateway) decideAnonymous(cl *call) *apiError {
	keys := g.keyBuilders.get()
	defer g.keyBuilders.put(keys)
	g.fillKeys(keys, cl, nil)
	k := setKey{api: cl.api.ID}
	if cl.ch.endpoint != nil {
		k.endpoint = cl.ch.endpoint.ID
	}
	cs := cl.st.sets.get(k, func() *compiledSet { return buildSet(cl.spec, nil, cl.api, cl.ch.endpoint) })
	req := policy.Request{Action: actionInvoke, Resource: cl.resource, ResourceAccount: cl.spec.Account, Context: policy.ContextOf(keys.m)}
	d := cs.set.Evaluate(&req)
	if d.Effect != policy.ExplicitDeny {
		cl.decision = "Allow"
		return nil
	}
	cl.decision = d.Effect.String()
	e := errAccessDeniedMsg(denyMessage("", cl.resource, true))
	e.Encoded = g.seal(cl, d, cs, "", "", g.conditionKeys(cl, nil, true))
	return e
}

// seal encodes a denial's explanation; "" when no sealer is configured or sealing fails
// (the denial stands either way).
func (g *Gateway) seal(cl *call, d policy.Decision, cs *compiledSet, principal, principalID string, keys map[string][]string) string {
	if g.cfg.Messages == nil {
		return ""
	}
	enc, err := g.cfg.Messages.Seal(explain(d, cs, principal, principalID, keys, cl.resource))
	if err != nil {
		g.log.Warn("gateway could not seal the authorization message", "request_id", cl.id, "error", err)
		return ""
	}
	return enc
}

// forward proxies an allowed request to its route's backend.
func (g *Gateway) forward(cl *call) {
	r := cl.r
	a := &Assertion{
		Issuer:    AssertionIssuer,
		Audience:  cl.api.ID,
		RequestID: cl.id,
		SourceIP:  cl.ch.sourceIP,
		Method:    r.Method,
		Path:      "/" + strings.Join(cl.m.rest.raw, "/"),
		IssuedAt:  cl.now.Unix(),
		ExpiresAt: cl.now.Add(AssertionLifetime).Unix(),
	}
	if ep := cl.ch.endpoint; ep != nil {
		a.VPCEndpoint = ep.ID
	}
	if c := cl.caller; c != nil {
		a.Subject, a.Principal, a.Account, a.AccessKeyID = c.arn, c.arn, c.account, c.accessKeyID
		if c.role != nil {
			a.Role = c.role.ARN
			a.SessionName = c.claims.SessionName
		}
	}
	token, err := g.signer.sign(a)
	if err != nil {
		g.log.Error("gateway could not sign the identity assertion", "request_id", cl.id, "error", err)
		writeError(cl.w, cl.id, errInternal())
		return
	}
	f := &forwarding{call: cl, assertion: token}
	ctx := context.WithValue(r.Context(), callKey{}, f)
	if t := cl.m.route.Backend.Timeout; t > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, t)
		defer cancel()
	}
	var start time.Time
	if g.cfg.Metrics != nil {
		start = time.Now()
	}
	g.proxy.ServeHTTP(cl.w, r.WithContext(ctx))
	if g.cfg.Metrics != nil {
		g.cfg.Metrics.Backend(cl.api.ID, f.status, time.Since(start))
	}
}

type forwarding struct {
	*call
	assertion string
	status    int // the backend's status; 0 while it has not answered (or never did)
}

// rewrite builds the backend request: the backend URL's path joined with the path after the
// stage (normalized, as authorized), the query without SigV4's presigning parameters, no
// client identity, forwarding or credential headers, and the gateway's own assertion.
func (g *Gateway) rewrite(pr *httputil.ProxyRequest) {
	f := pr.In.Context().Value(callKey{}).(*forwarding)
	out := pr.Out
	target := f.m.route.Backend.URL
	base := strings.TrimSuffix(target.EscapedPath(), "/")
	escaped := base + "/" + strings.Join(f.m.rest.raw, "/")
	if len(f.m.rest.raw) == 0 && base != "" {
		escaped = base
	}
	out.URL = &url.URL{Scheme: target.Scheme, Host: target.Host, RawQuery: backendQuery(pr.In.URL.RawQuery)}
	if p, err := url.PathUnescape(escaped); err == nil {
		out.URL.Path = p
		if p != escaped {
			out.URL.RawPath = escaped
		}
	} else {
		out.URL.Path = escaped
	}
	out.Host = ""
	for name := range out.Header {
		if isClientIdentityHeader(name) {
			delete(out.Header, name)
		}
	}
	out.Header.Del("X-Amz-Security-Token")
	if f.m.route.Authorization != config.AuthNone {
		// The SigV4 signature is for the gateway; the backend gets the assertion instead.
		out.Header.Del("Authorization")
	}
	out.Header.Set(hdrIdentity, f.assertion)
	out.Header.Set(hdrRequestID, f.id)
	if _, ok := out.Header["User-Agent"]; !ok {
		out.Header["User-Agent"] = []string{""} // do not add Go's default
	}
}

// backendQuery drops SigV4's presigning parameters (X-Amz-Algorithm, -Credential, -Date,
// -Expires, -SignedHeaders, -Signature, -Security-Token) and keeps every other pair byte for
// byte: the credential stays at the gateway.
func backendQuery(raw string) string {
	drop := func(pair string) bool {
		k, _, _ := strings.Cut(pair, "=")
		if strings.ContainsAny(k, "%+") {
			dk, err := url.QueryUnescape(k)
			return err == nil && isPresignParam(dk)
		}
		return isPresignParam(k)
	}
	found := false
	for pair := range strings.SplitSeq(raw, "&") {
		if drop(pair) {
			found = true
			break
		}
	}
	if !found {
		return raw
	}
	var b strings.Builder
	first := true
	for pair := range strings.SplitSeq(raw, "&") {
		if drop(pair) {
			continue
		}
		if !first {
			b.WriteByte('&')
		}
		first = false
		b.WriteString(pair)
	}
	return b.String()
}

func isPresignParam(k string) bool {
	if len(k) < 10 || !strings.EqualFold(k[:6], "x-amz-") {
		return false
	}
	switch strings.ToLower(k) {
	case "x-amz-algorithm", "x-amz-credential", "x-amz-date", "x-amz-expires", "x-amz-signedheaders", "x-amz-signature", "x-amz-security-token":
		return true
	}
	return false
}

// backendError answers a failed backend exchange: 504 when the backend's timeout expired,
// 502 otherwise, in API Gateway's shape.
func (g *Gateway) backendError(w http.ResponseWriter, r *http.Request, err error) {
	f, _ := r.Context().Value(callKey{}).(*forwarding)
	id := ""
	if f != nil {
		id = f.id
	}
	e := errBadGateway()
	if errors.Is(err, context.DeadlineExceeded) {
		e = errGatewayTimeout()
	}
	g.log.Warn("gateway backend request failed", "request_id", id, "status", e.Status, "error", err)
	writeError(w, id, e)
}

// accessKeyOf returns the access key id a request claims, for the audit record of a failed
// authentication, or "" when it names none in a recognisable form.
func accessKeyOf(r *http.Request) string {
	cred := r.URL.Query().Get("X-Amz-Credential")
	if a := r.Header.Get("Authorization"); a != "" {
		if i := strings.Index(a, "Credential="); i >= 0 {
			cred = a[i+len("Credential="):]
		}
	}
	id, _, _ := strings.Cut(cred, "/")
	if len(id) < 16 || len(id) > 128 {
		return ""
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; !(c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return ""
		}
	}
	return id
}

func truncate(s string, n int) string {
	if len(s) > n {
		s = s[:n]
	}
	return strings.ToValidUTF8(s, "?")
}
