package sts

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/phantom-perimeter/phantom/internal/arn"
	"github.com/phantom-perimeter/phantom/internal/config"
	"github.com/phantom-perimeter/phantom/internal/identity"
	"github.com/phantom-perimeter/phantom/internal/policy"
)

// Limits from the AWS STS API Reference (AssumeRole, GetSessionToken, Tag) and "IAM and
// AWS STS quotas".
const (
	minDuration        = 900
	defaultRoleSession = 3600
	chainedMax         = 3600 // "role chaining limits your session to a maximum of one hour"
	maxAssumeDuration  = 43200
	defaultUserSession = 43200
	maxUserSession     = 129600
	maxPolicyChars     = 2048
	maxPolicyArns      = 10
	maxTags            = 50
	maxPackedBytes     = 2048
)

var (
	// Patterns of the AssumeRole request members.
	sessionNamePattern = regexp.MustCompile(`^[\w+=,.@-]*$`)
	externalIDPattern  = regexp.MustCompile(`^[\w+=,.@:/-]*$`)
	tagKeyPattern      = regexp.MustCompile(`^[\p{L}\p{Z}\p{N}_.:/=+\-@]+$`)
	tagValuePattern    = regexp.MustCompile(`^[\p{L}\p{Z}\p{N}_.:/=+\-@]*$`)
)

// assumeRequest is a validated AssumeRole request.
type assumeRequest struct {
	roleARN, sessionName, externalID, sourceIdentity string
	duration                                         int
	policyText                                       string
	policy                                           *policy.Policy
	policyARNs                                       []string
	tags                                             []Tag
	transitive                                       []string
}

// memberError is AWS's "1 validation error detected" message for one request member.
func memberError(value, member, constraint string) *apiError {
	v := "null"
	if value != "\x00" {
		v = "'" + truncate(value, 128) + "'"
	}
	return validationError("1 validation error detected: Value " + v + " at '" + member + "' failed to satisfy constraint: " + constraint)
}

func checkLength(value string, ok bool, member string, min, max int) *apiError {
	if !ok {
		return memberError("\x00", member, "Member must not be null")
	}
	n := utf8.RuneCountInString(value)
	if n < min {
		return memberError(value, member, "Member must have length greater than or equal to "+strconv.Itoa(min))
	}
	if n > max {
		return memberError(value, member, "Member must have length less than or equal to "+strconv.Itoa(max))
	}
	return nil
}

func parseDuration(p params, min, max, def int) (int, bool, *apiError) {
	s, ok := p["DurationSeconds"]
	if !ok {
		return def, false, nil
	}
	d, err := strconv.Atoi(s)
	if err != nil || len(s) > 10 {
		return 0, true, memberError(s, "durationSeconds", "Member must be a number")
	}
	if d < min {
		return 0, true, memberError(s, "durationSeconds", "Member must have value greater than or equal to "+strconv.Itoa(min))
	}
	if d > max {
		return 0, true, memberError(s, "durationSeconds", "Member must have value less than or equal to "+strconv.Itoa(max))
	}
	return d, true, nil
}

