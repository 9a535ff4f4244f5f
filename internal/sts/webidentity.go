package sts

import (
	"context"
	"encoding/xml"
	"errors"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/phantom-perimeter/phantom/internal/arn"
	"github.com/phantom-perimeter/phantom/internal/oidc"
	"github.com/phantom-perimeter/phantom/internal/policy"
)

// WebIdentityVerifier verifies the WebIdentityToken of AssumeRoleWithWebIdentity.
// *oidc.Verifier satisfies it. Every failure is an *oidc.Error carrying AWS's code.
type WebIdentityVerifier interface {
	Verify(ctx context.Context, token string) (*oidc.Identity, error)
}

var _ WebIdentityVerifier = (*oidc.Verifier)(nil)

// webIdentityParams are the AssumeRoleWithWebIdentity members that parseAssume checks
// the same way as AssumeRole's ("AssumeRoleWithWebIdentity" request parameters). Other
// AssumeRole members (ExternalId, SourceIdentity, Tags) are not members of this action
// and are not read.
var webIdentityParams = []string{"RoleArn", "RoleSessionName", "DurationSeconds", "Policy"}

type assumeRoleWithWebIdentityResponse struct {
	XMLName  xml.Name                        `xml:"AssumeRoleWithWebIdentityResponse"`
	Xmlns    string                          `xml:"xmlns,attr"`
	Result   assumeRoleWithWebIdentityResult `xml:"AssumeRoleWithWebIdentityResult"`
	Metadata responseMetadata                `xml:"ResponseMetadata"`
}

// assumeRoleWithWebIdentityResult is in the element order of the AWS STS API Reference's
// example response.
type assumeRoleWithWebIdentityResult struct {
	Credentials                 credentialsXML  `xml:"Credentials"`
	SubjectFromWebIdentityToken string          `xml:"SubjectFromWebIdentityToken"`
	AssumedRoleUser             assumedRoleUser `xml:"AssumedRoleUser"`
	PackedPolicySize            *int            `xml:"PackedPolicySize,omitempty"`
	Provider                    string          `xml:"Provider"`
	Audience                    string          `xml:"Audience"`
	SourceIdentity              string          `xml:"SourceIdentity,omitempty"`
}

