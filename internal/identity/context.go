package identity

import (
	"strconv"
	"time"
)

// AddConditionKeys adds the global condition keys that describe the caller to dst, in the
// shape policy.NewContext takes: the principal keys of "AWS global condition context keys"
// that a credential alone determines. Keys the request's network or the gateway determine
// (aws:SourceIp, aws:SourceVpce, aws:CurrentTime...) are not the credential's to set.
//
// For a role session aws:PrincipalArn is the role's ARN, not the session's (as AWS sets it),
// aws:PrincipalTag/* are the session tags, and aws:MultiFactorAuthPresent is always present;
// for a long-term key aws:MultiFactorAuthPresent and aws:TokenIssueTime are absent, as AWS
// leaves them for requests signed with long-term access keys.
func (r *Resolved) AddConditionKeys(dst map[string][]string) {
	if r.Account != "" {
		dst["aws:PrincipalAccount"] = []string{r.Account}
	}
	c := r.Claims
	if c == nil {
		if r.User != "" {
			dst["aws:PrincipalArn"] = []string{r.Credential.Principal}
			dst["aws:PrincipalType"] = []string{"User"}
			dst["aws:username"] = []string{r.User}
		}
		return
	}
	dst["aws:PrincipalArn"] = []string{c.Role}
	dst["aws:PrincipalType"] = []string{"AssumedRole"}
	dst["aws:TokenIssueTime"] = []string{c.IssuedAt.UTC().Format(time.RFC3339)}
	if c.MFA {
		dst["aws:MultiFactorAuthPresent"] = []string{"true"}
	} else {
		dst["aws:MultiFactorAuthPresent"] = []string{"false"}
	}
	for _, t := range c.Tags {
		dst["aws:PrincipalTag/"+t.Key] = []string{t.Value}
	}
	if c.SourceIdentity != "" {
		dst["aws:SourceIdentity"] = []string{c.SourceIdentity}
	}
	if c.VPC != "" {
		dst["aws:EC2InstanceSourceVPC"] = []string{c.VPC}
	}
	if c.PrivateIP.Is4() {
		dst["aws:EC2InstanceSourcePrivateIPv4"] = []string{c.PrivateIP.String()}
	}
}

// MFAAge is aws:MultiFactorAuthAge at now for a user who authenticated with MFA at at:
// whole seconds, never negative (a code's time step may begin a moment after now, within
// the verifier's window).
func MFAAge(now, at time.Time) string {
	d := now.Sub(at)
	if d < 0 {
		d = 0
	}
	return strconv.FormatInt(int64(d/time.Second), 10)
}

// MFAAge is the session's aws:MultiFactorAuthAge at now; false when the session was not
// MFA-authenticated (the key is then absent, as AWS leaves it).
func (c *Claims) MFAAge(now time.Time) (string, bool) {
	if c == nil || !c.MFA || c.MFAAt.IsZero() {
		return "", false
	}
	return MFAAge(now, c.MFAAt), true
}
