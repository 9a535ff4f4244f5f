package sts

import "github.com/phantom-perimeter/phantom/internal/audit"

// The STS records its calls in the audit package's CloudTrail shape.
type (
	Event          = audit.Event
	UserIdentity   = audit.UserIdentity
	SessionContext = audit.SessionContext
	SessionIssuer  = audit.SessionIssuer
	TLSDetails     = audit.TLSDetails
)
