package admin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"regexp"
	"time"

	"github.com/phantom-perimeter/phantom/internal/identity"
	"github.com/phantom-perimeter/phantom/internal/store"
)

// AccessKey is a new access key as CreateAccessKey returns it: the only time its secret
// is shown. Field names here and below are AWS's (AccessKeyId, RoleArn), so the JSON
// matches the AWS CLI's without tags.
type AccessKey struct {
	UserName        string
	AccessKeyId     string
	Status          string
	SecretAccessKey string
	CreateDate      Time
}

// CreateAccessKeyOutput is `aws iam create-access-key`'s output.
type CreateAccessKeyOutput struct {
	AccessKey AccessKey
}

func (o *CreateAccessKeyOutput) writeText(w io.Writer) error {
	k := o.AccessKey
	return textLine(w, "AccessKey", k.AccessKeyId, k.CreateDate.String(), k.SecretAccessKey, k.Status, k.UserName)
}

// AccessKeyMetadata is an access key as ListAccessKeys shows it. It has no secret field,
// so no listing can print one.
type AccessKeyMetadata struct {
	UserName    string
	AccessKeyId string
	Status      string
	CreateDate  Time
}

// ListAccessKeysOutput is `aws iam list-access-keys`'s output.
type ListAccessKeysOutput struct {
	AccessKeyMetadata []AccessKeyMetadata
}

func (o *ListAccessKeysOutput) writeText(w io.Writer) error {
	for _, k := range o.AccessKeyMetadata {
		if err := textLine(w, "AccessKeyMetadata", k.AccessKeyId, k.CreateDate.String(), k.Status, k.UserName); err != nil {
			return err
		}
	}
	return nil
}

// IAM's parameter patterns (IAM API Reference: CreateAccessKey UserName, UpdateAccessKey
// AccessKeyId).
var (
	userNameRe    = regexp.MustCompile(`^[\w+=,.@-]{1,64}$`)
	accessKeyIDRe = regexp.MustCompile(`^\w{16,128}$`)
)

func checkUserName(name string) error {
	if !userNameRe.MatchString(name) {
		return validation(name, "userName", `Member must satisfy regular expression pattern: [\w+=,.@-]+ and have length between 1 and 64`)
	}
	return nil
}

func checkAccessKeyID(id string) error {
	if !accessKeyIDRe.MatchString(id) {
		return validation(id, "accessKeyId", `Member must satisfy regular expression pattern: [\w]+ and have length between 16 and 128`)
	}
	return nil
}

// CreateAccessKey creates an Active access key for a user of the spec, refusing a third
// key (LimitExceeded) as IAM does. The returned secret is not stored anywhere readable
// except encrypted in the store: show it once.
func (a *Admin) CreateAccessKey(ctx context.Context, user string) (*CreateAccessKeyOutput, error) {
	if err := checkUserName(user); err != nil {
		return nil, err
	}
	if _, ok := a.spec.User(user); !ok {
		return nil, noSuchUser(user)
	}
	unlock, err := a.lock()
	if err != nil {
		return nil, err
	}
	defer unlock()
	keys, err := a.ids.ListAccessKeys(ctx, user)
	if err != nil {
		return nil, err
	}
	if len(keys) >= AccessKeysPerUser {
		return nil, &Error{CodeLimitExceeded, fmt.Sprintf("Cannot exceed quota for AccessKeysPerUser: %d", AccessKeysPerUser)}
	}
	k, err := a.ids.CreateAccessKey(ctx, user)
	if err != nil {
		return nil, err
	}
	// The lock serialises this host only; with a store shared by several hosts another
	// may have added a key meanwhile. Check again and take ours back when over quota
	// (two racing hosts may both back out: the caller retries, the quota holds).
	if keys, err = a.ids.ListAccessKeys(ctx, user); err != nil || len(keys) > AccessKeysPerUser {
		if derr := a.ids.DeleteAccessKey(ctx, k.ID); derr != nil {
			return nil, fmt.Errorf("access key %s created over quota and not removed: %w", k.ID, errors.Join(err, derr))
		}
		if err != nil {
			return nil, err
		}
		return nil, &Error{CodeLimitExceeded, fmt.Sprintf("Cannot exceed quota for AccessKeysPerUser: %d", AccessKeysPerUser)}
	}
	return &CreateAccessKeyOutput{AccessKey{
		UserName:        k.User,
		AccessKeyId:     k.ID,
		Status:          k.Status,
		SecretAccessKey: k.Secret,
		CreateDate:      Time(k.CreatedAt),
	}}, nil
}