// assumeRoleWithWebIdentity serves the unsigned AssumeRoleWithWebIdentity call: the web
// identity token is the credential. Order as AWS: request validation, token
// verification, the role's trust policy, then the role's duration limit.
func (h *Handler) assumeRoleWithWebIdentity(ctx context.Context, c *call, p params) (any, *apiError) {
	c.ev.EventName = "AssumeRoleWithWebIdentity"
	if v := p["Version"]; v != apiVersion {
		if v == "" {
			return nil, &apiError{Code: "MissingParameter", Message: "The request must contain the parameter Version", Status: http.StatusBadRequest}
		}
		return nil, &apiError{Code: "InvalidAction", Message: "Could not find operation AssumeRoleWithWebIdentity for version " + truncate(v, 32), Status: http.StatusBadRequest}
	}
	sub := params{}
	for k, v := range p {
		if slices.Contains(webIdentityParams, k) || strings.HasPrefix(k, "PolicyArns.") {
			sub[k] = v
		}
	}
	a, e := parseAssume(sub)
	c.ev.RequestParameters = a.auditParams(sub)
	if e != nil {
		return nil, e
	}
	if _, ok := p["ProviderId"]; ok {
		// ProviderId names OAuth 2.0 providers (www.amazon.com, graph.facebook.com);
		// Phantom federates OIDC providers only.
		return nil, invalidParameter("ProviderId is not supported by this STS: configure an OIDC provider instead.")
	}
	token, ok := p["WebIdentityToken"]
	if e := checkLength(token, ok, "webIdentityToken", 4, 20000); e != nil {
		// The token is never echoed, not even in a validation message.
		if ok {
			return nil, validationError("1 validation error detected: Value at 'webIdentityToken' failed to satisfy constraint: Member must have length between 4 and 20000")
		}
		return nil, e
	}

	var v WebIdentityVerifier
	if h.cfg.WebIdentity != nil {
		v = h.cfg.WebIdentity()
	}
	if v == nil {
		// No providers configured: no token can be trusted (fail closed).
		return nil, &apiError{Code: oidc.CodeInvalidIdentityToken, Message: "No OpenIDConnect provider found in your account", Status: http.StatusBadRequest}
	}
	id, err := v.Verify(ctx, token)
	if err != nil {
		var oe *oidc.Error
		if !errors.As(err, &oe) {
			h.log.Error("sts web identity verification failed", "request_id", c.id, "error", err)
			return nil, internalFailure()
		}
		if oe.Err != nil {
			h.log.Info("sts web identity token rejected", "request_id", c.id, "code", oe.Code, "cause", oe.Err)
		}
		return nil, &apiError{Code: oe.Code, Message: oe.Message, Status: http.StatusBadRequest}
	}
	ui := &c.ev.UserIdentity
	ui.Type, ui.PrincipalID, ui.UserName, ui.IdentityProvider = "WebIdentityUser", id.Provider+":"+id.Audience+":"+id.Subject, id.Subject, id.Provider
	tags, transitive, e := tokenTags(id.Claims)
	if e != nil {
		return nil, e
	}

	c.dir = h.cfg.Directory()
	if c.dir == nil {
		return nil, internalFailure()
	}
	// Managed session policies must exist in this perimeter.
	for _, arn := range a.policyARNs {
		if mp, ok := c.dir.ManagedPolicyByARN(arn); !ok || mp.Policy == nil || mp.Policy.Compiled == nil {
			return nil, invalidParameter("Policy " + truncate(arn, 2048) + " does not exist or is not attachable.")
		}
	}
	packed := -1
	if a.policy != nil || len(a.policyARNs) > 0 || len(tags) > 0 {
		packed = packedPercent(a.policyText, a.policyARNs, tags)
		if packed > 100 {
			return nil, &apiError{Code: "PackedPolicyTooLarge", Message: "Packed policy consumes " + strconv.Itoa(packed) + "% of allotted space, please use smaller policy.", Status: http.StatusBadRequest}
		}
	}

	// Authorization is the role's trust policy alone: the federated principal has no
	// identity-based policies of its own ("Creating a role for OIDC federation").
	// With session tags the trust policy must also allow sts:TagSession ("Passing session
	// tags using AssumeRoleWithWebIdentity").
	const action = "sts:AssumeRoleWithWebIdentity"
	actions := []string{action}
	if len(tags) > 0 {
		actions = append(actions, "sts:TagSession")
	}
	role, ok := c.dir.RoleByARN(a.roleARN)
	for _, act := range actions {
		if !ok || role.TrustPolicy == nil || role.TrustPolicy.Compiled == nil || !h.trustsWebIdentity(c, role.ARN, role.TrustPolicy.Compiled, a, id, act, tags, transitive) {
			// The same message whether or not the role exists.
			return nil, accessDenied("Not authorized to perform " + act)
		}
	}
	maxDur := int(role.MaxSessionDuration / time.Second)
	if maxDur == 0 {
		maxDur = defaultRoleSession
	}
	if a.duration > maxDur {
		return nil, validationError("The requested DurationSeconds exceeds the MaxSessionDuration set for this role.")
	}

	sessionARN := arn.AssumedRole(arn.Account(role.ARN), role.Name, a.sessionName)
	creds, err := h.issuer.Issue(ctx, SessionSpec{
		Principal:         sessionARN,
		Role:              role.ARN,
		SessionName:       a.sessionName,
		Tags:              tags,
		TransitiveTagKeys: transitive,
		Policy:            a.policyText,
		PolicyARNs:        a.policyARNs,
		IssuedAt:          c.now,
		Expires:           c.now.Add(time.Duration(a.duration) * time.Second),
	})
	if err != nil {
		h.log.Error("sts issue session failed", "request_id", c.id, "role_arn", role.ARN, "error", err)
		return nil, internalFailure()
	}
	res := assumeRoleWithWebIdentityResult{
		Credentials:                 credXML(creds),
		SubjectFromWebIdentityToken: id.Subject,
		AssumedRoleUser:             assumedRoleUser{AssumedRoleID: arn.RoleID(role.ARN) + ":" + a.sessionName, Arn: sessionARN},
		// The API reference says "the value of the iss field"; for IAM OIDC providers AWS
		// answers with the provider's ARN (as EKS and GitHub Actions users see it).
		Provider: id.ProviderARN,
		Audience: id.Audience,
	}
	if packed >= 0 {
		res.PackedPolicySize = &packed
	}
	c.ev.ResponseElements = map[string]any{
		"credentials":                 map[string]any{"accessKeyId": creds.AccessKeyID, "expiration": isoTime(creds.Expiration)},
		"subjectFromWebIdentityToken": id.Subject,
		"assumedRoleUser":             map[string]any{"assumedRoleId": res.AssumedRoleUser.AssumedRoleID, "arn": sessionARN},
		"provider":                    id.ProviderARN,
		"audience":                    id.Audience,
	}
	if packed >= 0 {
		c.ev.ResponseElements["packedPolicySize"] = packed
	}
	if len(tags) > 0 {
		c.ev.RequestParameters["principalTags"] = tagMap(tags)
		if len(transitive) > 0 {
			c.ev.RequestParameters["transitiveTagKeys"] = transitive
		}
	}
	return &assumeRoleWithWebIdentityResponse{Xmlns: xmlns, Result: res, Metadata: responseMetadata{c.id}}, nil
}

