package export

import (
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/phantom-perimeter/phantom/internal/detect"
)

// ASFFSchemaVersion is the AWS Security Finding Format's only schema version.
const ASFFSchemaVersion = "2018-10-08"

// ASFFFinding is one finding in the AWS Security Finding Format, shaped as GuardDuty
// sends its findings to Security Hub (AWS Security Hub User Guide, "AWS Security Finding
// Format (ASFF)" and "Amazon GuardDuty integration"). It is what BatchImportFindings
// accepts for a custom integration: ProductArn names the account's default product
// (arn:aws:securityhub:REGION:ACCOUNT:product/ACCOUNT/default), since Phantom is not
// GuardDuty.
type ASFFFinding struct {
	SchemaVersion   string            `json:"SchemaVersion"`
	ID              string            `json:"Id"`
	ProductArn      string            `json:"ProductArn"`
	ProductName     string            `json:"ProductName"`
	CompanyName     string            `json:"CompanyName"`
	Region          string            `json:"Region"`
	GeneratorID     string            `json:"GeneratorId"`
	AwsAccountID    string            `json:"AwsAccountId"`
	Types           []string          `json:"Types"`
	FirstObservedAt string            `json:"FirstObservedAt,omitempty"`
	LastObservedAt  string            `json:"LastObservedAt,omitempty"`
	CreatedAt       string            `json:"CreatedAt"`
	UpdatedAt       string            `json:"UpdatedAt"`
	Severity        ASFFSeverity      `json:"Severity"`
	Title           string            `json:"Title"`
	Description     string            `json:"Description"`
	ProductFields   map[string]string `json:"ProductFields"`
	Resources       []ASFFResource    `json:"Resources"`
	Action          *ASFFAction       `json:"Action,omitempty"`
	Network         *ASFFNetwork      `json:"Network,omitempty"`
	RecordState     string            `json:"RecordState"`
	Workflow        ASFFWorkflow      `json:"Workflow"`
}

// ASFFSeverity is the finding's severity: Label from Normalized (0 INFORMATIONAL, 1-39
// LOW, 40-69 MEDIUM, 70-89 HIGH, 90-100 CRITICAL); Normalized is GuardDuty's severity
// times ten, which maps GuardDuty's bands onto those exactly; Original is GuardDuty's.
type ASFFSeverity struct {
	Label      string `json:"Label"`
	Normalized int    `json:"Normalized"`
	Original   string `json:"Original"`
}

// ASFFResource is the resource the finding is about.
type ASFFResource struct {
	Type      string         `json:"Type"`
	ID        string         `json:"Id"`
	Partition string         `json:"Partition"`
	Region    string         `json:"Region"`
	Details   map[string]any `json:"Details,omitempty"`
}

// ASFFAction is the API call behind the finding.
type ASFFAction struct {
	ActionType       string                `json:"ActionType"`
	AwsAPICallAction *ASFFAwsAPICallAction `json:"AwsApiCallAction,omitempty"`
}

// ASFFAwsAPICallAction names the call and the caller's address.
type ASFFAwsAPICallAction struct {
	API             string               `json:"Api"`
	ServiceName     string               `json:"ServiceName"`
	CallerType      string               `json:"CallerType"`
	RemoteIPDetails *ASFFRemoteIPDetails `json:"RemoteIpDetails,omitempty"`
}

// ASFFRemoteIPDetails is the caller's address.
type ASFFRemoteIPDetails struct {
	IPAddressV4 string `json:"IpAddressV4"`
}

// ASFFNetwork is the connection's direction and source.
type ASFFNetwork struct {
	Direction  string `json:"Direction"`
	SourceIPV4 string `json:"SourceIpV4,omitempty"`
	SourceIPV6 string `json:"SourceIpV6,omitempty"`
}

// ASFFWorkflow is the investigation status.
type ASFFWorkflow struct {
	Status string `json:"Status"`
}

// asffTime is ASFF's ISO 8601 form with milliseconds, as GuardDuty sends it.
func asffTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format("2006-01-02T15:04:05.000Z")
}

// asffCategory maps a GuardDuty threat purpose (the finding type's prefix) onto the ASFF
// types taxonomy (namespace/category), as Security Hub files GuardDuty findings.
var asffCategory = map[string]string{
	"Backdoor":            "TTPs/Command and Control",
	"Collection":          "TTPs/Collection",
	"DefenseImpairment":   "TTPs/Defense Evasion", // ATT&CK v18's half of Defense Evasion (Sigma tags)
	"Behavior":            "Unusual Behaviors/User",
	"CredentialAccess":    "TTPs/Credential Access",
	"Cryptocurrency":      "Effects/Resource Consumption",
	"DefenseEvasion":      "TTPs/Defense Evasion",
	"Discovery":           "TTPs/Discovery",
	"Execution":           "TTPs/Execution",
	"Exfiltration":        "Effects/Data Exfiltration",
	"Impact":              "Effects/Data Destruction",
	"InitialAccess":       "TTPs/Initial Access",
	"LateralMovement":     "TTPs/Lateral Movement",
	"PenTest":             "TTPs/Discovery",
	"Persistence":         "TTPs/Persistence",
	"Policy":              "Software and Configuration Checks/AWS Security Best Practices",
	"PrivilegeEscalation": "TTPs/Privilege Escalation",
	"Recon":               "TTPs/Discovery",
	"Stealth":             "TTPs/Defense Evasion",
	"Trojan":              "TTPs/Execution",
	"UnauthorizedAccess":  "TTPs/Initial Access",
}

