// Package detect owns Phantom's threat detection: rules over CloudTrail-format events
// (Phantom's own audit stream as it happens, and CloudTrail log files after the fact),
// per-principal baselines, GuardDuty-style findings with deduplication, and the responses
// to them that the enforcement points apply.
package detect

import (
	"strings"
	"time"
)

// Finding is one GuardDuty-style finding, in the JSON shape of GuardDuty's GetFindings
// ("Finding details" in the GuardDuty User Guide). A finding is identified by what it is
// about (type, principal, access key, and the rule's own key): a repeat raises Count and
// EventLastSeen instead of making a new finding.
type Finding struct {
	SchemaVersion string    `json:"schemaVersion"` // "2.0"
	AccountID     string    `json:"accountId"`
	Region        string    `json:"region"`
	Partition     string    `json:"partition"` // "aws"
	ID            string    `json:"id"`
	ARN           string    `json:"arn"`
	Type          string    `json:"type"` // e.g. UnauthorizedAccess:IAMUser/InstanceCredentialExfiltration.InsideAWS
	Title         string    `json:"title"`
	Description   string    `json:"description"`
	Severity      float64   `json:"severity"` // 1.0 to 8.9: low < 4, medium < 7, high
	CreatedAt     time.Time `json:"createdAt"`
	UpdatedAt     time.Time `json:"updatedAt"`
	Resource      Resource  `json:"resource"`
	Service       Service   `json:"service"`
}

// Resource is what the finding is about: for IAM findings, the access key and its principal.
type Resource struct {
	ResourceType     string            `json:"resourceType"` // "AccessKey"
	AccessKeyDetails *AccessKeyDetails `json:"accessKeyDetails,omitempty"`
}

// AccessKeyDetails names the credential and the principal behind it.
type AccessKeyDetails struct {
	AccessKeyID string `json:"accessKeyId,omitempty"`
	PrincipalID string `json:"principalId,omitempty"`
	UserName    string `json:"userName,omitempty"`
	UserType    string `json:"userType,omitempty"` // IAMUser, AssumedRole, Root, ...
	// PrincipalARN is Phantom's addition: the caller's ARN, which responses act on.
	PrincipalARN string `json:"principalArn,omitempty"`
	// Claimed is Phantom's addition: the identity is only what a request claimed (its
	// signature or credential did not verify). Such a finding is kept and shown, but no
	// response acts on the identity: anyone can name someone else's access key id.
	Claimed bool `json:"claimed,omitempty"`
}

// Service is GuardDuty's service element: what was seen, how often, when.
type Service struct {
	ServiceName    string         `json:"serviceName"` // "guardduty"
	DetectorID     string         `json:"detectorId"`
	Action         Action         `json:"action"`
	ResourceRole   string         `json:"resourceRole"` // "TARGET"
	Archived       bool           `json:"archived"`
	Count          int            `json:"count"`
	EventFirstSeen time.Time      `json:"eventFirstSeen"`
	EventLastSeen  time.Time      `json:"eventLastSeen"`
	AdditionalInfo map[string]any `json:"additionalInfo,omitempty"`
	// Evidence is Phantom's addition: the eventIDs of (up to 20 of) the events behind
	// the finding, so an analyst can find them in the audit log.
	Evidence []string `json:"evidence,omitempty"`
}

// Action is the activity behind the finding.
type Action struct {
	ActionType       string            `json:"actionType"` // "AWS_API_CALL"
	AWSAPICallAction *AWSAPICallAction `json:"awsApiCallAction,omitempty"`
}

// AWSAPICallAction is an API call: which, by whom, from where.
type AWSAPICallAction struct {
	API             string           `json:"api"`
	ServiceName     string           `json:"serviceName"`
	CallerType      string           `json:"callerType"` // "Remote IP"
	ErrorCode       string           `json:"errorCode,omitempty"`
	UserAgent       string           `json:"userAgent,omitempty"`
	RemoteIPDetails *RemoteIPDetails `json:"remoteIpDetails,omitempty"`
}

// RemoteIPDetails is the caller's address.
type RemoteIPDetails struct {
	IPAddressV4 string `json:"ipAddressV4,omitempty"`
	IPAddressV6 string `json:"ipAddressV6,omitempty"`
}

// tactics are the MITRE ATT&CK enterprise tactics as GuardDuty spells them in finding
// types (its threat purposes), plus Stealth and DefenseImpairment, the two halves ATT&CK
// v18 split Defense Evasion into.
var tactics = map[string]bool{
	"InitialAccess": true, "Execution": true, "Persistence": true, "PrivilegeEscalation": true,
	"DefenseEvasion": true, "Stealth": true, "DefenseImpairment": true, "CredentialAccess": true,
	"Discovery": true, "LateralMovement": true, "Collection": true, "Exfiltration": true, "Impact": true,
}

// Tactic is the ATT&CK tactic a finding is filed under: the one its rule recorded in
// additionalInfo.tactic (anomaly, sequence and Sigma findings), else its type's threat
// purpose when that is a tactic, else what the Phantom-specific types are evidence of.
// "" for policy findings (root use, an administrator's key) and network reputation.
func Tactic(f Finding) string {
	if t, ok := f.Service.AdditionalInfo["tactic"].(string); ok && t != "" {
		return t
	}
	purpose, _, _ := strings.Cut(f.Type, ":")
	if tactics[purpose] {
		return purpose
	}
	switch f.Type {
	case TypeExfilOutside, TypeExfilInside: // ATT&CK T1552.005, cloud instance metadata API
		return "CredentialAccess"
	case TypeBruteForce: // T1110
		return "CredentialAccess"
	case TypeAccessDenied: // T1580, cloud infrastructure discovery
		return "Discovery"
	}
	return ""
}
