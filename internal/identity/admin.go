package identity

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"time"
)

// Administrative writes (the `phantom iam` and `phantom keys` commands). Each writes to the
// store and then refreshes the snapshots, so the change is in force on this replica when the
// call returns; other replicas pick it up on their next poll.

// CreateAccessKey creates an Active long-term access key for user. The returned key holds
// the secret: the only time it is shown.
func (s *Service) CreateAccessKey(ctx context.Context, user string) (AccessKey, error) {
	if !validUserName(user) {
		return AccessKey{}, fmt.Errorf("create access key: user name %q is not 1 to 64 characters of A-Z a-z 0-9 +=,.@_-", user)
	}
	id, err := NewAccessKeyID(s.rand, PrefixLongTerm)
	if err != nil {
		return AccessKey{}, fmt.Errorf("create access key: %w", err)
	}
	secret, err := NewSecretAccessKey(s.rand)
	if err != nil {
		return AccessKey{}, fmt.Errorf("create access key: %w", err)
	}
	k := AccessKey{ID: id, User: user, Secret: secret, Status: StatusActive, CreatedAt: s.now().UTC()}
	if s.deps.AccessKeys == nil {
		return AccessKey{}, ErrNoKeys
	}
	if err := s.deps.AccessKeys.PutAccessKey(ctx, k); err != nil {
		return AccessKey{}, fmt.Errorf("create access key for %s: %w", user, err)
	}
	if err := s.Refresh(ctx); err != nil {
		return AccessKey{}, fmt.Errorf("create access key for %s: %w", user, err)
	}
	return k, nil
}

// ListAccessKeys returns user's keys (every user's when user is "") without their secrets,
// as `iam list-access-keys` shows them.
func (s *Service) ListAccessKeys(ctx context.Context, user string) ([]AccessKey, error) {
	if s.deps.AccessKeys == nil {
		return nil, ErrNoKeys
	}
	keys, err := s.deps.AccessKeys.ListAccessKeys(ctx, user)
	if err != nil {
		return nil, fmt.Errorf("list access keys: %w", err)
	}
	for i := range keys {
		keys[i].Secret = ""
	}
	return keys, nil
}

// UpdateAccessKeyStatus sets a key Active or Inactive; Inactive is refused on this replica
// as soon as the call returns.
func (s *Service) UpdateAccessKeyStatus(ctx context.Context, id, status string) error {
	if status != StatusActive && status != StatusInactive {
		return fmt.Errorf("update access key %s: status %q is neither %s nor %s", id, status, StatusActive, StatusInactive)
	}
	if s.deps.AccessKeys == nil {
		return ErrNoKeys
	}
	if err := s.deps.AccessKeys.UpdateAccessKeyStatus(ctx, id, status); err != nil {
		return fmt.Errorf("update access key %s: %w", id, err)
	}
	if err := s.Refresh(ctx); err != nil {
		return fmt.Errorf("update access key %s: %w", id, err)
	}
	return nil
}

// DeleteAccessKey deletes a key.
func (s *Service) DeleteAccessKey(ctx context.Context, id string) error {
	if s.deps.AccessKeys == nil {
		return ErrNoKeys
	}
	if err := s.deps.AccessKeys.DeleteAccessKey(ctx, id); err != nil {
		return fmt.Errorf("delete access key %s: %w", id, err)
	}
	if err := s.Refresh(ctx); err != nil {
		return fmt.Errorf("delete access key %s: %w", id, err)
	}
	return nil
}

// RevokeSessions denies every session of the role (by name) issued before now
// ("Revoking IAM role temporary security credentials", IAM User Guide).
func (s *Service) RevokeSessions(ctx context.Context, role string) (Revocation, error) {
	if !validRoleName(role) {
		return Revocation{}, fmt.Errorf("revoke sessions: role name %q is not 1 to 64 characters of A-Z a-z 0-9 +=,.@_-", role)
	}
	r := Revocation{Role: role, Before: s.now().UTC()}
	if err := s.deps.Revocations.PutRevocation(ctx, r); err != nil {
		return Revocation{}, fmt.Errorf("revoke sessions of role %s: %w", role, err)
	}
	if err := s.Refresh(ctx); err != nil {
		return Revocation{}, fmt.Errorf("revoke sessions of role %s: %w", role, err)
	}
	return r, nil
}

// RevokeNode denies every session issued to node before now and the node itself until it
// enrolls again with a new join token (`phantom node revoke`).
func (s *Service) RevokeNode(ctx context.Context, node string) (Revocation, error) {
	if !validIAMName(node) {
		return Revocation{}, fmt.Errorf("revoke node: node name %q is not 1 to 64 characters of A-Z a-z 0-9 +=,.@_-", node)
	}
	r := Revocation{Node: node, Before: s.now().UTC()}
	if err := s.deps.Revocations.PutRevocation(ctx, r); err != nil {
		return Revocation{}, fmt.Errorf("revoke node %s: %w", node, err)
	}
	if err := s.Refresh(ctx); err != nil {
		return Revocation{}, fmt.Errorf("revoke node %s: %w", node, err)
	}
	return r, nil
}

