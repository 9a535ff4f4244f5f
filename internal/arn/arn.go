// Package arn owns the AWS identifiers Phantom derives and reads in more than one
// component: account ids, the principal parts of IAM and STS ARNs, role names, assumed-role
// session ARNs and IAM unique ids (AIDA… for users, AROA… for roles). Deriving them in one
// place is what makes STS, the gateway, the egress proxy and the detector name a principal
// the same way.
//
// It imports nothing of Phantom's. It does not own the spec's identifiers (internal/config
// builds its users', roles' and policies' ARNs from their paths and checks formats
// against the JSON schema's patterns) or the policy language's principals
// (internal/policy, a core that imports no package of ours, keeps its own account check).
//
// ARN format: "Amazon Resource Names (ARNs)" and "IAM identifiers" in the AWS IAM User
// Guide: arn:PARTITION:SERVICE:REGION:ACCOUNT:RESOURCE, IAM and STS ARNs with an empty
// region.
package arn

import (
	"crypto/sha256"
	"encoding/base32"
	"strings"
)

// ValidAccount reports whether s is an AWS account id: 12 decimal digits ("IAM
// identifiers": AWS account ID).
func ValidAccount(s string) bool {
	if len(s) != 12 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// Account returns an ARN's account field, or "" when s has fewer than six fields.
func Account(s string) string {
	// The fifth of at least six colon-separated fields, without splitting (the gateway
	// asks for every call).
	for range 4 {
		_, rest, ok := strings.Cut(s, ":")
		if !ok {
			return ""
		}
		s = rest
	}
	acct, _, ok := strings.Cut(s, ":")
	if !ok {
		return ""
	}
	return acct
}

// Principal is the principal-relevant part of an IAM or STS ARN.
type Principal struct {
	Account string
	Kind    string // assumed-role, role, user or root
	// Name is the role or user name: the last path segment of a role or user ARN, the
	// role of an assumed-role session; "" for root.
	Name string
}

// Parse splits arn:PARTITION:{iam|sts}::ACCOUNT:RESOURCE for the principals IAM and STS
// name: a role or user (any path), an assumed-role session (role and session name, no
// path), or the account root. It does not allocate (the gateway parses a principal per
// call for its risk level).
func Parse(s string) (Principal, bool) {
	rest, ok := strings.CutPrefix(s, "arn:")
	if !ok {
		return Principal{}, false
	}
	_, rest, ok = strings.Cut(rest, ":") // partition
	if !ok {
		return Principal{}, false
	}
	svc, rest, ok := strings.Cut(rest, ":")
	if !ok || (svc != "iam" && svc != "sts") {
		return Principal{}, false
	}
	region, rest, ok := strings.Cut(rest, ":")
	if !ok || region != "" {
		return Principal{}, false
	}
	account, res, ok := strings.Cut(rest, ":")
	if !ok || account == "" {
		return Principal{}, false
	}
	kind, path, _ := strings.Cut(res, "/")
	switch {
	case svc == "sts" && kind == "assumed-role":
		role, session, ok := strings.Cut(path, "/")
		if !ok || role == "" || session == "" || strings.Contains(session, "/") {
			return Principal{}, false
		}
		return Principal{Account: account, Kind: kind, Name: role}, true
	case svc == "iam" && (kind == "role" || kind == "user"):
		name := path[strings.LastIndexByte(path, '/')+1:]
		if name == "" {
			return Principal{}, false
		}
		return Principal{Account: account, Kind: kind, Name: name}, true
	case svc == "iam" && kind == "root":
		return Principal{Account: account, Kind: kind}, true
	}
	return Principal{}, false
}

// RoleName is the name of the role a role ARN (arn:aws:iam::ACCOUNT:role/PATH/NAME)
// names, or "" for any other ARN.
func RoleName(s string) string {
	if p, ok := Parse(s); ok && p.Kind == "role" {
		return p.Name
	}
	return ""
}

// AssumedRole is the ARN of a session of role: arn:aws:sts::ACCOUNT:assumed-role/ROLE/
// SESSION (the role's name, without its path, as STS writes it).
func AssumedRole(account, role, session string) string {
	return "arn:aws:sts::" + account + ":assumed-role/" + role + "/" + session
}

// Unique ids in IAM's shape: a prefix and 17 upper-case base32 characters ("IAM
// identifiers": unique identifiers), derived from the ARN so every replica and every
// component computes the same id without a lookup.
var idEncoding = base32.StdEncoding.WithPadding(base32.NoPadding)

func uniqueID(prefix, arn string) string {
	sum := sha256.Sum256([]byte(arn))
	return prefix + idEncoding.EncodeToString(sum[:])[:17]
}

// UserID is the unique id (AIDA…) of the IAM user arn names.
func UserID(arn string) string { return uniqueID("AIDA", arn) }

// RoleID is the unique id (AROA…) of the IAM role arn names.
func RoleID(arn string) string { return uniqueID("AROA", arn) }
