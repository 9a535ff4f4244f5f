package export

import (
	"time"

	"github.com/phantom-perimeter/phantom/internal/detect"
)

// OCSFVersion is the OCSF schema version the Detection Finding follows.
const OCSFVersion = "1.1.0"

// OCSF class and category of a Detection Finding (OCSF schema, "Detection Finding",
// class 2004 in category 2, Findings).
const (
	OCSFClassUID    = 2004
	OCSFCategoryUID = 2
)

// OCSF Detection Finding activities.
const (
	OCSFActivityCreate = 1
	OCSFActivityUpdate = 2
	OCSFActivityClose  = 3
)

// OCSFFinding is an OCSF Detection Finding. Timestamps are OCSF timestamp_t: epoch
// milliseconds.
type OCSFFinding struct {
	ActivityID   int             `json:"activity_id"`
	ActivityName string          `json:"activity_name"`
	CategoryUID  int             `json:"category_uid"`
	CategoryName string          `json:"category_name"`
	ClassUID     int             `json:"class_uid"`
	ClassName    string          `json:"class_name"`
	TypeUID      int             `json:"type_uid"`
	TypeName     string          `json:"type_name"`
	SeverityID   int             `json:"severity_id"`
	Severity     string          `json:"severity"`
	StatusID     int             `json:"status_id"`
	Status       string          `json:"status"`
	Time         int64           `json:"time"`
	Count        int             `json:"count,omitempty"`
	Message      string          `json:"message"`
	FindingInfo  OCSFFindingInfo `json:"finding_info"`
	Resources    []OCSFResource  `json:"resources,omitempty"`
	Actor        *OCSFActor      `json:"actor,omitempty"`
	API          *OCSFAPI        `json:"api,omitempty"`
	Evidences    []OCSFEvidence  `json:"evidences,omitempty"`
	Cloud        OCSFCloud       `json:"cloud"`
	Metadata     OCSFMetadata    `json:"metadata"`
	Unmapped     map[string]any  `json:"unmapped,omitempty"`
}

// OCSFFindingInfo describes the finding itself.
type OCSFFindingInfo struct {
	UID           string   `json:"uid"`
	Title         string   `json:"title"`
	Desc          string   `json:"desc"`
	Types         []string `json:"types"`
	CreatedTime   int64    `json:"created_time"`
	ModifiedTime  int64    `json:"modified_time"`
	FirstSeenTime int64    `json:"first_seen_time,omitempty"`
	LastSeenTime  int64    `json:"last_seen_time,omitempty"`
	ProductUID    string   `json:"product_uid,omitempty"`
}

// OCSFResource is a resource the finding is about.
type OCSFResource struct {
	Type           string    `json:"type"`
	UID            string    `json:"uid"`
	CloudPartition string    `json:"cloud_partition,omitempty"`
	Region         string    `json:"region,omitempty"`
	Owner          *OCSFUser `json:"owner,omitempty"`
}

// OCSFActor is who acted.
type OCSFActor struct {
	User *OCSFUser `json:"user,omitempty"`
}

// OCSFUser is an identity; credential_uid is the access key id.
type OCSFUser struct {
	UID           string `json:"uid,omitempty"`
	UIDAlt        string `json:"uid_alt,omitempty"`
	Name          string `json:"name,omitempty"`
	Type          string `json:"type,omitempty"`
	CredentialUID string `json:"credential_uid,omitempty"`
}

// OCSFEvidence is what the finding was raised on: the call, who made it and from where.
// The caller's address belongs here, not at the top: a Detection Finding has no
// src_endpoint attribute of its own (OCSF 1.1.0).
type OCSFEvidence struct {
	Actor       *OCSFActor    `json:"actor,omitempty"`
	API         *OCSFAPI      `json:"api,omitempty"`
	SrcEndpoint *OCSFEndpoint `json:"src_endpoint,omitempty"`
}

// OCSFEndpoint is a network endpoint.
type OCSFEndpoint struct {
	IP string `json:"ip"`
}

// OCSFAPI is the API call behind the finding.
type OCSFAPI struct {
	Operation string         `json:"operation"`
	Service   OCSFAPIService `json:"service"`
}

// OCSFAPIService names the called service.
type OCSFAPIService struct {
	Name string `json:"name"`
}

// OCSFCloud is the cloud account and region.
type OCSFCloud struct {
	Provider string      `json:"provider"`
	Region   string      `json:"region,omitempty"`
	Account  OCSFAccount `json:"account"`
}

// OCSFAccount is a cloud account; type_id 10 is "AWS Account".
type OCSFAccount struct {
	UID    string `json:"uid"`
	Type   string `json:"type"`
	TypeID int    `json:"type_id"`
}

// OCSFMetadata names the producer and the OCSF profiles the finding uses (cloud: cloud
// and api; host: actor).
type OCSFMetadata struct {
	Version  string      `json:"version"`
	Product  OCSFProduct `json:"product"`
	Profiles []string    `json:"profiles"`
	UID      string      `json:"uid,omitempty"`
}