func parseAssume(p params) (*assumeRequest, *apiError) {
	a := &assumeRequest{}
	var ok bool
	a.roleARN, ok = p["RoleArn"]
	if e := checkLength(a.roleARN, ok, "roleArn", 20, 2048); e != nil {
		return nil, e
	}
	a.sessionName, ok = p["RoleSessionName"]
	if e := checkLength(a.sessionName, ok, "roleSessionName", 2, 64); e != nil {
		return nil, e
	}
	if !sessionNamePattern.MatchString(a.sessionName) {
		return nil, memberError(a.sessionName, "roleSessionName", `Member must satisfy regular expression pattern: [\w+=,.@-]*`)
	}
	var e *apiError
	if a.duration, _, e = parseDuration(p, minDuration, maxAssumeDuration, defaultRoleSession); e != nil {
		return nil, e
	}
	if v, ok := p["ExternalId"]; ok {
		if e := checkLength(v, true, "externalId", 2, 1224); e != nil {
			return nil, e
		}
		if !externalIDPattern.MatchString(v) {
			return nil, memberError(v, "externalId", `Member must satisfy regular expression pattern: [\w+=,.@:\/-]*`)
		}
		a.externalID = v
	}
	if v, ok := p["SourceIdentity"]; ok {
		if e := checkLength(v, true, "sourceIdentity", 2, 64); e != nil {
			return nil, e
		}
		if !sessionNamePattern.MatchString(v) {
			return nil, memberError(v, "sourceIdentity", `Member must satisfy regular expression pattern: [\w+=,.@-]*`)
		}
		a.sourceIdentity = v
	}
	if v, ok := p["Policy"]; ok {
		if n := utf8.RuneCountInString(v); n < 1 || n > maxPolicyChars {
			// The value is not echoed: a policy is long and may be sensitive.
			c := "Member must have length less than or equal to 2048"
			if n < 1 {
				c = "Member must have length greater than or equal to 1"
			}
			return nil, validationError("1 validation error detected: Value at 'policy' failed to satisfy constraint: " + c)
		}
		// A session policy has an identity policy's shape: no Principal, a Resource in
		// every statement. One that is not would make every call of the session fail
		// closed; refuse it here instead, as IAM does.
		pol, err := policy.ParseKind([]byte(v), policy.Session)
		if err != nil {
			return nil, malformedPolicy(err)
		}
		a.policyText, a.policy = v, pol
	}
	arns, ok := p.members("PolicyArns", "arn")
	if !ok {
		return nil, validationError("PolicyArns must be numbered PolicyArns.member.1.arn, PolicyArns.member.2.arn, ... without gaps.")
	}
	if len(arns) > maxPolicyArns {
		return nil, memberError("["+strconv.Itoa(len(arns))+" ARNs]", "policyArns", "Member must have length less than or equal to 10")
	}
	for _, m := range arns {
		arn, ok := m["arn"]
		if e := checkLength(arn, ok, "policyArns.member.arn", 20, 2048); e != nil {
			return nil, e
		}
		a.policyARNs = append(a.policyARNs, arn)
	}
	tags, ok := p.members("Tags", "Key", "Value")
	if !ok {
		return nil, validationError("Tags must be numbered Tags.member.1.Key, Tags.member.1.Value, ... without gaps.")
	}
	if len(tags) > maxTags {
		return nil, memberError("["+strconv.Itoa(len(tags))+" tags]", "tags", "Member must have length less than or equal to 50")
	}
	seen := map[string]bool{}
	for _, m := range tags {
		k, kok := m["Key"]
		v, vok := m["Value"]
		if e := checkTag(k, kok, v, vok, seen); e != nil {
			return nil, e
		}
		a.tags = append(a.tags, Tag{k, v})
	}
	keys, ok := p.members("TransitiveTagKeys")
	if !ok {
		return nil, validationError("TransitiveTagKeys must be numbered TransitiveTagKeys.member.1, ... without gaps.")
	}
	if len(keys) > maxTags {
		return nil, memberError("["+strconv.Itoa(len(keys))+" keys]", "transitiveTagKeys", "Member must have length less than or equal to 50")
	}
	for _, m := range keys {
		k := m[""]
		if e := checkLength(k, true, "transitiveTagKeys.member", 1, 128); e != nil {
			return nil, e
		}
		if !seen[strings.ToLower(k)] {
			return nil, invalidParameter("The specified transitive tag key must be included in the requested tags.")
		}
		a.transitive = append(a.transitive, k)
	}
	if _, ok := p["ProvidedContexts.member.1.ProviderArn"]; ok {
		return nil, invalidParameter("ProvidedContexts are not supported by this STS.")
	}
	return a, nil
}

