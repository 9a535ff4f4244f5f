package export

import (
	"encoding/json"
	"fmt"

	"github.com/phantom-perimeter/phantom/internal/detect"
	"github.com/phantom-perimeter/phantom/internal/store"
)

// ToStore turns a finding into the store's record: its GuardDuty JSON document and the
// fields listing filters on (the principal is AccessKeyDetails.PrincipalARN).
func ToStore(f detect.Finding) (store.Finding, error) {
	doc, err := json.Marshal(f)
	if err != nil {
		return store.Finding{}, fmt.Errorf("encode finding %s: %w", f.ID, err)
	}
	return store.Finding{
		ID:        f.ID,
		Type:      f.Type,
		Severity:  f.Severity,
		Principal: Principal(f),
		Archived:  f.Service.Archived,
		CreatedAt: f.CreatedAt,
		UpdatedAt: f.UpdatedAt,
		Document:  doc,
	}, nil
}

// FromStore decodes a stored finding. The record's Archived column is authoritative
// (an analyst archives without rewriting the document), so it overrides the document's.
func FromStore(rec store.Finding) (detect.Finding, error) {
	var f detect.Finding
	if err := json.Unmarshal(rec.Document, &f); err != nil {
		return detect.Finding{}, fmt.Errorf("decode stored finding %s: %w", rec.ID, err)
	}
	if f.ID != rec.ID {
		return detect.Finding{}, fmt.Errorf("decode stored finding %s: document has id %q", rec.ID, f.ID)
	}
	f.Service.Archived = rec.Archived
	return f, nil
}

// Principal returns the ARN of the principal a finding is about, or "".
func Principal(f detect.Finding) string {
	if d := f.Resource.AccessKeyDetails; d != nil {
		return d.PrincipalARN
	}
	return ""
}
