package sso

import (
	"errors"
	"fmt"
	"regexp"

	"github.com/phantom-perimeter/phantom/internal/arn"
)

// SignInConfigPath is where STS publishes how people sign in, so `phantom login` needs only
// the STS URL: the wire contract between STS and the CLI.
const SignInConfigPath = "/.well-known/phantom/sign-in"

// SignInConfig is the document at SignInConfigPath: the spec's sign-in provider
// (oidcProviders[].signIn) and the perimeter's account and region.
type SignInConfig struct {
	Issuer    string   `json:"issuer"`
	ClientID  string   `json:"clientId"`
	Scopes    []string `json:"scopes"`
	RoleClaim string   `json:"roleClaim,omitempty"`
	Account   string   `json:"account"`
	Region    string   `json:"region"`
}

var regionRe = regexp.MustCompile(`^[a-z]{2}(-[a-z]+)+-[0-9]{1,2}$`)

// ParseSignInConfig reads the document STS publishes, checking what the CLI will use: an
// issuer it may send people to, a printable client id, openid among the scopes.
func ParseSignInConfig(body []byte) (*SignInConfig, error) {
	var c SignInConfig
	if err := decodeObject(body, &c); err != nil {
		return nil, fmt.Errorf("sign-in configuration: %w", err)
	}
	switch {
	case CheckURL(c.Issuer) != nil:
		return nil, fmt.Errorf("sign-in configuration: issuer %q is not an https URL", printable(c.Issuer))
	case !vschar(c.ClientID, 1, 255):
		return nil, errors.New("sign-in configuration: clientId is missing or not printable")
	case !contains(c.Scopes, "openid"):
		return nil, errors.New("sign-in configuration: openid is not among the scopes")
	case !arn.ValidAccount(c.Account) || !regionRe.MatchString(c.Region):
		return nil, errors.New("sign-in configuration: account or region is malformed")
	case !vschar(c.RoleClaim, 0, 256):
		return nil, errors.New("sign-in configuration: roleClaim is not printable")
	}
	for _, s := range c.Scopes {
		if !errorChars(s) || s == "" {
			return nil, fmt.Errorf("sign-in configuration: scope %q is not an OAuth scope", printable(s))
		}
	}
	return &c, nil
}