// checkTag checks one session tag as AssumeRole's Tags member ("Tag", AWS STS API
// Reference; "Tagging AWS STS sessions"): lengths, characters, the reserved aws: prefix,
// and keys unique case-insensitively (seen holds the lower-cased keys so far).
func checkTag(k string, kok bool, v string, vok bool, seen map[string]bool) *apiError {
	if e := checkLength(k, kok, "tags.member.key", 1, 128); e != nil {
		return e
	}
	if e := checkLength(v, vok, "tags.member.value", 0, 256); e != nil {
		return e
	}
	if !tagKeyPattern.MatchString(k) {
		return memberError(k, "tags.member.key", `Member must satisfy regular expression pattern: [\p{L}\p{Z}\p{N}_.:/=+\-@]+`)
	}
	if !tagValuePattern.MatchString(v) {
		return memberError(v, "tags.member.value", `Member must satisfy regular expression pattern: [\p{L}\p{Z}\p{N}_.:/=+\-@]*`)
	}
	lk := strings.ToLower(k)
	if strings.HasPrefix(lk, "aws:") {
		return invalidParameter("Tag keys cannot begin with the reserved prefix aws:.")
	}
	if seen[lk] {
		return invalidParameter("Duplicate tag keys found. Please note that Tag keys are case insensitive.")
	}
	seen[lk] = true
	return nil
}

// malformedPolicy reports a session policy the policy engine refused. The first finding
// says where; the document itself is not echoed.
func malformedPolicy(err error) *apiError {
	msg := "Syntax errors in policy."
	var pe *policy.ParseError
	if errors.As(err, &pe) && len(pe.Findings) > 0 {
		f := pe.Findings[0]
		if f.Code == "JSON_SYNTAX_ERROR" {
			msg = "The policy is not in the valid JSON format."
		} else {
			msg += " " + f.Path + ": " + f.Message
		}
	}
	return &apiError{Code: "MalformedPolicyDocument", Message: msg, Status: http.StatusBadRequest}
}