// RotateSealingKey adds a new current sealing key and retires the previous current keys
// after the longest session (they keep opening the tokens they sealed until then). With no
// key yet, it creates the first one. It returns the new key's id. With Config.TokenKeys
// the new key's signing key is made in the token and only its public key is stored.
func (s *Service) RotateSealingKey(ctx context.Context) (string, error) {
	return s.RotateSealingKeyIn(ctx, s.tokenKeys)
}

// RotateSealingKeyIn is RotateSealingKey with the new signing key made in tk (nil: at
// random, sealed in the store), whatever Config.TokenKeys is: the operator's command
// rotates with the token it is given. Without tk, a current key that signs in a token is
// not replaced by one in the store (that would take the token out of use): refused.
func (s *Service) RotateSealingKeyIn(ctx context.Context, tk TokenSigningKeys) (string, error) {
	if s.deps.SealingKeys == nil {
		return "", ErrNoKeys
	}
	if tk == nil && s.sealer.CurrentInToken() {
		return "", fmt.Errorf("rotate sealing key: the current key %q signs in a PKCS#11 token: rotate with that token (--pkcs11-module, --pkcs11-token, --pkcs11-pin-file)", s.sealer.CurrentKeyID())
	}
	now := s.now().UTC()
	var k SealingKey
	var signer crypto.Signer
	var err error
	if tk != nil {
		if signer, err = tk.NewTokenSigningKey(ctx); err == nil {
			k, err = NewSealingKeyInToken(s.rand, now, signer)
		}
	} else {
		k, err = NewSealingKey(s.rand, now)
	}
	if err != nil {
		return "", fmt.Errorf("rotate sealing key: %w", err)
	}
	// Store the new key before retiring the old: a crash in between leaves two current keys
	// (the newest seals), never none.
	if err := s.deps.SealingKeys.PutSealingKey(ctx, k); err != nil {
		if d, ok := signer.(interface{ Destroy() error }); ok {
			err = errors.Join(err, d.Destroy()) // no key nothing names left in the token
		}
		return "", fmt.Errorf("rotate sealing key: store key %s: %w", k.ID, err)
	}
	// List after the write, so a key another replica rotated in meanwhile is retired too
	// rather than left current (never retiring) beside ours.
	keys, err := s.deps.SealingKeys.ListSealingKeys(ctx)
	if err != nil {
		return k.ID, fmt.Errorf("rotate sealing key: list keys: %w", err)
	}
	var errs []error
	for _, old := range keys {
		if old.ID != k.ID && old.RetireAfter.IsZero() {
			if err := s.deps.SealingKeys.RetireSealingKey(ctx, old.ID, now.Add(s.maxSession)); err != nil {
				errs = append(errs, fmt.Errorf("retire key %s: %w", old.ID, err))
			}
		}
	}
	if err := s.Refresh(ctx); err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return k.ID, fmt.Errorf("rotate sealing key: %w", errors.Join(errs...))
	}
	return k.ID, nil
}

// NewSession generates a session's access key id and secret, sets its issue time to now and
// its expiry to now+duration, and seals it. c carries the rest (principal, role, tags...).
func (s *Service) NewSession(c Claims, duration time.Duration) (Claims, string, error) {
	if duration <= 0 {
		return Claims{}, "", fmt.Errorf("new session: duration %s is not positive", duration)
	}
	var err error
	if c.AccessKeyID, err = NewAccessKeyID(s.rand, PrefixTemporary); err != nil {
		return Claims{}, "", fmt.Errorf("new session: %w", err)
	}
	if c.SecretAccessKey, err = NewSecretAccessKey(s.rand); err != nil {
		return Claims{}, "", fmt.Errorf("new session: %w", err)
	}
	c.IssuedAt = s.now().UTC()
	c.Expires = c.IssuedAt.Add(duration)
	token, err := s.sealer.Seal(&c)
	if err != nil {
		return Claims{}, "", fmt.Errorf("new session: %w", err)
	}
	return c, token, nil
}

// validUserName follows IAM's user and role name rules: 1-64 of [\w+=,.@-]
// ("IAM object quotas" and CreateUser/CreateRole, IAM API Reference).
func validUserName(n string) bool { return validIAMName(n) }
func validRoleName(n string) bool { return validIAMName(n) }

func validIAMName(n string) bool {
	if len(n) == 0 || len(n) > 64 {
		return false
	}
	for i := 0; i < len(n); i++ {
		c := n[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case c == '+' || c == '=' || c == ',' || c == '.' || c == '@' || c == '_' || c == '-':
		default:
			return false
		}
	}
	return true
}
