package console

import (
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/phantom-perimeter/phantom/internal/arn"
	"github.com/phantom-perimeter/phantom/internal/audit"
	"github.com/phantom-perimeter/phantom/internal/config"
	"github.com/phantom-perimeter/phantom/internal/detect"
	"github.com/phantom-perimeter/phantom/internal/detect/export"
	"github.com/phantom-perimeter/phantom/internal/store"
)

const maxListedFindings = 200

type findingRow struct {
	ID        string
	Type      string
	Title     string
	Severity  string
	SevClass  string
	Principal string
	Count     int
	LastSeen  string
	Archived  bool
}

type findingsData struct {
	Archived string // false, true or all
	Rows     []findingRow
	Risks    []store.RiskLevel
}

// severity is GuardDuty's label: low below 4, medium below 7, high above.
func severity(s float64) (string, string) {
	switch {
	case s >= 7:
		return "High", "sev-high"
	case s >= 4:
		return "Medium", "sev-medium"
	}
	return "Low", "sev-low"
}

func formatSeverity(s float64) string {
	label, _ := severity(s)
	return label + " " + strconv.FormatFloat(s, 'f', 1, 64)
}

// findings lists findings.
func (h *Handler) findings(w http.ResponseWriter, r *http.Request) {
	rq, ok := h.signedIn(w, r, false)
	if !ok {
		return
	}
	det := h.detectorARN(rq.spec)
	if !h.authorize(rq, "ListFindings", check{ActionListFindings, det}, check{ActionGetFindings, det}) {
		return
	}
	d := findingsData{Archived: r.URL.Query().Get("archived")}
	flt := store.FindingFilter{Limit: maxListedFindings}
	switch d.Archived {
	case "true":
		t := true
		flt.Archived = &t
	case "all":
	default:
		d.Archived = "false"
		f := false
		flt.Archived = &f
	}
	recs, err := h.cfg.Store.ListFindings(r.Context(), flt)
	if err != nil {
		h.log.Error("list findings", "error", err)
		h.errorPage(w, r, rq, http.StatusInternalServerError, "Findings unavailable", "The findings could not be read from the store.")
		return
	}
	for _, rec := range recs {
		fr := findingRow{ID: rec.ID, Type: rec.Type, Principal: rec.Principal, Archived: rec.Archived,
			LastSeen: rec.UpdatedAt.UTC().Format("2006-01-02 15:04:05")}
		fr.Severity = formatSeverity(rec.Severity)
		_, fr.SevClass = severity(rec.Severity)
		if f, err := export.FromStore(rec); err == nil {
			fr.Title, fr.Count = f.Title, f.Service.Count
			if !f.Service.EventLastSeen.IsZero() {
				fr.LastSeen = f.Service.EventLastSeen.UTC().Format("2006-01-02 15:04:05")
			}
		}
		d.Rows = append(d.Rows, fr)
	}
	if d.Risks, err = h.cfg.Store.ListRiskLevels(r.Context()); err != nil {
		h.log.Error("list risk levels", "error", err)
	}
	h.render(w, r, http.StatusOK, "findings", rq, "Findings", d)
}

type findingData struct {
	F          detect.Finding
	Severity   string
	SevClass   string
	Principal  string
	AccessKey  string
	API        string
	RemoteIP   string
	ErrorCode  string
	UserAgent  string
	Evidence   []evidenceLink
	Additional []kv
	Role       string // the role whose sessions Revoke would end, "" when none
	Done       string
}

type evidenceLink struct {
	ID   string
	Href string
}

type kv struct{ K, V string }

// validFindingID bounds the {id} path value before it reaches the store.
func validFindingID(id string) bool {
	if id == "" || len(id) > 256 {
		return false
	}
	for _, c := range id {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune("._:-", c)) {
			return false
		}
	}
	return true
}

// finding shows one finding with its evidence.
func (h *Handler) finding(w http.ResponseWriter, r *http.Request) {
	rq, ok := h.signedIn(w, r, false)
	if !ok || !h.authorize(rq, "GetFindings", check{ActionGetFindings, h.detectorARN(rq.spec)}) {
		return
	}
	rec, ok := h.loadFinding(rq)
	if !ok {
		return
	}
	f, err := export.FromStore(rec)
	if err != nil {
		h.errorPage(w, r, rq, http.StatusInternalServerError, "Finding unreadable", err.Error())
		return
	}
	d := findingData{F: f, Principal: export.Principal(f)}
	d.Severity = formatSeverity(f.Severity)
	_, d.SevClass = severity(f.Severity)
	if ak := f.Resource.AccessKeyDetails; ak != nil {
		d.AccessKey = ak.AccessKeyID
	}
	if a := f.Service.Action.AWSAPICallAction; a != nil {
		d.API, d.ErrorCode, d.UserAgent = a.API, a.ErrorCode, a.UserAgent
		if ip := a.RemoteIPDetails; ip != nil {
			d.RemoteIP = ip.IPAddressV4 + ip.IPAddressV6
		}
	}
	for _, id := range f.Service.Evidence {
		d.Evidence = append(d.Evidence, evidenceLink{ID: id, Href: "/decisions?" + url.Values{"eventId": {id}}.Encode()})
	}
	for k, v := range f.Service.AdditionalInfo {
		d.Additional = append(d.Additional, kv{k, compactJSON(v)})
	}
	sortKV(d.Additional)
	if role, ok := roleOf(rq.spec, d.Principal); ok {
		d.Role = role.Name
	}
	switch r.URL.Query().Get("done") {
	case "archived":
		d.Done = "The finding was archived."
	case "unarchived":
		d.Done = "The finding was moved back to current findings."
	case "revoked":
		d.Done = "Every session of role " + d.Role + " issued before now was revoked."
	}
	h.render(w, r, http.StatusOK, "finding", rq, "Finding", d)
}