func (h *Handler) assumeRole(ctx context.Context, c *call, p params) (any, *apiError) {
	a, e := parseAssume(p)
	c.ev.RequestParameters = a.auditParams(p)
	if e != nil {
		return nil, e
	}
	m, e := parseMFA(p)
	if e != nil {
		return nil, e
	}
	cr := &c.caller

	// Session tags: transitive tags of the calling session pass down the chain and
	// cannot be overridden ("Chaining roles with session tags").
	tags, transitive := a.tags, a.transitive
	if cr.chained() {
		var inherited []Tag
		var keys []string
		for _, t := range cr.session.Tags {
			if containsFold(cr.session.TransitiveTagKeys, t.Key) {
				for _, nt := range a.tags {
					if strings.EqualFold(nt.Key, t.Key) {
						return nil, invalidParameter("One of the specified session tags conflicts with a transitive tag of the calling session: tag key " + strconv.Quote(nt.Key) + ".")
					}
				}
				inherited = append(inherited, t)
				keys = append(keys, t.Key)
			}
		}
		if len(inherited) > 0 {
			tags = append(append([]Tag(nil), a.tags...), inherited...)
			transitive = append(append([]string(nil), a.transitive...), keys...)
		}
		if len(tags) > maxTags {
			return nil, memberError("["+strconv.Itoa(len(tags))+" tags]", "tags", "Member must have length less than or equal to 50")
		}
	}
	// A source identity, once set, stays for the whole chain ("Monitor and control
	// actions taken with assumed roles").
	sourceIdentity := a.sourceIdentity
	if cr.session != nil && cr.session.SourceIdentity != "" {
		if sourceIdentity != "" && sourceIdentity != cr.session.SourceIdentity {
			return nil, invalidParameter("SourceIdentity cannot be changed: the calling session already has a source identity.")
		}
		sourceIdentity = cr.session.SourceIdentity
	}

	// Managed session policies must exist in this perimeter.
	var sessionPolicies []*policy.Policy
	if a.policy != nil {
		sessionPolicies = append(sessionPolicies, a.policy)
	}
	for _, arn := range a.policyARNs {
		mp, ok := c.dir.ManagedPolicyByARN(arn)
		if !ok || mp.Policy == nil || mp.Policy.Compiled == nil {
			return nil, invalidParameter("Policy " + truncate(arn, 2048) + " does not exist or is not attachable.")
		}
		sessionPolicies = append(sessionPolicies, mp.Policy.Compiled)
	}
	packed := -1
	if a.policy != nil || len(a.policyARNs) > 0 || len(tags) > 0 {
		packed = packedPercent(a.policyText, a.policyARNs, tags)
		if packed > 100 {
			return nil, &apiError{Code: "PackedPolicyTooLarge", Message: "Packed policy consumes " + strconv.Itoa(packed) + "% of allotted space, please use smaller policy.", Status: http.StatusBadRequest}
		}
	}

	// MFA: a code in this call authenticates the user now ("Configuring MFA-protected API
	// access": the trust policy sees aws:MultiFactorAuthPresent); without one, a session
	// that was MFA-authenticated passes it on, with its original time.
	var mf mfaState
	if m != nil {
		at, e := h.verifyMFA(ctx, c, m)
		if e != nil {
			return nil, e
		}
		mf = mfaState{present: true, at: at}
	} else {
		mf = cr.mfa()
	}

	// Authorization: the role's trust policy AND the caller's own permissions.
	role, ok := c.dir.RoleByARN(a.roleARN)
	actions := []string{"sts:AssumeRole"}
	if len(tags) > 0 {
		actions = append(actions, "sts:TagSession")
	}
	if a.sourceIdentity != "" {
		actions = append(actions, "sts:SetSourceIdentity")
	}
	var az *authorizer
	if ok {
		az = h.newAuthorizer(c, role, h.requestContext(c, a, tags, transitive, sourceIdentity, mf))
	}
	for _, action := range actions {
		if az == nil || !az.allows(action) {
			// The same message whether or not the role exists: AWS does not confirm
			// role names to callers who may not assume them.
			return nil, accessDenied("User: " + cr.arn + " is not authorized to perform: " + action + " on resource: " + truncate(a.roleARN, 2048))
		}
	}

	maxDur := int(role.MaxSessionDuration / time.Second)
	if maxDur == 0 {
		maxDur = defaultRoleSession
	}
	if cr.chained() && a.duration > chainedMax {
		return nil, validationError("The requested DurationSeconds exceeds the 1 hour session limit for roles assumed by role chaining.")
	}
	if a.duration > maxDur {
		return nil, validationError("The requested DurationSeconds exceeds the MaxSessionDuration set for this role.")
	}

	sessionARN := arn.AssumedRole(arn.Account(role.ARN), role.Name, a.sessionName)
	spec := SessionSpec{
		Principal:         sessionARN,
		Role:              role.ARN,
		SessionName:       a.sessionName,
		SourceIdentity:    sourceIdentity,
		Tags:              tags,
		TransitiveTagKeys: transitive,
		Policy:            a.policyText,
		PolicyARNs:        a.policyARNs,
		IssuedAt:          c.now,
		Expires:           c.now.Add(time.Duration(a.duration) * time.Second),
		MFA:               mf.present,
		MFAAt:             mf.at,
	}
	if cr.session != nil {
		spec.VPC = cr.session.VPC
	}
	creds, err := h.issuer.Issue(ctx, spec)
	if err != nil {
		h.log.Error("sts issue session failed", "request_id", c.id, "role_arn", role.ARN, "error", err)
		return nil, internalFailure()
	}
	res := assumeRoleResult{
		Credentials:     credXML(creds),
		AssumedRoleUser: assumedRoleUser{AssumedRoleID: arn.RoleID(role.ARN) + ":" + a.sessionName, Arn: sessionARN},
		SourceIdentity:  sourceIdentity,
	}
	if packed >= 0 {
		res.PackedPolicySize = &packed
	}
	c.ev.ResponseElements = map[string]any{
		"credentials":     map[string]any{"accessKeyId": creds.AccessKeyID, "expiration": isoTime(creds.Expiration)},
		"assumedRoleUser": map[string]any{"assumedRoleId": res.AssumedRoleUser.AssumedRoleID, "arn": sessionARN},
	}
	if packed >= 0 {
		c.ev.ResponseElements["packedPolicySize"] = packed
	}
	if sourceIdentity != "" {
		c.ev.ResponseElements["sourceIdentity"] = sourceIdentity
	}
	return &assumeRoleResponse{Xmlns: xmlns, Result: res, Metadata: responseMetadata{c.id}}, nil
}

