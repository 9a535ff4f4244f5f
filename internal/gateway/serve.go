package gateway

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httputil"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/phantom-perimeter/phantom/internal/audit"
	"github.com/phantom-perimeter/phantom/internal/config"
	"github.com/phantom-perimeter/phantom/internal/identity"
	"github.com/phantom-perimeter/phantom/internal/policy"
	"github.com/phantom-perimeter/phantom/internal/requestid"
	"github.com/phantom-perimeter/phantom/internal/sigv4"
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
	// event is ev's storage: one allocation with the call.
	event audit.Event

	ch  channel
	api *config.API
	// handover is what an endpoint of this process handed the request over with
	// (ServeHandover), when handedOver; handoverAPI backs ch.apiIDs then.
	handover    Handover
	handedOver  bool
	handoverAPI [1]string
	m           routeMatch
	resource    string
	caller      *caller // nil: anonymous (Authorization NONE)
	decision    string  // the policy decision, for the audit record
	start       time.Time
	// payloadHash is what the verified signature covers of the body (sigv4's
	// PayloadHash); "" for an anonymous call.
	payloadHash string

	lim     *config.Limits // the spec's gateway.limits
	upgrade string         // the protocol an allowed Upgrade switches to; "" none
	body    *limitedBody   // the body as it streams to the backend; nil when read already or absent
	hashed  *hashedBody    // the same, checked against its declared hash
	held    int64          // bytes of the body budget this request holds

	// The forwarding of an allowed call (forward): the assertion, the backend request's
	// URL as the assertion names it, the backend's status (0 while it has not answered,
	// or never did), and the backing arrays of the headers the gateway sets.
	assertion string
	url       url.URL
	status    int
	hdrs      [4]string
	// cancel ends the backend exchange (the route's timeout, with
	// context.DeadlineExceeded); deadline is when the timeout passes (zero: none), and
	// timedOut says it did.
	cancel   context.CancelCauseFunc
	deadline time.Time
	timedOut atomic.Bool
	// segs backs the path's segments (parsePathIn) when there are at most 8.
	segs [16]string
	// store holds what the event and the SigV4 check point to, allocated with the call.
	store struct {
		tls      audit.TLSDetails
		captured identity.Captured
		session  sessionParts
		caller   caller
		ctx      callContext
		detached detachedContext
	}
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

// callContext is the request's context with the call as callKey's value, as
// context.WithValue would make it, and the call's backend deadline, as
// context.WithDeadline would report it, kept in the call (no allocation).
type callContext struct {
	context.Context
	cl *call
}

func (c *callContext) Value(key any) any {
	if key == (callKey{}) {
		return c.cl
	}
	return c.Context.Value(key)
}

func (c *callContext) Deadline() (time.Time, bool) {
	if d := c.cl.deadline; !d.IsZero() {
		if pd, ok := c.Context.Deadline(); !ok || d.Before(pd) {
			return d, true
		}
	}
	return c.Context.Deadline()
}

// detachedContext is a context's values without its cancellation, as
// context.WithoutCancel makes it, kept in the call (no allocation): never done, no
// deadline. (Unlike WithoutCancel's, context.Cause of it reports the parent's cause;
// nothing the gateway hands it to asks.)
type detachedContext struct{ context.Context }

func (detachedContext) Deadline() (time.Time, bool) { return time.Time{}, false }
func (detachedContext) Done() <-chan struct{}       { return nil }
func (detachedContext) Err() error                  { return nil }

// backendTimer is a route's timeout for one call at a time: a time.AfterFunc timer and its
// function made once and kept across calls (Gateway.timers), so a call arms a timer
// rather than allocating one (context.WithTimeout's timer, its function and its context
// were five allocations a call).
type backendTimer struct {
	t  *time.Timer
	cl atomic.Pointer[call] // the call it is armed for
}

// fire ends the exchange of the call the timer is armed for, as its deadline passing
// would: context.DeadlineExceeded is the exchange's error.
func (bt *backendTimer) fire() {
	if cl := bt.cl.Load(); cl != nil {
		cl.timedOut.Store(true)
		cl.cancel(context.DeadlineExceeded)
	}
}

