package sts

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/phantom-perimeter/phantom/internal/identity"
	"github.com/phantom-perimeter/phantom/internal/sigv4"
)

// Identity adapts *identity.Service to Credentials and Issuer: sessions are minted as
// ASIA access keys with self-contained sealed tokens, and every lookup resolves from the
// service's in-memory snapshots (access keys, revocations, sealing key ring). The adapter
// lives here, not in identity, so that identity stays free of the STS's types.
type Identity struct {
	svc *identity.Service
}

var (
	_ Credentials  = (*Identity)(nil)
	_ Issuer       = (*Identity)(nil)
	_ NodeSessions = (*Identity)(nil)
)

// NewIdentity returns the adapter for svc.
func NewIdentity(svc *identity.Service) *Identity { return &Identity{svc: svc} }

// errRevoked is what a revoked role session gets: the token is genuine, so AWS answers the
// call with AccessDenied (its revocation is an explicit deny on aws:TokenIssueTime,
// "Revoking IAM role temporary security credentials"), not InvalidClientTokenId.
var errRevoked = fmt.Errorf("role sessions revoked after this session was issued: %w", sigv4.ErrAccessDenied)

// LookupSession implements Credentials. Long-term keys must be Active (an Inactive or
// unknown key is InvalidClientTokenId, as IAM answers); session tokens must open under the
// ring, carry this access key id, be unexpired and not revoked.
func (a *Identity) LookupSession(ctx context.Context, accessKeyID, sessionToken string) (sigv4.Credential, *Session, error) {
	r, err := a.svc.Resolve(ctx, accessKeyID, sessionToken)
	if err != nil {
		if errors.Is(err, identity.ErrSessionRevoked) {
			return sigv4.Credential{}, nil, errRevoked
		}
		return sigv4.Credential{}, nil, err
	}
	c := r.Claims
	if c == nil {
		return r.Credential, nil, nil
	}
	role := c.Role
	if role == c.Principal && isUserARN(role) {
		role = "" // a GetSessionToken session (see Issue)
	}
	s := &Session{
		Role:              role,
		SessionName:       c.SessionName,
		SourceIdentity:    c.SourceIdentity,
		TransitiveTagKeys: c.TransitiveTagKeys,
		Policy:            c.Policy,
		PolicyARNs:        c.PolicyARNs,
		IssuedAt:          c.IssuedAt,
		Expires:           c.Expires,
		MFA:               c.MFA,
		MFAAt:             c.MFAAt,
		VPC:               c.VPC,
	}
	if len(c.Tags) > 0 {
		s.Tags = make([]Tag, len(c.Tags))
		for i, t := range c.Tags {
			s.Tags[i] = Tag{Key: t.Key, Value: t.Value}
		}
	}
	return r.Credential, s, nil
}

// Issue implements Issuer: it mints a new ASIA key and secret and seals the session's
// claims into its token. The session lasts spec.Expires-spec.IssuedAt from the service's
// clock, which stamps the token's issue time (aws:TokenIssueTime).
func (a *Identity) Issue(_ context.Context, spec SessionSpec) (SessionCredentials, error) {
	d := spec.Expires.Sub(spec.IssuedAt)
	if d <= 0 {
		return SessionCredentials{}, fmt.Errorf("issue session: expiry %s is not after issue time %s", spec.Expires.Format(time.RFC3339), spec.IssuedAt.Format(time.RFC3339))
	}
	role := spec.Role
	if role == "" {
		// identity's claims require a role ARN; a GetSessionToken session has none, so it
		// carries its user's ARN there (Principal == Role, a :user/ ARN), which
		// LookupSession turns back into "". Claims.RoleName is empty for such a session,
		// so revoking a role never reaches a same-named user's sessions.
		if !isUserARN(spec.Principal) {
			return SessionCredentials{}, fmt.Errorf("issue session: a session without a role must act as an IAM user, not %s", spec.Principal)
		}
		role = spec.Principal
	}
	c := identity.Claims{
		Principal:         spec.Principal,
		Role:              role,
		SourceIdentity:    spec.SourceIdentity,
		SessionName:       spec.SessionName,
		TransitiveTagKeys: spec.TransitiveTagKeys,
		Policy:            spec.Policy,
		PolicyARNs:        spec.PolicyARNs,
		MFA:               spec.MFA,
		MFAAt:             spec.MFAAt,
		VPC:               spec.VPC,
	}
	if len(spec.Tags) > 0 {
		c.Tags = make([]identity.Tag, len(spec.Tags))
		for i, t := range spec.Tags {
			c.Tags[i] = identity.Tag{Key: t.Key, Value: t.Value}
		}
	}
	sealed, token, err := a.svc.NewSession(c, d)
	if err != nil {
		return SessionCredentials{}, fmt.Errorf("issue session for %s: %w", spec.Principal, err)
	}
	return SessionCredentials{
		AccessKeyID:     sealed.AccessKeyID,
		SecretAccessKey: sealed.SecretAccessKey,
		SessionToken:    token,
		Expiration:      sealed.Expires,
	}, nil
}

func isUserARN(arn string) bool {
	return strings.HasPrefix(arn, "arn:aws:iam::") && strings.Contains(arn, ":user/")
}

// NodeRevoked implements NodeSessions.
func (a *Identity) NodeRevoked(node string) bool { return a.svc.NodeRevoked(node) }

// NodeRevocation implements NodeSessions.
func (a *Identity) NodeRevocation(node string) (time.Time, bool) { return a.svc.NodeRevocation(node) }

// Changed implements NodeSessions.
func (a *Identity) Changed() <-chan struct{} { return a.svc.Changed() }

// SessionState implements NodeSessions with the identity service's own check: a session
// that Resolve would refuse is reported with why.
func (a *Identity) SessionState(accessKeyID, sessionToken string) (node, state string, err error) {
	c, err := a.svc.SessionState(accessKeyID, sessionToken)
	if c != nil {
		node = c.Node
	}
	switch {
	case err == nil:
		return node, SessionValid, nil
	case errors.Is(err, identity.ErrSessionRevoked):
		return node, SessionRevoked, nil
	case errors.Is(err, identity.ErrTokenExpired):
		return "", SessionExpired, nil
	case errors.Is(err, identity.ErrNotLoaded), errors.Is(err, identity.ErrStale):
		return "", "", fmt.Errorf("%w: %w", ErrSessionStateUnknown, err)
	}
	return "", SessionInvalid, nil
}
