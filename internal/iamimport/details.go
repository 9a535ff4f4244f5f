// Package iamimport turns an AWS account's IAM, as `aws iam
// get-account-authorization-details` prints it, into a Phantom perimeter spec: managed
// policies (their default versions), groups and memberships, users, roles with their
// trust policies, permissions boundaries and tags. What the spec cannot hold is listed,
// never dropped silently, and whatever is left out is left out failing closed: a policy
// that could deny something is never dropped from a principal that is kept.
//
// It owns the reading of that JSON and the writing of the spec's text; the spec's rules
// are internal/config's, which judges every file this package writes.
package iamimport

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strings"
)

// MaxInputSize bounds the JSON read. A large account's authorization details, AWS
// managed policies included, are tens of megabytes.
const MaxInputSize = 256 << 20

// Details is the output of GetAccountAuthorizationDetails (IAM API Reference), the
// fields the import reads. Pages are merged, as the AWS CLI and boto3's paginator merge
// them.
type Details struct {
	UserDetailList  []UserDetail
	GroupDetailList []GroupDetail
	RoleDetailList  []RoleDetail
	Policies        []ManagedPolicyDetail
	IsTruncated     bool
}

// UserDetail is one user.
type UserDetail struct {
	UserName                string
	Path                    string
	Arn                     string
	UserPolicyList          []PolicyDetail
	GroupList               []string
	AttachedManagedPolicies []AttachedPolicy
	PermissionsBoundary     *Boundary
	Tags                    []Tag
}

// GroupDetail is one group.
type GroupDetail struct {
	GroupName               string
	Path                    string
	Arn                     string
	GroupPolicyList         []PolicyDetail
	AttachedManagedPolicies []AttachedPolicy
}

// RoleDetail is one role.
type RoleDetail struct {
	RoleName                 string
	Path                     string
	Arn                      string
	Description              string
	AssumeRolePolicyDocument Document
	RolePolicyList           []PolicyDetail
	AttachedManagedPolicies  []AttachedPolicy
	PermissionsBoundary      *Boundary
	MaxSessionDuration       int
	Tags                     []Tag
	InstanceProfileList      []InstanceProfile
}

// InstanceProfile is an instance profile a role is in.
type InstanceProfile struct {
	InstanceProfileName string
	Arn                 string
	Tags                []Tag
}

// PolicyDetail is an inline policy.
type PolicyDetail struct {
	PolicyName     string
	PolicyDocument Document
}

// AttachedPolicy names an attached managed policy.
type AttachedPolicy struct {
	PolicyName string
	PolicyArn  string
}

// Boundary is a principal's permissions boundary.
type Boundary struct {
	PermissionsBoundaryType string
	PermissionsBoundaryArn  string
}

// Tag is an IAM tag.
type Tag struct {
	Key   string
	Value string
}

// ManagedPolicyDetail is one managed policy with its versions.
type ManagedPolicyDetail struct {
	PolicyName        string
	Arn               string
	Path              string
	Description       string
	DefaultVersionId  string
	PolicyVersionList []PolicyVersion
}

// PolicyVersion is one version of a managed policy.
type PolicyVersion struct {
	VersionId        string
	IsDefaultVersion bool
	Document         Document
}

// Document is a policy document as compact JSON. IAM's API returns documents
// URL-encoded (RFC 3986; IAM API Reference, GetAccountAuthorizationDetails: "The policy
// document returned in this structure is URL-encoded compliant with RFC 3986"); the AWS
// CLI and boto3 decode them into JSON objects; other clients hand on the string, encoded
// or not. All three spellings are read.
type Document json.RawMessage

// UnmarshalJSON reads an object, a string holding JSON, or a string holding URL-encoded
// JSON, and keeps the object's compact JSON.
func (d *Document) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if bytes.Equal(b, []byte("null")) {
		*d = nil
		return nil
	}
	text := b
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		if t := strings.TrimSpace(s); !strings.HasPrefix(t, "{") {
			// PathUnescape, not QueryUnescape: RFC 3986 encodes a space as %20, and a
			// literal + in a document (an ARN, a condition value) stays a +.
			u, err := url.PathUnescape(t)
			if err != nil {
				return fmt.Errorf("policy document is neither JSON nor URL-encoded JSON: %w", err)
			}
			s = u
		}
		text = []byte(s)
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(text, &obj); err != nil {
		return fmt.Errorf("policy document is not a JSON object: %w", err)
	}
	var c bytes.Buffer
	if err := json.Compact(&c, text); err != nil {
		return fmt.Errorf("policy document: %w", err)
	}
	*d = Document(bytes.TrimSpace(c.Bytes()))
	return nil
}

// Parse reads the JSON of GetAccountAuthorizationDetails. A truncated page (IsTruncated,
// as --no-paginate leaves it) is refused: a partial account would import as a different
// one.
func Parse(r io.Reader) (*Details, error) {
	lr := &io.LimitedReader{R: r, N: MaxInputSize + 1}
	dec := json.NewDecoder(lr)
	var d Details
	if err := dec.Decode(&d); err != nil {
		if lr.N <= 0 {
			return nil, fmt.Errorf("the input is larger than %d bytes", MaxInputSize)
		}
		return nil, fmt.Errorf("read authorization details: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("read authorization details: more than one JSON value: give the merged output of one get-account-authorization-details run")
	}
	if d.IsTruncated {
		return nil, errors.New("the input is one page of several (IsTruncated is true): run aws iam get-account-authorization-details without --no-paginate or --max-items")
	}
	return &d, nil
}