// loadFinding reads the {id} finding, answering 404 when there is none.
func (h *Handler) loadFinding(rq *request) (store.Finding, bool) {
	id := rq.r.PathValue("id")
	if !validFindingID(id) {
		h.errorPage(rq.w, rq.r, rq, http.StatusNotFound, "No such finding", "There is no finding with this id.")
		return store.Finding{}, false
	}
	rec, err := h.cfg.Store.GetFinding(rq.r.Context(), id)
	if errors.Is(err, store.ErrNotFound) {
		h.errorPage(rq.w, rq.r, rq, http.StatusNotFound, "No such finding", "There is no finding with this id.")
		return store.Finding{}, false
	}
	if err != nil {
		h.log.Error("read finding", "error", err)
		h.errorPage(rq.w, rq.r, rq, http.StatusInternalServerError, "Finding unavailable", "The finding could not be read from the store.")
		return store.Finding{}, false
	}
	return rec, true
}

// roleOf is the role of the spec whose sessions a principal ARN belongs to: an
// assumed-role session's role, or a role ARN. Users have no role to revoke here.
func roleOf(spec *config.Spec, principal string) (*config.Role, bool) {
	switch {
	case strings.HasPrefix(principal, "arn:aws:sts::") && strings.Contains(principal, ":assumed-role/"):
		p, ok := arn.Parse(principal)
		if !ok || p.Kind != "assumed-role" {
			return nil, false
		}
		return spec.Role(p.Name)
	case strings.HasPrefix(principal, "arn:aws:iam::") && strings.Contains(principal, ":role/"):
		return spec.RoleByARN(principal)
	}
	return nil, false
}

// archive archives or unarchives a finding.
func (h *Handler) archive(w http.ResponseWriter, r *http.Request) {
	rq, ok := h.signedIn(w, r, false)
	if !ok {
		return
	}
	archive := strings.HasSuffix(r.URL.Path, "/archive")
	name, action, done := "ArchiveFindings", ActionArchiveFindings, "archived"
	if !archive {
		name, action, done = "UnarchiveFindings", ActionUnarchiveFindings, "unarchived"
	}
	if !h.checkCSRF(rq, name) || !h.authorize(rq, name, check{action, h.detectorARN(rq.spec)}) {
		return
	}
	rec, ok := h.loadFinding(rq)
	if !ok {
		return
	}
	ev := h.event(r, rq.now, name)
	h.identityOf(ev, rq.p)
	ev.ReadOnly = false
	ev.RequestParameters = map[string]any{"detectorId": h.cfg.DetectorID, "findingIds": []string{rec.ID}}
	if !h.record(rq, ev) {
		return
	}
	if err := h.cfg.Store.ArchiveFinding(r.Context(), rec.ID, archive); err != nil {
		h.log.Error("archive finding failed after it was audited", "finding_id", rec.ID, "error", err)
		h.errorPage(w, r, rq, http.StatusInternalServerError, "Not archived", "The store refused the change.")
		return
	}
	http.Redirect(w, r, "/findings/"+url.PathEscape(rec.ID)+"?done="+done, http.StatusSeeOther)
}

// revoke revokes every session of the finding's role issued before now.
func (h *Handler) revoke(w http.ResponseWriter, r *http.Request) {
	rq, ok := h.signedIn(w, r, false)
	if !ok || !h.checkCSRF(rq, "RevokeSessions") {
		return
	}
	rec, ok := h.loadFinding(rq)
	if !ok {
		return
	}
	principal := rec.Principal
	if f, err := export.FromStore(rec); err == nil && export.Principal(f) != "" {
		principal = export.Principal(f)
	}
	role, ok := roleOf(rq.spec, principal)
	if !ok {
		h.errorPage(w, r, rq, http.StatusBadRequest, "Nothing to revoke",
			"The finding's principal is not a session of a role in the perimeter spec; disable a user's access key with phantom iam update-access-key.")
		return
	}
	if !h.authorize(rq, "RevokeSessions", check{ActionRevokeSessions, role.ARN}) {
		return
	}
	ev := h.event(r, rq.now, "RevokeSessions")
	h.identityOf(ev, rq.p)
	ev.RequestParameters = map[string]any{"roleName": role.Name, "findingId": rec.ID, "tokenIssueTimeBefore": rq.now.UTC().Format(time.RFC3339)}
	if !h.record(rq, ev) {
		return
	}
	if _, err := h.cfg.Identity.RevokeSessions(r.Context(), role.Name); err != nil {
		h.log.Error("revoke sessions failed after it was audited", "role", role.Name, "error", err)
		h.errorPage(w, r, rq, http.StatusInternalServerError, "Not revoked", "The revocation could not be stored.")
		return
	}
	http.Redirect(w, r, "/findings/"+url.PathEscape(rec.ID)+"?done=revoked", http.StatusSeeOther)
}

// record audits an action before it takes effect; an action that cannot be audited is
// refused.
func (h *Handler) record(rq *request, ev *audit.Event) bool {
	if err := h.cfg.Auditor.Record(rq.r.Context(), ev); err != nil {
		h.log.Error("console could not audit an action; refusing it", "event", ev.EventName, "error", err)
		h.errorPage(rq.w, rq.r, rq, http.StatusInternalServerError, "Refused", "The action could not be recorded in the audit log, so it was not carried out.")
		return false
	}
	return true
}
