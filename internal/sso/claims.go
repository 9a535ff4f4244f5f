package sso

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"regexp"
	"slices"
	"strings"
	"time"
)

// Claims returns an ID token's claims WITHOUT verifying it: for choosing which role to ask
// STS for and naming the session. STS verifies the token and its trust policy decides; the
// console verifies it with internal/oidc before it trusts a claim.
func Claims(idToken string) (map[string]any, error) {
	if !jwsChars(idToken) {
		return nil, errors.New("the ID token is not a compact JWS")
	}
	parts := strings.Split(idToken, ".")
	payload, err := base64.RawURLEncoding.Strict().DecodeString(parts[1])
	if err != nil {
		return nil, fmt.Errorf("the ID token's payload: %w", err)
	}
	var claims map[string]any
	if err := decodeObject(payload, &claims); err != nil {
		return nil, fmt.Errorf("the ID token's claims: %w", err)
	}
	return claims, nil
}

// Expiry is the exp claim; false when absent or not a date.
func Expiry(claims map[string]any) (time.Time, bool) {
	n, ok := claims["exp"].(json.Number)
	if !ok {
		return time.Time{}, false
	}
	f, err := n.Float64()
	if err != nil || math.IsNaN(f) || f <= 0 || f > 253402300799 {
		return time.Time{}, false
	}
	return time.Unix(int64(f), 0).UTC(), true
}

var (
	roleNameRe = regexp.MustCompile(`^[\w+=,.@-]{1,64}$`)
	roleARNRe  = regexp.MustCompile(`^arn:aws:iam::[0-9]{12}:role/([\x21-\x7e]{0,510}/)?[\w+=,.@-]{1,64}$`)
	sessionRe  = regexp.MustCompile(`[^\w+=,.@-]`)
)

// maxRoles bounds the roles a claim may list.
const maxRoles = 100

// Roles reads the role claim: a role name or ARN, or a list of them, as role ARNs of
// account. Names become arn:aws:iam::ACCOUNT:role/NAME; ARNs of another account are kept
// (the trust policy decides). An absent claim is no roles; a malformed one an error.
func Roles(claims map[string]any, claim, account string) ([]string, error) {
	var raw []string
	switch v := claims[claim].(type) {
	case nil:
		return nil, nil
	case string:
		raw = []string{v}
	case []any:
		for _, e := range v {
			s, ok := e.(string)
			if !ok {
				return nil, fmt.Errorf("claim %s holds a non-string", printable(claim))
			}
			raw = append(raw, s)
		}
	default:
		return nil, fmt.Errorf("claim %s is neither a string nor a list of strings", printable(claim))
	}
	if len(raw) > maxRoles {
		return nil, fmt.Errorf("claim %s lists %d roles; at most %d", printable(claim), len(raw), maxRoles)
	}
	var out []string
	for _, r := range raw {
		arn := r
		switch {
		case roleARNRe.MatchString(r):
		case roleNameRe.MatchString(r):
			arn = "arn:aws:iam::" + account + ":role/" + r
		default:
			return nil, fmt.Errorf("claim %s: %q is neither a role name nor a role ARN", printable(claim), printable(r))
		}
		if !slices.Contains(out, arn) {
			out = append(out, arn)
		}
	}
	return out, nil
}

// SessionName names a person's role session after the token (RoleSessionName: 2 to 64 of
// [\w+=,.@-]): preferred_username, else email, else sub, other characters replaced by -.
func SessionName(claims map[string]any) string {
	for _, c := range []string{"preferred_username", "email", "sub"} {
		if s, _ := claims[c].(string); s != "" {
			s = sessionRe.ReplaceAllString(s, "-")
			if len(s) > 64 {
				s = s[:64]
			}
			if len(s) >= 2 {
				return s
			}
		}
	}
	return "phantom-sso"
}