// OCSFProduct is the reporting product.
type OCSFProduct struct {
	Name       string       `json:"name"`
	VendorName string       `json:"vendor_name"`
	Feature    *OCSFFeature `json:"feature,omitempty"`
}

// OCSFFeature is the product feature that reported.
type OCSFFeature struct {
	Name string `json:"name"`
}

func ms(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

// OCSFSeverityID maps a GuardDuty severity onto OCSF's severity_id: Low 2 (1.0-3.9),
// Medium 3 (4.0-6.9), High 4 (7.0-8.9), Critical 5 (9.0 and above).
func OCSFSeverityID(sev float64) (int, string) {
	switch SeverityLabel(sev) {
	case "Critical":
		return 5, "Critical"
	case "High":
		return 4, "High"
	case "Medium":
		return 3, "Medium"
	}
	return 2, "Low"
}

// OCSF converts f. The activity is Create for a finding seen once, Update once it has
// repeated, and Close when archived; status is New, or Resolved when archived (as
// Security Hub resolves a finding its provider archived).
func OCSF(f detect.Finding) OCSFFinding {
	activity, activityName := OCSFActivityCreate, "Create"
	switch {
	case f.Service.Archived:
		activity, activityName = OCSFActivityClose, "Close"
	case f.Service.Count > 1 || f.UpdatedAt.After(f.CreatedAt):
		activity, activityName = OCSFActivityUpdate, "Update"
	}
	statusID, status := 1, "New"
	if f.Service.Archived {
		statusID, status = 4, "Resolved"
	}
	sevID, sev := OCSFSeverityID(f.Severity)
	o := OCSFFinding{
		ActivityID:   activity,
		ActivityName: activityName,
		CategoryUID:  OCSFCategoryUID,
		CategoryName: "Findings",
		ClassUID:     OCSFClassUID,
		ClassName:    "Detection Finding",
		TypeUID:      OCSFClassUID*100 + activity,
		TypeName:     "Detection Finding: " + activityName,
		SeverityID:   sevID,
		Severity:     sev,
		StatusID:     statusID,
		Status:       status,
		Time:         ms(f.UpdatedAt),
		Count:        f.Service.Count,
		Message:      f.Title,
		FindingInfo: OCSFFindingInfo{
			UID:           f.ID,
			Title:         f.Title,
			Desc:          f.Description,
			Types:         []string{f.Type},
			CreatedTime:   ms(f.CreatedAt),
			ModifiedTime:  ms(f.UpdatedAt),
			FirstSeenTime: ms(f.Service.EventFirstSeen),
			LastSeenTime:  ms(f.Service.EventLastSeen),
			ProductUID:    f.ARN,
		},
		Cloud: OCSFCloud{Provider: "AWS", Region: f.Region, Account: OCSFAccount{UID: f.AccountID, Type: "AWS Account", TypeID: 10}},
		Metadata: OCSFMetadata{
			Version:  OCSFVersion,
			Product:  OCSFProduct{Name: "Phantom", VendorName: "Phantom", Feature: &OCSFFeature{Name: "detector"}},
			Profiles: []string{"cloud"},
			UID:      f.ID,
		},
		Unmapped: map[string]any{
			"guardduty": map[string]any{
				"schemaVersion": f.SchemaVersion,
				"detectorId":    f.Service.DetectorID,
				"resourceRole":  f.Service.ResourceRole,
				"severity":      f.Severity,
			},
		},
	}
	if d := f.Resource.AccessKeyDetails; d != nil {
		u := &OCSFUser{UID: d.PrincipalID, UIDAlt: d.PrincipalARN, Name: d.UserName, Type: d.UserType, CredentialUID: d.AccessKeyID}
		o.Actor = &OCSFActor{User: u}
		o.Metadata.Profiles = append(o.Metadata.Profiles, "host")
		o.Resources = []OCSFResource{{Type: "AwsIamAccessKey", UID: d.AccessKeyID, CloudPartition: f.Partition, Region: f.Region,
			Owner: &OCSFUser{UID: d.PrincipalID, UIDAlt: d.PrincipalARN, Name: d.UserName, Type: d.UserType}}}
	}
	if c := f.Service.Action.AWSAPICallAction; c != nil {
		o.API = &OCSFAPI{Operation: c.API, Service: OCSFAPIService{Name: c.ServiceName}}
		ev := OCSFEvidence{Actor: o.Actor, API: o.API}
		if ip := c.RemoteIPDetails; ip != nil {
			addr := ip.IPAddressV4
			if addr == "" {
				addr = ip.IPAddressV6
			}
			if addr != "" {
				ev.SrcEndpoint = &OCSFEndpoint{IP: addr}
			}
		}
		o.Evidences = []OCSFEvidence{ev}
	}
	return o
}
