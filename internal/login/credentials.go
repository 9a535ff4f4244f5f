package login

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/phantom-perimeter/phantom/internal/sso"
)

// Margins before expiry: cached credentials are served while they have more than
// credentialsMargin left (the AWS SDKs refresh a credential_process's credentials
// themselves some minutes before expiry, and must get fresh ones then); an ID token is
// reused while it has more than tokenMargin left.
const (
	credentialsMargin = 5 * time.Minute
	tokenMargin       = time.Minute
)

// ErrSignInExpired is a session whose ID token has expired and cannot be refreshed.
var ErrSignInExpired = errors.New("the sign-in has expired")

// Fresh returns the session's role credentials for credential_process: the cached
// ones while they last, else a new session from STS with the ID token, refreshed at the
// provider with the refresh token when it has expired. The cache is updated.
func Fresh(ctx context.Context, dir, session string, now func() time.Time, providerHTTP *http.Client) (*Credentials, error) {
	if now == nil {
		now = time.Now
	}
	e, err := Load(dir, session)
	if err != nil {
		return nil, err
	}
	if c := e.Credentials; c != nil && c.Expiration.Sub(now()) > credentialsMargin {
		return c, nil
	}
	if e.IDTokenExpiresAt.Sub(now()) <= tokenMargin {
		if err := refresh(ctx, e, now, providerHTTP); err != nil {
			return nil, err
		}
	}
	if err := exchange(ctx, e); err != nil {
		return nil, err
	}
	if err := Save(dir, session, e); err != nil {
		return nil, err
	}
	return e.Credentials, nil
}

// refresh gets a new ID token with the refresh token (RFC 6749 §6).
func refresh(ctx context.Context, e *Entry, now func() time.Time, hc *http.Client) error {
	if e.RefreshToken == "" {
		return fmt.Errorf("%w and there is no refresh token (the provider gave none: add offline_access to signIn.scopes)", ErrSignInExpired)
	}
	p, err := sso.Discover(ctx, hc, e.Issuer)
	if err != nil {
		return err
	}
	c := &sso.Client{Provider: p, ClientID: e.ClientID, Scopes: e.Scopes, HTTP: hc, Now: now}
	tok, err := c.Refresh(ctx, e.RefreshToken)
	var oe *sso.OAuthError
	if errors.As(err, &oe) && oe.Code == "invalid_grant" {
		return fmt.Errorf("%w: the provider no longer accepts the refresh token (%v)", ErrSignInExpired, err)
	}
	if err != nil {
		return err
	}
	claims, err := sso.Claims(tok.IDToken)
	if err != nil {
		return err
	}
	setTokens(e, tok, claims)
	return nil
}
