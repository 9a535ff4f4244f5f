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
	if a.policy != nil || len(a.policyARNs) > 0 {
		packed = packedPercent(a.policyText, a.policyARNs, nil)
		if packed > 100 {
			return nil, &apiError{Code: "PackedPolicyTooLarge", Message: "Packed policy consumes " + strconv.Itoa(packed) + "% of allotted space, please use smaller policy.", Status: http.StatusBadRequest}
		}
	}

	// Authorization is the role's trust policy alone: the federated principal has no
	// identity-based policies of its own ("Creating a role for OIDC federation").
	const action = "sts:AssumeRoleWithWebIdentity"
	role, ok := c.dir.RoleByARN(a.roleARN)
	if !ok || role.TrustPolicy == nil || role.TrustPolicy.Compiled == nil || !h.trustsWebIdentity(c, role.ARN, role.TrustPolicy.Compiled, a, id) {
		// The same message whether or not the role exists.
		return nil, accessDenied("Not authorized to perform " + action)
	}
	maxDur := int(role.MaxSessionDuration / time.Second)
	if maxDur == 0 {
		maxDur = defaultRoleSession
	}
	if a.duration > maxDur {
		return nil, validationError("The requested DurationSeconds exceeds the MaxSessionDuration set for this role.")
	}

	sessionARN := "arn:aws:sts::" + arnAccount(role.ARN) + ":assumed-role/" + role.Name + "/" + a.sessionName
	creds, err := h.issuer.Issue(ctx, SessionSpec{
		Principal:   sessionARN,
		Role:        role.ARN,
		SessionName: a.sessionName,
		Policy:      a.policyText,
		PolicyARNs:  a.policyARNs,
		IssuedAt:    c.now,
		Expires:     c.now.Add(time.Duration(a.duration) * time.Second),
	})
	if err != nil {
		h.log.Error("sts issue session failed", "request_id", c.id, "role_arn", role.ARN, "error", err)
		return nil, internalFailure()
	}
	res := assumeRoleWithWebIdentityResult{
		Credentials:                 credXML(creds),
		SubjectFromWebIdentityToken: id.Subject,
		AssumedRoleUser:             assumedRoleUser{AssumedRoleID: roleID(role.ARN) + ":" + a.sessionName, Arn: sessionARN},
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
	return &assumeRoleWithWebIdentityResponse{Xmlns: xmlns, Result: res, Metadata: responseMetadata{c.id}}, nil
}

// trustsWebIdentity evaluates the role's trust policy for the federated principal with the
// token's condition keys ("Available keys for AWS OIDC federation").
func (h *Handler) trustsWebIdentity(c *call, roleARN string, trust *policy.Policy, a *assumeRequest, id *oidc.Identity) bool {
	ctx := policy.NewContext(nil)
	id.SetConditionKeys(ctx)
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
		PrincipalAccount: arnAccount(id.ProviderARN),
		Action:           "sts:AssumeRoleWithWebIdentity",
		Resource:         roleARN,
		ResourceAccount:  arnAccount(roleARN),
		Context:          ctx,
	}
	return policy.NewSet(policy.Entry{Kind: policy.Resource, Policy: trust}).Evaluate(&req).Effect == policy.Allow
}