// TagsClaim is the ID token claim that carries session tags ("Passing session tags using
// AssumeRoleWithWebIdentity"): {"principal_tags": {"KEY": ["VALUE"]}, "transitive_tag_keys":
// ["KEY"]}. Identity providers fill it from what they know of the person (groups,
// department, cost center).
const TagsClaim = "https://aws.amazon.com/tags"

// tokenTags reads the session tags of a verified token. A malformed claim refuses the
// call: a tag a trust policy or a resource policy keys on must not be guessed at.
func tokenTags(claims map[string]any) ([]Tag, []string, *apiError) {
	raw, ok := claims[TagsClaim]
	if !ok {
		return nil, nil, nil
	}
	bad := func(why string) ([]Tag, []string, *apiError) {
		return nil, nil, invalidParameter("The " + TagsClaim + " claim of the web identity token is malformed: " + why + ".")
	}
	obj, ok := raw.(map[string]any)
	if !ok {
		return bad("it is not an object")
	}
	for k := range obj {
		if k != "principal_tags" && k != "transitive_tag_keys" {
			return bad("it has a member other than principal_tags and transitive_tag_keys")
		}
	}
	pt, _ := obj["principal_tags"].(map[string]any)
	if _, present := obj["principal_tags"]; present && pt == nil {
		return bad("principal_tags is not an object")
	}
	if len(pt) > maxTags {
		return nil, nil, memberError("["+strconv.Itoa(len(pt))+" tags]", "tags", "Member must have length less than or equal to 50")
	}
	keys := make([]string, 0, len(pt))
	for k := range pt {
		keys = append(keys, k)
	}
	slices.Sort(keys) // one order for the session whatever the JSON's
	var tags []Tag
	seen := map[string]bool{}
	for _, k := range keys {
		vals, ok := pt[k].([]any)
		if !ok || len(vals) != 1 {
			return bad("the value of tag " + strconv.Quote(truncate(k, 128)) + " is not a list of one string")
		}
		v, ok := vals[0].(string)
		if !ok {
			return bad("the value of tag " + strconv.Quote(truncate(k, 128)) + " is not a string")
		}
		if e := checkTag(k, true, v, true, seen); e != nil {
			return nil, nil, e
		}
		tags = append(tags, Tag{k, v})
	}
	var transitive []string
	if tk, present := obj["transitive_tag_keys"]; present {
		list, ok := tk.([]any)
		if !ok || len(list) > maxTags {
			return bad("transitive_tag_keys is not a list of at most 50 keys")
		}
		for _, e := range list {
			k, ok := e.(string)
			if !ok || !seen[strings.ToLower(k)] {
				return bad("a transitive tag key is not one of principal_tags")
			}
			transitive = append(transitive, k)
		}
	}
	return tags, transitive, nil
}

func tagMap(tags []Tag) map[string]string {
	m := make(map[string]string, len(tags))
	for _, t := range tags {
		m[t.Key] = t.Value
	}
	return m
}

// trustsWebIdentity evaluates the role's trust policy for the federated principal and
// action with the token's condition keys ("Available keys for AWS OIDC federation") and
// the session tags it asks for.
func (h *Handler) trustsWebIdentity(c *call, roleARN string, trust *policy.Policy, a *assumeRequest, id *oidc.Identity, action string, tags []Tag, transitive []string) bool {
	ctx := policy.NewContext(nil)
	id.SetConditionKeys(ctx)
	setRequestTags(ctx, tags, transitive)
	ctx.Set("sts:RoleSessionName", a.sessionName)
	ctx.Set("aws:SourceIp", c.ev.SourceIPAddress)
	ctx.Set("aws:CurrentTime", isoTime(c.now))
	ctx.Set("aws:EpochTime", strconv.FormatInt(c.now.Unix(), 10))
	ctx.Set("aws:SecureTransport", boolString(c.r.TLS != nil))
	ctx.Set("aws:RequestedRegion", h.cfg.Region)
	ctx.Set("aws:UserAgent", c.r.UserAgent())
	ctx.Set("aws:ViaAWSService", "false")
	req := policy.Request{
		Principal:        id.ProviderARN,
		PrincipalAccount: arn.Account(id.ProviderARN),
		Action:           action,
		Resource:         roleARN,
		ResourceAccount:  arn.Account(roleARN),
		Context:          ctx,
	}
	return policy.NewSet(policy.Entry{Kind: policy.Resource, Policy: trust}).Evaluate(&req).Effect == policy.Allow
}