// packedPercent is how much of the packed-policy budget a session uses: the session
// policy without insignificant whitespace, the policy ARNs and the session tags, against
// 2048 bytes. (AWS compresses into a binary format of its own; ours is the plain size, so
// a session accepted here fits AWS's budget too.)
func packedPercent(policyText string, arns []string, tags []Tag) int {
	n := 0
	if policyText != "" {
		var b bytes.Buffer
		if json.Compact(&b, []byte(policyText)) == nil {
			n += b.Len()
		} else {
			n += len(policyText)
		}
	}
	for _, a := range arns {
		n += len(a)
	}
	for _, t := range tags {
		n += len(t.Key) + len(t.Value)
	}
	return (n*100 + maxPackedBytes - 1) / maxPackedBytes
}

// authorizer decides the actions of one AssumeRole call. Both must allow each action:
//   - the role's trust policy, a resource-based policy whose principal is the caller;
//   - the caller's identity-based policies, capped by its permissions boundary and, for
//     a role session, its session policies.
//
// AWS lets a same-account trust policy that names the caller's ARN grant alone; Phantom
// requires the caller's own permission too (fail closed: one place to revoke a user's
// ability to assume roles).
type authorizer struct {
	trust, identity *policy.Set
	req             policy.Request
}

// newAuthorizer returns nil when the role cannot be assumed by anyone (no trust policy)
// or the caller has no identity-based side.
func (h *Handler) newAuthorizer(c *call, role *config.Role, ctx *policy.Context) *authorizer {
	if role.TrustPolicy == nil || role.TrustPolicy.Compiled == nil {
		return nil
	}
	id := h.identitySet(c)
	if id == nil {
		return nil
	}
	cr := &c.caller
	return &authorizer{
		trust:    policy.NewSet(policy.Entry{Kind: policy.Resource, Policy: role.TrustPolicy.Compiled}),
		identity: id,
		req:      policy.Request{Principal: cr.arn, PrincipalAccount: cr.account, Resource: role.ARN, Context: ctx},
	}
}

func (az *authorizer) allows(action string) bool {
	req := az.req
	req.Action = action
	req.ResourceAccount = arn.Account(req.Resource)
	// The trust policy must allow on its own, whoever it names: naming the account
	// delegates to the caller's identity-based policies, checked next.
	if az.trust.Admits(&req).Effect != policy.Allow {
		return false
	}
	// The identity side alone: same account or not, the caller must be allowed.
	req.ResourceAccount = ""
	return az.identity.Evaluate(&req).Effect == policy.Allow
}

// identitySet is the caller's identity-based side: its policies, boundary and session
// policies. nil means the caller has none.
func (h *Handler) identitySet(c *call) *policy.Set {
	cr := &c.caller
	var entries []policy.Entry
	addAll := func(ips []config.IdentityPolicy, boundary *config.ManagedPolicy) {
		for _, ip := range ips {
			entries = append(entries, policy.Entry{Kind: policy.Identity, Policy: ip.Policy.Compiled})
		}
		if boundary != nil {
			entries = append(entries, policy.Entry{Kind: policy.Boundary, Policy: boundary.Policy.Compiled})
		}
	}
	switch {
	case cr.user != nil:
		addAll(cr.user.IdentityPolicies(), cr.user.PermissionsBoundary)
	case cr.role != nil:
		addAll(cr.role.IdentityPolicies(), cr.role.PermissionsBoundary)
	default:
		return nil
	}
	if s := cr.session; s != nil {
		if s.Policy != "" {
			p, err := policy.Parse([]byte(s.Policy))
			if err != nil {
				// A session whose policy no longer parses may do nothing.
				p = nil
			}
			entries = append(entries, policy.Entry{Kind: policy.Session, Policy: p})
		}
		for _, arn := range s.PolicyARNs {
			var p *policy.Policy
			if mp, ok := c.dir.ManagedPolicyByARN(arn); ok && mp.Policy != nil {
				p = mp.Policy.Compiled
			}
			entries = append(entries, policy.Entry{Kind: policy.Session, Policy: p})
		}
	}
	return policy.NewSet(entries...)
}