// ASFFType returns the finding's ASFF type: namespace/category/classifier, the
// classifier being the GuardDuty type with its "/" written "-" (ASFF types have three
// "/"-separated parts). Unknown threat purposes are "Unusual Behaviors/User".
func ASFFType(findingType string) string {
	purpose, _, _ := strings.Cut(findingType, ":")
	cat, ok := asffCategory[purpose]
	if !ok {
		cat = "Unusual Behaviors/User"
	}
	return cat + "/" + strings.ReplaceAll(findingType, "/", "-")
}

// SeverityLabel is GuardDuty's label for a severity: Low (< 4), Medium (< 7), High
// (< 9), Critical.
func SeverityLabel(sev float64) string {
	switch {
	case sev >= 9:
		return "Critical"
	case sev >= 7:
		return "High"
	case sev >= 4:
		return "Medium"
	}
	return "Low"
}

// ASFF converts f.
func ASFF(f detect.Finding) ASFFFinding {
	region, account := f.Region, f.AccountID
	partition := f.Partition
	if partition == "" {
		partition = "aws"
	}
	norm := int(math.Round(f.Severity * 10))
	norm = max(0, min(norm, 100))
	a := ASFFFinding{
		SchemaVersion:   ASFFSchemaVersion,
		ID:              f.ARN,
		ProductArn:      "arn:" + partition + ":securityhub:" + region + ":" + account + ":product/" + account + "/default",
		ProductName:     "Phantom",
		CompanyName:     "Phantom",
		Region:          region,
		GeneratorID:     "arn:" + partition + ":guardduty:" + region + ":" + account + ":detector/" + f.Service.DetectorID,
		AwsAccountID:    account,
		Types:           []string{ASFFType(f.Type)},
		FirstObservedAt: asffTime(f.Service.EventFirstSeen),
		LastObservedAt:  asffTime(f.Service.EventLastSeen),
		CreatedAt:       asffTime(f.CreatedAt),
		UpdatedAt:       asffTime(f.UpdatedAt),
		Severity: ASFFSeverity{
			Label:      strings.ToUpper(SeverityLabel(f.Severity)),
			Normalized: norm,
			Original:   strconv.FormatFloat(f.Severity, 'f', -1, 64),
		},
		Title:       f.Title,
		Description: f.Description,
		ProductFields: map[string]string{
			"aws/guardduty/service/action/actionType": f.Service.Action.ActionType,
			"aws/guardduty/service/archived":          strconv.FormatBool(f.Service.Archived),
			"aws/guardduty/service/count":             strconv.Itoa(f.Service.Count),
			"aws/guardduty/service/detectorId":        f.Service.DetectorID,
			"aws/guardduty/service/resourceRole":      f.Service.ResourceRole,
			"aws/guardduty/service/serviceName":       f.Service.ServiceName,
		},
		RecordState: "ACTIVE",
		Workflow:    ASFFWorkflow{Status: "NEW"},
	}
	if a.ID == "" {
		a.ID = f.ID
	}
	if f.Service.Archived {
		// Security Hub resolves the workflow of a finding its provider archived.
		a.RecordState = "ARCHIVED"
		a.Workflow.Status = "RESOLVED"
	}
	res := ASFFResource{Type: "Other", ID: f.ID, Partition: partition, Region: region}
	if d := f.Resource.AccessKeyDetails; d != nil {
		res.Type = "AwsIamAccessKey"
		res.ID = "AWS::IAM::AccessKey:" + d.AccessKeyID
		details := map[string]any{}
		for k, v := range map[string]string{"PrincipalId": d.PrincipalID, "PrincipalName": d.UserName, "PrincipalType": d.UserType} {
			if v != "" {
				details[k] = v
			}
		}
		res.Details = map[string]any{"AwsIamAccessKey": details}
		if d.PrincipalARN != "" {
			a.ProductFields["aws/guardduty/resource/accessKeyDetails/principalArn"] = d.PrincipalARN
		}
	}
	a.Resources = []ASFFResource{res}
	if c := f.Service.Action.AWSAPICallAction; c != nil {
		act := &ASFFAwsAPICallAction{API: c.API, ServiceName: c.ServiceName, CallerType: c.CallerType}
		a.ProductFields["aws/guardduty/service/action/awsApiCallAction/api"] = c.API
		a.ProductFields["aws/guardduty/service/action/awsApiCallAction/serviceName"] = c.ServiceName
		if ip := c.RemoteIPDetails; ip != nil {
			if ip.IPAddressV4 != "" {
				act.RemoteIPDetails = &ASFFRemoteIPDetails{IPAddressV4: ip.IPAddressV4}
			}
			if ip.IPAddressV4 != "" || ip.IPAddressV6 != "" {
				a.Network = &ASFFNetwork{Direction: "IN", SourceIPV4: ip.IPAddressV4, SourceIPV6: ip.IPAddressV6}
			}
		}
		a.Action = &ASFFAction{ActionType: f.Service.Action.ActionType, AwsAPICallAction: act}
	}
	return a
}