// armTimeout cancels cl's backend exchange after d. The caller disarms the timer when the
// exchange is over.
func (g *Gateway) armTimeout(cl *call, d time.Duration) *backendTimer {
	bt, _ := g.timers.Get().(*backendTimer)
	if bt == nil {
		bt = &backendTimer{}
		bt.cl.Store(cl)
		bt.t = time.AfterFunc(d, bt.fire)
		return bt
	}
	bt.cl.Store(cl)
	bt.t.Reset(d)
	return bt
}

// disarm stops bt. Only a timer stopped before it fired is kept for another call: one
// that fired (or is firing) stays with the call it fired for.
func (g *Gateway) disarm(bt *backendTimer) {
	if bt.t.Stop() {
		bt.cl.Store(nil)
		g.timers.Put(bt)
	}
}

// ServeHTTP authorizes one request and proxies it when allowed. Every request to an API,
// allowed or refused at any step, produces exactly one audit event, recorded before the
// response is written and, for an allowed request, before the backend is called: a request
// whose event cannot be recorded is answered 500 and never reaches the backend (fail closed).
// The event records the gateway's decision; the backend's status is not part of it (the
// backend has not answered when the event is written) and backend failures are logged.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	g.serve(w, r, nil)
}

// serve is ServeHTTP, and ServeHandover with h, the handover of an endpoint of this
// process; h is copied and not kept.
func (g *Gateway) serve(w http.ResponseWriter, r *http.Request, h *Handover) {
	if r.URL.Path == JWKSPath && (r.Method == http.MethodGet || r.Method == http.MethodHead) {
		h := w.Header()
		h.Set("Content-Type", "application/json")
		h.Set("Cache-Control", "public, max-age=300")
		w.Write(g.signer.jwks)
		return
	}
	cl := &call{now: g.now(), r: r, w: w}
	if h != nil {
		cl.handover, cl.handedOver = *h, true
	}
	if g.cfg.Metrics != nil {
		cl.start = time.Now() // g.now may be a test's clock; durations need the monotonic one
	}
	var eventID string
	cl.id, eventID = requestid.Two()
	cl.spec = g.cfg.Spec()
	cl.ev = &cl.event
	g.newEvent(cl, eventID)
	maxInFlight := 0
	if cl.spec != nil {
		cl.lim = &cl.spec.Gateway.Limits
		maxInFlight = cl.lim.MaxInFlight
	}
	defer func() { g.bodies.give(cl.held) }()

	var aerr *apiError
	if g.inflight.enter(maxInFlight) {
		defer g.inflight.leave()
		aerr = g.authorize(cl)
	} else {
		aerr = errTooManyRequests()
		cl.ev.AdditionalEventData["reason"] = "gateway.limits.maxInFlight requests are in flight"
	}
	if aerr != nil {
		cl.ev.ErrorCode, cl.ev.ErrorMessage = aerr.Code, aerr.Message
		cl.ev.ResponseElements = map[string]any{"status": aerr.Status}
	}
	if cl.decision != "" {
		cl.ev.AdditionalEventData["decision"] = boxed(cl.decision)
	}
	// A caller that hangs up does not cancel its own audit record.
	cl.store.detached = detachedContext{r.Context()}
	if err := g.cfg.Auditor.Record(&cl.store.detached, cl.ev); err != nil {
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

// newEvent fills the call's event with what is known of every request.
func (g *Gateway) newEvent(cl *call, eventID string) {
	r := cl.r
	ev := cl.ev
	*ev = audit.Event{
		EventVersion:        audit.EventVersion,
		EventTime:           cl.now.UTC(),
		EventSource:         "execute-api.amazonaws.com",
		EventName:           "Invoke",
		SourceIPAddress:     peerIP(r.RemoteAddr),
		UserAgent:           truncate(headerValue(r.Header, "User-Agent"), 1024),
		RequestParameters:   map[string]any{"httpMethod": boxed(truncate(r.Method, 32))},
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
}

// constants are the values of event members that come from a short list (methods,
// decisions, authorization types), as interface values made once: storing one in an
// event's map allocates nothing.
var constants = func() map[string]any {
	m := map[string]any{}
	for _, s := range []string{
		http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete, http.MethodOptions,
		policy.Allow.String(), policy.ExplicitDeny.String(), policy.ImplicitDeny.String(),
		string(config.AuthIAM), string(config.AuthNone),
	} {
		m[s] = s
	}
	return m
}()

// boxed is s as an interface value, without an allocation when it is one of constants.
func boxed(s string) any {
	if v, ok := constants[s]; ok {
		return v
	}
	return s
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
	ch, cerr := g.identify(cl)
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

	// 2. The API, stage and route, on the one path that is authorized and forwarded.
	api, aerr := g.selectAPI(cl)
	if aerr != nil {
		return aerr
	}
	cl.api = api
	ev.RequestParameters["apiId"] = st.box(api.ID)
	escaped := requestPath(r)
	p, why := parsePathIn(escaped, cl.segs[:])
	if why != "" {
		ev.RequestParameters["path"] = truncate(escaped, 1024)
		ev.AdditionalEventData["reason"] = why
		return errBadRequest("Invalid request path")
	}
	normalized := escaped
	if !p.is(escaped) {
		normalized = joinPath("", p.raw)
	}
	ev.RequestParameters["path"] = truncate(normalized, 1024)
	if !knownMethod(r.Method) {
		return errMissingToken()
	}
	m, ok := match(api, r.Method, p)
	if p.params && (!ok || !m.route.MatrixParameters) {
		ev.AdditionalEventData["reason"] = "a path segment has ; parameters and the route does not allow matrix parameters"
		return errBadRequest("Invalid request path")
	}
	if !ok {
		return errMissingToken()
	}
	cl.m = m
	if m.route.Backend == nil || m.route.Backend.URL == nil {
		g.log.Error("gateway route has no backend", "api_id", api.ID, "route", m.route.Path)
		return errInternal()
	}
	ev.RequestParameters["stage"] = st.box(m.stage)
	ev.RequestParameters["resource"] = st.box(m.route.Path)
	cl.resource = resourceARN(cl.spec, api.ID, m.stage, r.Method, m.rest.dec)
	ev.AdditionalEventData["authorization"] = boxed(string(m.route.Authorization))
	if up, asked := upgradeOf(r.Header); asked {
		if up == "" || !slices.Contains(m.route.Upgrade, up) {
			ev.AdditionalEventData["reason"] = "the request asks for an Upgrade (" + truncate(strings.Join(r.Header.Values("Upgrade"), ", "), 64) + ") the route does not allow"
			return errBadRequest("Protocol upgrade is not allowed on this route")
		}
		cl.upgrade = up
		ev.AdditionalEventData["upgrade"] = up
	}

	if m.route.Authorization == config.AuthNone {
		if aerr := g.decideAnonymous(cl); aerr != nil {
			return aerr
		}
		return g.streamBody(cl, nil)
	}
	return g.authenticate(cl)
}

// authenticate runs SigV4 and the policy decision for an AWS_IAM route, reading the body
// only for a caller the policies allow. Everything the signature covers but the body is
// checked first (Begin); then, when the request declares its body's hash, the signature
// too, and the body is checked as it streams. Otherwise the decision is made for the
// claimed credential and only an allowed caller's body is read, then the signature
// checked over it: a denied caller never uploads anything.
func (g *Gateway) authenticate(cl *call) *apiError {
	r, ev, st := cl.r, cl.ev, cl.st
	capture := &cl.store.captured
	capture.Context = r.Context()
	ctx, rv := context.Context(capture), &capture.Resolved
	pend, err := st.verifier.Begin(ctx, r)
	if err != nil {
		return g.sigv4Refusal(cl, sigv4.ClaimedAccessKey(r), err)
	}
	keyID, cred := pend.AccessKeyID(), pend.Credential()
	declared, stream := pend.DeclaredHash()
	later := !stream && hasBody(r) // the signature needs the body
	var res *sigv4.Result
	if !later {
		if stream {
			res, err = pend.VerifyDeclared()
		} else {
			res, err = pend.Verify(nil)
		}
		if err != nil {
			return g.sigv4Refusal(cl, keyID, err)
		}
	}
	c, aerr := identifyCaller(st, keyID, cred, rv, &ev.UserIdentity, &cl.store.session)
	if aerr != nil {
		if later {
			return unverified(cl, pend, keyID, aerr)
		}
		return aerr
	}
	if !later {
		g.sessionBinding(cl, &c)
	}
	if c.claims == nil && cl.m.route.LongTermKeys == config.LongTermKeysRefuse {
		// A long-term key (AKIA) on a route that takes STS sessions only: refused
		// before any policy, whatever the policies would allow.
		const why = " because this API accepts only temporary credentials from STS"
		ev.AdditionalEventData["reason"] = "the route refuses long-term access keys (longTermKeys: refuse)"
		if later {
			// The signature is unchecked (it covers a body never read), so the answer does
			// not say whose the key is.
			return unverified(cl, pend, keyID, errAccessDeniedMsg("The caller is not authorized to perform: "+actionInvoke+" on resource: "+cl.resource+why))
		}
		return errAccessDeniedMsg("User: " + c.arn + " is not authorized to perform: " + actionInvoke + " on resource: " + cl.resource + why)
	}
	if g.cfg.Risk != nil {
		c.risk = g.cfg.Risk.RiskLevel(c.arn)
	}

	// 4 and 5. The request context and one decision over every policy that applies.
	d, cs := g.decide(cl, &c)
	if d.Effect != policy.Allow {
		cl.decision = d.Effect.String()
		if later {
			// The signature is unchecked (it covers the body, which a denied caller does
			// not get to send), so the answer does not say whose the key is.
			return unverified(cl, pend, keyID, errAccessDeniedMsg("The caller is not authorized to perform: "+actionInvoke+" on resource: "+cl.resource))
		}
		e := errAccessDeniedMsg(denyMessage(c.arn, cl.resource, d.Effect == policy.ExplicitDeny))
		e.Encoded = g.seal(cl, d, cs, c.arn, c.principalID, g.conditionKeys(cl, &c, true))
		return e
	}
	if later {
		body, held, aerr := g.readBody(cl)
		cl.held += held
		if aerr != nil {
			return unverified(cl, pend, keyID, aerr)
		}
		if res, err = pend.Verify(body); err != nil {
			return g.sigv4Refusal(cl, keyID, err)
		}
		g.sessionBinding(cl, &c)
	}
	cl.store.caller = c
	cl.caller = &cl.store.caller
	cl.payloadHash = res.PayloadHash()
	if aerr := g.checkReplay(cl, res); aerr != nil {
		return aerr
	}
	cl.decision = d.Effect.String()
	if stream {
		var want [32]byte
		hex.Decode(want[:], []byte(declared)) // 64 lower-case hex digits: checked by sigv4
		return g.streamBody(cl, &want)
	}
	return nil
}

// unverified refuses a caller whose signature was never checked: the record names only
// the claimed key (it says nothing of whose it is), and the pending check is released.
func unverified(cl *call, pend *sigv4.Pending, keyID string, e *apiError) *apiError {
	pend.Release()
	cl.ev.UserIdentity = audit.UserIdentity{AccessKeyID: keyID}
	cl.ev.AdditionalEventData["signatureVerified"] = false
	return e
}

// sigv4Refusal records and maps a failed signature check: the event names only the key
// the request claimed.
func (g *Gateway) sigv4Refusal(cl *call, keyID string, err error) *apiError {
	cl.ev.UserIdentity = audit.UserIdentity{AccessKeyID: keyID}
	ae := fromSigV4(err)
	if ae.Status == http.StatusInternalServerError {
		g.log.Error("gateway signature verification failed internally", "request_id", cl.id, "error", err)
	}
	return ae
}

// sessionBinding records where a session was issued, beside where it is used
// (sourceIPAddress, vpcEndpointId): what credential-exfiltration detection compares.
func (g *Gateway) sessionBinding(cl *call, c *caller) {
	s := c.claims
	if s == nil || (s.Node == "" && s.VPC == "" && s.Endpoint == "") {
		return
	}
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
	cl.ev.AdditionalEventData["sessionBinding"] = b
}

// decide makes the one decision over every policy that applies to an authenticated
// caller.
func (g *Gateway) decide(cl *call, c *caller) (policy.Decision, *compiledSet) {
	keys := g.keyBuilders.get()
	defer g.keyBuilders.put(keys)
	g.fillKeys(keys, cl, c)
	k := setKey{api: cl.api.ID, session: c.policies}
	switch {
	case c.role != nil:
		k.principal = c.role.ARN
	case c.user != nil:
		k.principal = c.user.ARN
	}
	if ep := cl.ch.endpoint; ep != nil {
		k.endpoint = ep.ID
	}
	cs := cl.st.sets.get(k, func() *compiledSet { return buildSet(cl.spec, c, cl.api, cl.ch.endpoint) })
	keys.ctx.ResetLower(keys.m) // every name made lower case (keyBuilder)
	keys.req = policy.Request{
		Principal:        c.arn,
		PrincipalAccount: c.account,
		Action:           actionInvoke,
		Resource:         cl.resource,
		ResourceAccount:  cl.spec.Account,
		Context:          &keys.ctx,
	}
	return cs.set.Evaluate(&keys.req), cs
}

// streamBody lets an authorized request's body stream to the backend within the limits,
// checked against want when the signature covers a declared hash.
func (g *Gateway) streamBody(cl *call, want *[32]byte) *apiError {
	r := cl.r
	if !hasBody(r) {
		return nil
	}
	if r.ContentLength > cl.lim.MaxBodyBytes {
		return errTooLarge()
	}
	cl.body = newLimitedBody(r, cl.w, cl.lim)
	if want != nil {
		cl.hashed = newHashedBody(cl.body, *want)
	}
	return nil
}

// checkReplay applies gateway.replayProtection: the signature of a guarded method is good
// for one request until it expires, across every replica sharing the store.
func (g *Gateway) checkReplay(cl *call, res *sigv4.Result) *apiError {
	rp := cl.spec.Gateway.ReplayProtection
	if !rp.Enabled || !slices.Contains(rp.Methods, cl.r.Method) {
		return nil
	}
	if g.cfg.Replay == nil {
		g.log.Error("gateway.replayProtection is enabled but the gateway has no replay guard; refusing", "request_id", cl.id)
		return errReplayUnavailable()
	}
	sum := sha256.Sum256([]byte(res.Signature))
	first, err := g.cfg.Replay.ClaimSignature(context.WithoutCancel(cl.r.Context()), hex.EncodeToString(sum[:]), res.Expires)
	if err != nil {
		g.log.Error("gateway replay guard failed; refusing", "request_id", cl.id, "error", err)
		return errReplayUnavailable()
	}
	if !first {
		cl.ev.AdditionalEventData["reason"] = "the signature was used before (gateway.replayProtection)"
		return errReplayed()
	}
	return nil
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

// selectAPI applies the contract's API selection. Through an endpoint the API the endpoint
// selected (X-Phantom-Api-Id on its mTLS hop, Handover.APIID in process; without it, the
// same selection the endpoint makes) must name an API the endpoint lists.
func (g *Gateway) selectAPI(cl *call) (*config.API, *apiError) {
	r, ep := cl.r, cl.ch.endpoint
	var api *config.API
	ok := false
	if ep != nil {
		if v := cl.ch.apiIDs; len(v) > 0 {
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
	keys.ctx.ResetLower(keys.m) // every name made lower case (keyBuilder)
	keys.req = policy.Request{Action: actionInvoke, Resource: cl.resource, ResourceAccount: cl.spec.Account, Context: &keys.ctx}
	d := cs.set.Evaluate(&keys.req)
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
	path := backendURL(cl, &cl.url)
	u := &cl.url
	payload := cl.payloadHash
	if payload == "" {
		payload = UnsignedPayload // an anonymous call: nobody signed the body
	}
	a := &Assertion{
		Issuer:      AssertionIssuer,
		Audience:    cl.api.ID,
		RequestID:   cl.id,
		ID:          cl.id, // a random UUID per request: unique
		SourceIP:    cl.ch.sourceIP,
		Method:      r.Method,
		Path:        path, // the request line's, as the backend receives it
		Query:       u.RawQuery,
		PayloadHash: payload,
		IssuedAt:    cl.now.Unix(),
		ExpiresAt:   cl.now.Add(AssertionLifetime).Unix(),
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
	signer := g.assertion(cl)
	if signer == nil {
		g.log.Error("gateway has no assertion key for the API", "request_id", cl.id, "api_id", cl.api.ID)
		writeError(cl.w, cl.id, errInternal())
		return
	}
	token, err := signAssertion(cl.st, signer, cl.caller, a)
	if err != nil {
		g.log.Error("gateway could not sign the identity assertion", "request_id", cl.id, "error", err)
		writeError(cl.w, cl.id, errInternal())
		return
	}
	cl.assertion = token
	parent := r.Context()
	if t := cl.m.route.Backend.Timeout; t > 0 && cl.upgrade == "" {
		// (An upgraded connection outlives the exchange that opened it.) The exchange's
		// context is canceled by the caller going away, as the request's, or by the
		// timer; its deadline is reported by callContext.
		parent, cl.cancel = context.WithCancelCause(parent)
		defer cl.cancel(nil)
		cl.deadline = time.Now().Add(t)
		defer g.disarm(g.armTimeout(cl, t))
	}
	cl.store.ctx = callContext{parent, cl}
	ctx := &cl.store.ctx
	var start time.Time
	if g.cfg.Metrics != nil {
		start = time.Now()
	}
	if cl.body != nil {
		// The backend may answer before the body is in: full duplex lets that answer
		// through at once (HTTP/2 always is: ErrNotSupported).
		_ = http.NewResponseController(cl.w).EnableFullDuplex()
		defer cl.body.stop()
	}
	out := r.WithContext(ctx)
	if cl.body != nil {
		// The proxy reads the body through its limits. The server's request keeps the
		// connection's own body: the server then knows when it was left unread and closes
		// the connection gracefully (the answer first), as it does for any handler.
		out.Body = cl.body
		if cl.hashed != nil {
			out.Body = cl.hashed
		}
	}
	g.proxy.ServeHTTP(cl.w, out)
	if g.cfg.Metrics != nil {
		g.cfg.Metrics.Backend(cl.api.ID, cl.status, time.Since(start))
	}
}

// signAssertion makes a's token from its caller's precomputed head: the session's (kept
// with its facts) or the access key's; from scratch for an anonymous call.
func signAssertion(st *state, s *assertionSigner, c *caller, a *Assertion) (string, error) {
	if c == nil {
		return s.sign(a)
	}
	slot := st.keyHeads.slot(c.accessKeyID)
	if c.facts != nil {
		slot = &c.facts.assertion
	}
	h, err := slot.head(s, a)
	if err != nil {
		return "", err
	}
	return s.signHead(h, a)
}

// assertion is the signer of the call's API: its HS256 key, or the gateway's Ed25519 key
// for an API with assertion: eddsa.
func (g *Gateway) assertion(cl *call) *assertionSigner {
	if cl.api.Assertion == config.AssertionEdDSA {
		return g.signer
	}
	return cl.st.macs[cl.api.ID] // nil: not reached, stateFor makes one for every other API
}

// backendURL sets u to the backend request's URL and returns the path of its request
// line: the backend URL's path joined with the path after the stage, byte for byte the
// segments that were authorized, and the query without SigV4's presigning parameters.
func backendURL(cl *call, u *url.URL) string {
	target := cl.m.route.Backend.URL
	base := strings.TrimSuffix(target.EscapedPath(), "/")
	escaped := base
	if len(cl.m.rest.raw) > 0 || base == "" {
		escaped = joinPath(base, cl.m.rest.raw)
	}
	*u = url.URL{Scheme: target.Scheme, Host: target.Host, RawQuery: backendQuery(cl.r.URL.RawQuery)}
	if strings.HasPrefix(escaped, "//") {
		// Not expressible as an opaque request-target; RawPath keeps every valid escaping.
		u.Path, _ = url.PathUnescape(escaped)
		u.RawPath = escaped
	} else {
		// Written out verbatim: the backend gets the bytes that were authorized.
		u.Opaque = escaped
	}
	return escaped
}

// joinPath is prefix, then each segment after a slash, in one allocation.
func joinPath(prefix string, segs []string) string {
	n := len(prefix) + 1
	for _, s := range segs {
		n += len(s) + 1
	}
	var b strings.Builder
	b.Grow(n)
	b.WriteString(prefix)
	b.WriteByte('/')
	for i, s := range segs {
		if i > 0 {
			b.WriteByte('/')
		}
		b.WriteString(s)
	}
	return b.String()
}

// rewrite builds the backend request: backendURL, no client identity, forwarding,
// override or credential headers, the caller's address as the gateway knows it, and the
// gateway's own assertion.
func (g *Gateway) rewrite(pr *httputil.ProxyRequest) {
	f := pr.In.Context().Value(callKey{}).(*call)
	out := pr.Out
	out.URL = &f.url // the transport reads it only
	out.Host = ""
	for name := range out.Header {
		if strippedHeader(name) {
			delete(out.Header, name)
		}
	}
	delete(out.Header, "X-Amz-Security-Token") // as Del, without canonicalizing a constant
	xff := []string(nil)
	if f.m.route.Authorization != config.AuthNone {
		// The SigV4 signature is for the gateway; the backend gets the assertion instead.
		// (Its slot, a copy the proxy made, carries the caller's address: no allocation.)
		if v := out.Header["Authorization"]; len(v) > 0 {
			xff = v[:1]
		}
		delete(out.Header, "Authorization")
	}
	if f.ch.sourceIP != "" {
		if xff == nil {
			xff = make([]string, 1)
		}
		xff[0] = f.ch.sourceIP
		out.Header["X-Forwarded-For"] = xff
	}
	// One-value headers backed by the call's array (canonical names: set as Set would).
	f.hdrs[0], f.hdrs[1] = f.assertion, f.id
	out.Header[hdrIdentity] = f.hdrs[0:1:1]
	out.Header[hdrRequestID] = f.hdrs[1:2:2]
	if _, ok := out.Header["User-Agent"]; !ok {
		out.Header["User-Agent"] = f.hdrs[2:3:3] // "": do not add Go's default
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
// 502 otherwise, in API Gateway's shape. When the request's own body failed on its way
// (too large, too slow, not matching its signed hash) the upstream request was aborted:
// that is answered as the body's error and recorded as a second event of the call.
func (g *Gateway) backendError(w http.ResponseWriter, r *http.Request, err error) {
	f, _ := r.Context().Value(callKey{}).(*call)
	id := ""
	if f != nil {
		id = f.id
		f.closeIfBodyPending(w.Header())
	}
	if cause := f.bodyErr(); cause != nil {
		e := bodyError(cause)
		g.recordAbort(f, e, cause)
		writeError(w, id, e)
		return
	}
	e := errBadGateway()
	if errors.Is(err, context.DeadlineExceeded) || f != nil && f.timedOut.Load() {
		e = errGatewayTimeout()
	}
	g.log.Warn("gateway backend request failed", "request_id", id, "status", e.Status, "error", err)
	writeError(w, id, e)
}

// recordAbort records that an allowed call was cut off while its body streamed: the same
// request id and caller as its first event, with the body's error.
func (g *Gateway) recordAbort(cl *call, e *apiError, cause error) {
	ev := *cl.ev
	ev.EventID = requestid.New()
	ev.EventTime = g.now().UTC()
	ev.ErrorCode, ev.ErrorMessage = e.Code, e.Message
	ev.ResponseElements = map[string]any{"status": e.Status}
	ev.AdditionalEventData = map[string]any{}
	for k, v := range cl.ev.AdditionalEventData {
		ev.AdditionalEventData[k] = v
	}
	ev.AdditionalEventData["aborted"] = "the upstream request was aborted while the body streamed"
	ev.AdditionalEventData["reason"] = cause.Error()
	if err := g.cfg.Auditor.Record(context.WithoutCancel(cl.r.Context()), &ev); err != nil {
		g.log.Error("gateway audit record of an aborted call failed", "request_id", cl.id, "error", err)
	}
	g.log.Warn("gateway aborted a call while its body streamed", "request_id", cl.id, "error_code", e.Code, "reason", cause)
}

// closeIfBodyPending has an HTTP/1.x connection closed after the answer whose header is h
// when the request's streamed body is not all in. The exchange runs full duplex, so the
// server neither reads the rest of the body nor closes on its own: the bytes the caller
// sent after the cut would be read as the connection's next request — on an endpoint's
// connection, one whose X-Phantom-* headers the gateway believes. (HTTP/2 frames each
// stream's body: nothing to close.)
func (f *call) closeIfBodyPending(h http.Header) {
	if f.body != nil && !f.body.done.Load() && f.r.ProtoMajor == 1 {
		h.Set("Connection", "close")
	}
}

// bodyErr is the error the request's streamed body failed with, if it did.
func (f *call) bodyErr() error {
	switch {
	case f == nil:
		return nil
	case f.body != nil && f.body.failed() != nil:
		return f.body.failed()
	case f.hashed != nil:
		return f.hashed.failed()
	}
	return nil
}

func truncate(s string, n int) string {
	if len(s) > n {
		s = s[:n]
	}
	return strings.ToValidUTF8(s, "?")
}