// mfaState is whether the caller of an AssumeRole call authenticated with MFA, and when.
type mfaState struct {
	present bool
	at      time.Time // zero when not known (a session from before MFA times were kept)
}

// mfa is the caller's own MFA state: its session's, none for a long-term key.
func (c *caller) mfa() mfaState {
	if c.session == nil || !c.session.MFA {
		return mfaState{}
	}
	return mfaState{present: true, at: c.session.MFAAt}
}

// requestContext builds the condition keys of an AssumeRole call ("AWS global condition
// context keys"; "Available keys for AWS STS").
func (h *Handler) requestContext(c *call, a *assumeRequest, tags []Tag, transitive []string, sourceIdentity string, mf mfaState) *policy.Context {
	cr := &c.caller
	ctx := policy.NewContext(nil)
	principalARN := cr.arn
	ptype := "User"
	var ptags map[string]string
	switch {
	case cr.role != nil:
		// For a role session, aws:PrincipalArn is the role's ARN, not the session's.
		principalARN, ptype = cr.role.ARN, "AssumedRole"
		ptags = map[string]string{}
		for k, v := range cr.role.Tags {
			ptags[k] = v
		}
		ctx.Set("aws:userid", arn.RoleID(cr.role.ARN)+":"+cr.session.SessionName)
	case cr.user != nil:
		ptags = cr.user.Tags
		ctx.Set("aws:userid", arn.UserID(cr.user.ARN))
		ctx.Set("aws:username", cr.user.Name)
	}
	// aws:MultiFactorAuthPresent is true with MFA, false for a session without it, and
	// absent for a long-term key without it, as AWS sets it ("AWS global condition
	// context keys"); aws:MultiFactorAuthAge only with MFA.
	switch {
	case mf.present:
		ctx.Set("aws:MultiFactorAuthPresent", "true")
		if !mf.at.IsZero() {
			ctx.Set("aws:MultiFactorAuthAge", identity.MFAAge(c.now, mf.at))
		}
	case cr.session != nil:
		ctx.Set("aws:MultiFactorAuthPresent", "false")
	}
	ctx.Set("aws:PrincipalArn", principalARN)
	ctx.Set("aws:PrincipalAccount", cr.account)
	ctx.Set("aws:PrincipalType", ptype)
	for k, v := range ptags {
		ctx.Set("aws:PrincipalTag/"+k, v)
	}
	if s := cr.session; s != nil {
		for _, t := range s.Tags {
			ctx.Set("aws:PrincipalTag/"+t.Key, t.Value)
		}
		ctx.Set("aws:TokenIssueTime", isoTime(s.IssuedAt))
		if s.SourceIdentity != "" {
			ctx.Set("aws:SourceIdentity", s.SourceIdentity)
		}
		if s.VPC != "" {
			ctx.Set("aws:EC2InstanceSourceVPC", s.VPC)
		}
	}
	setRequestTags(ctx, tags, transitive)
	if a.externalID != "" {
		ctx.Set("sts:ExternalId", a.externalID)
	}
	ctx.Set("sts:RoleSessionName", a.sessionName)
	if sourceIdentity != "" {
		ctx.Set("sts:SourceIdentity", sourceIdentity)
	}
	ctx.Set("aws:SourceIp", c.ev.SourceIPAddress)
	ctx.Set("aws:CurrentTime", isoTime(c.now))
	ctx.Set("aws:EpochTime", strconv.FormatInt(c.now.Unix(), 10))
	ctx.Set("aws:SecureTransport", boolString(c.r.TLS != nil))
	ctx.Set("aws:RequestedRegion", h.cfg.Region)
	ctx.Set("aws:UserAgent", c.r.UserAgent())
	ctx.Set("aws:ViaAWSService", "false")
	return ctx
}