// ListAccessKeys lists a user's keys without their secrets. A user no longer in the spec
// whose keys are still stored is listed too, so that its keys can be found and deleted;
// a name neither in the spec nor owning a key is NoSuchEntity.
func (a *Admin) ListAccessKeys(ctx context.Context, user string) (*ListAccessKeysOutput, error) {
	keys, err := a.userKeys(ctx, user)
	if err != nil {
		return nil, err
	}
	out := &ListAccessKeysOutput{AccessKeyMetadata: make([]AccessKeyMetadata, 0, len(keys))}
	for _, k := range keys {
		out.AccessKeyMetadata = append(out.AccessKeyMetadata, AccessKeyMetadata{
			UserName: k.User, AccessKeyId: k.ID, Status: k.Status, CreateDate: Time(k.CreatedAt),
		})
	}
	return out, nil
}

// userKeys returns user's keys (secrets blanked), or NoSuchEntity for a user that is
// neither in the spec nor owns a stored key.
func (a *Admin) userKeys(ctx context.Context, user string) ([]store.AccessKey, error) {
	if err := checkUserName(user); err != nil {
		return nil, err
	}
	keys, err := a.ids.ListAccessKeys(ctx, user)
	if err != nil {
		return nil, err
	}
	if _, ok := a.spec.User(user); !ok && len(keys) == 0 {
		return nil, noSuchUser(user)
	}
	return keys, nil
}

// ownedKey returns user's key id, or NoSuchEntity when user has no such key: a key of
// another user is not found, as IAM says for a key id under the wrong user name.
func (a *Admin) ownedKey(ctx context.Context, user, id string) (store.AccessKey, error) {
	if err := checkAccessKeyID(id); err != nil {
		return store.AccessKey{}, err
	}
	keys, err := a.userKeys(ctx, user)
	if err != nil {
		return store.AccessKey{}, err
	}
	for _, k := range keys {
		if k.ID == id {
			return k, nil
		}
	}
	return store.AccessKey{}, noSuchKey(id)
}

// UpdateAccessKey sets a user's key Active or Inactive. Inactive is refused by this
// process at once and by every process sharing the store within its refresh interval
// (identity.DefaultRefreshInterval). Making a key Active needs its user in the spec;
// disabling does not, so keys of a removed user can always be switched off.
func (a *Admin) UpdateAccessKey(ctx context.Context, user, id, status string) error {
	if status != identity.StatusActive && status != identity.StatusInactive {
		return validation(status, "status", "Member must satisfy enum value set: [Active, Inactive]")
	}
	if _, err := a.ownedKey(ctx, user, id); err != nil {
		return err
	}
	if _, ok := a.spec.User(user); !ok && status == identity.StatusActive {
		return noSuchUser(user)
	}
	if err := a.ids.UpdateAccessKeyStatus(ctx, id, status); err != nil {
		if isNotFound(err) {
			return noSuchKey(id) // deleted meanwhile
		}
		return err
	}
	return nil
}

// DeleteAccessKey deletes a user's key.
func (a *Admin) DeleteAccessKey(ctx context.Context, user, id string) error {
	if _, err := a.ownedKey(ctx, user, id); err != nil {
		return err
	}
	if err := a.ids.DeleteAccessKey(ctx, id); err != nil {
		if isNotFound(err) {
			return noSuchKey(id)
		}
		return err
	}
	return nil
}

// RevokeSessionsOutput says which sessions are now refused: every session of the role
// issued before TokenIssueTimeBefore (full precision, RFC 3339).
type RevokeSessionsOutput struct {
	RoleName             string
	RoleArn              string
	TokenIssueTimeBefore string
}

func (o *RevokeSessionsOutput) writeText(w io.Writer) error {
	return textLine(w, "RevokeSessions", o.RoleArn, o.RoleName, o.TokenIssueTimeBefore)
}

// RevokeSessions denies every session of a spec role issued before now: AWS's "revoke
// active sessions", a deny on aws:TokenIssueTime ("Revoking IAM role temporary security
// credentials", IAM User Guide). Sessions issued afterwards are unaffected.
func (a *Admin) RevokeSessions(ctx context.Context, role string) (*RevokeSessionsOutput, error) {
	if !userNameRe.MatchString(role) {
		return nil, validation(role, "roleName", `Member must satisfy regular expression pattern: [\w+=,.@-]+ and have length between 1 and 64`)
	}
	r, ok := a.spec.Role(role)
	if !ok {
		return nil, noSuchRole(role)
	}
	rev, err := a.ids.RevokeSessions(ctx, role)
	if err != nil {
		return nil, err
	}
	return &RevokeSessionsOutput{RoleName: role, RoleArn: r.ARN, TokenIssueTimeBefore: rev.Before.UTC().Format(time.RFC3339Nano)}, nil
}
