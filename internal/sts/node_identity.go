package sts

import (
	"context"
	"fmt"
	"time"

	"github.com/phantom-perimeter/phantom/internal/identity"
)

var _ NodeIssuer = (*Identity)(nil)

// IssueNode implements NodeIssuer: a role session whose sealed claims also carry where it
// was issued (the node, its VPC and private address, the endpoint it is expected to use),
// so the gateway can set aws:EC2InstanceSourceVPC and aws:EC2InstanceSourcePrivateIPv4 and
// the detector can spot the credentials used from elsewhere.
func (a *Identity) IssueNode(_ context.Context, s NodeSession) (SessionCredentials, error) {
	d := s.Expires.Sub(s.IssuedAt)
	if d <= 0 {
		return SessionCredentials{}, fmt.Errorf("issue node session: expiry %s is not after issue time %s", s.Expires.Format(time.RFC3339), s.IssuedAt.Format(time.RFC3339))
	}
	if s.Role == "" || s.Node == "" {
		return SessionCredentials{}, fmt.Errorf("issue node session for %s: a node session needs a role and a node", s.Principal)
	}
	c := identity.Claims{
		Principal:   s.Principal,
		Role:        s.Role,
		SessionName: s.SessionName,
		Node:        s.Node,
		VPC:         s.VPC,
		PrivateIP:   s.PrivateIP,
		Endpoint:    s.Endpoint,
	}
	sealed, token, err := a.svc.NewSession(c, d)
	if err != nil {
		return SessionCredentials{}, fmt.Errorf("issue node session for %s: %w", s.Principal, err)
	}
	return SessionCredentials{
		AccessKeyID:     sealed.AccessKeyID,
		SecretAccessKey: sealed.SecretAccessKey,
		SessionToken:    token,
		Expiration:      sealed.Expires,
		IssuedAt:        sealed.IssuedAt,
	}, nil
}