// setRequestTags sets the keys of the session tags a call asks for ("Tagging AWS STS
// sessions"): aws:RequestTag/KEY, aws:TagKeys and sts:TransitiveTagKeys.
func setRequestTags(ctx *policy.Context, tags []Tag, transitive []string) {
	if len(tags) > 0 {
		keys := make([]string, 0, len(tags))
		for _, t := range tags {
			ctx.Set("aws:RequestTag/"+t.Key, t.Value)
			keys = append(keys, t.Key)
		}
		ctx.Set("aws:TagKeys", keys...)
	}
	if len(transitive) > 0 {
		ctx.Set("sts:TransitiveTagKeys", transitive...)
	}
}

// auditParams is requestParameters for CloudTrail: what was asked, without the session
// policy's text (only its size) and never any secret.
func (a *assumeRequest) auditParams(p params) map[string]any {
	m := map[string]any{}
	if a == nil {
		for _, k := range []string{"RoleArn", "RoleSessionName", "DurationSeconds", "ExternalId", "SourceIdentity"} {
			if v, ok := p[k]; ok {
				m[lowerFirst(k)] = truncate(v, 2048)
			}
		}
		return m
	}
	m["roleArn"], m["roleSessionName"], m["durationSeconds"] = a.roleARN, a.sessionName, a.duration
	if a.externalID != "" {
		m["externalId"] = a.externalID
	}
	if a.sourceIdentity != "" {
		m["sourceIdentity"] = a.sourceIdentity
	}
	if a.policyText != "" {
		m["policySize"] = len(a.policyText)
	}
	if len(a.policyARNs) > 0 {
		m["policyArns"] = a.policyARNs
	}
	if len(a.tags) > 0 {
		tags := make([]map[string]string, len(a.tags))
		for i, t := range a.tags {
			tags[i] = map[string]string{"key": t.Key, "value": t.Value}
		}
		m["tags"] = tags
	}
	if len(a.transitive) > 0 {
		m["transitiveTagKeys"] = a.transitive
	}
	return m
}

func lowerFirst(s string) string { return strings.ToLower(s[:1]) + s[1:] }

func containsFold(list []string, s string) bool {
	for _, v := range list {
		if strings.EqualFold(v, s) {
			return true
		}
	}
	return false
}

func (h *Handler) getSessionToken(ctx context.Context, c *call, p params) (any, *apiError) {
	cr := &c.caller
	d, _, e := parseDuration(p, minDuration, maxUserSession, defaultUserSession)
	c.ev.RequestParameters = map[string]any{}
	if e == nil {
		c.ev.RequestParameters["durationSeconds"] = d
	}
	if e != nil {
		return nil, e
	}
	m, e := parseMFA(p)
	if e != nil {
		return nil, e
	}
	if cr.session != nil || cr.user == nil {
		// "You cannot call GetSessionToken with session credentials" (AWS STS API Reference).
		return nil, accessDenied("Cannot call GetSessionToken with session credentials")
	}
	spec := SessionSpec{
		Principal: cr.user.ARN,
		IssuedAt:  c.now,
		Expires:   c.now.Add(time.Duration(d) * time.Second),
	}
	if m != nil {
		at, e := h.verifyMFA(ctx, c, m)
		if e != nil {
			return nil, e
		}
		spec.MFA, spec.MFAAt = true, at
	}
	creds, err := h.issuer.Issue(ctx, spec)
	if err != nil {
		h.log.Error("sts issue session failed", "request_id", c.id, "user_arn", cr.user.ARN, "error", err)
		return nil, internalFailure()
	}
	c.ev.ResponseElements = map[string]any{"credentials": map[string]any{"accessKeyId": creds.AccessKeyID, "expiration": isoTime(creds.Expiration)}}
	return &getSessionTokenResponse{Xmlns: xmlns, Result: sessionResult{credXML(creds)}, Metadata: responseMetadata{c.id}}, nil
}
