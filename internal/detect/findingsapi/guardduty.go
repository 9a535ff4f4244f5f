package findingsapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/phantom-perimeter/phantom/internal/detect"
	"github.com/phantom-perimeter/phantom/internal/store"
)

// GuardDuty's own REST routes (GuardDuty API Reference: ListFindings, GetFindings,
// ArchiveFindings, UnarchiveFindings), so `aws guardduty ... --endpoint-url` and the
// SDKs work against Phantom:
//
//	POST /detector/{detectorId}/findings            ListFindings  {findingCriteria, sortCriteria, maxResults, nextToken}
//	POST /detector/{detectorId}/findings/get        GetFindings   {findingIds, sortCriteria}
//	POST /detector/{detectorId}/findings/archive    ArchiveFindings   {findingIds}
//	POST /detector/{detectorId}/findings/unarchive  UnarchiveFindings {findingIds}
//
// Supported criteria: service.archived (eq/neq "true"/"false"), type and id (eq/neq,
// equals/notEquals), severity (gt/gte/lt/lte and the long forms). Others are refused, not
// ignored: a filter silently dropped would widen the answer.

// parseDetectorPath maps a GuardDuty path; ok false when it is not one.
func parseDetectorPath(method, p string) (Route, bool, error) {
	rest, ok := strings.CutPrefix(p, "/detector/")
	if !ok {
		return Route{}, false, nil
	}
	det, rest, ok := strings.Cut(rest, "/")
	if !ok || !validID(det) {
		return Route{}, true, errNoRoute
	}
	var op Operation
	switch rest {
	case "findings":
		op = OpListFindings
	case "findings/get":
		op = OpGetFindings
	case "findings/archive":
		op = OpArchiveFindings
	case "findings/unarchive":
		op = OpUnarchiveFindings
	default:
		return Route{}, true, errNoRoute
	}
	r, err := want(method, "POST", Route{Op: op, Detector: det, GuardDuty: true})
	return r, true, err
}

// gdCondition is GuardDuty's Condition.
type gdCondition struct {
	Eq                 []string `json:"eq"`
	Neq                []string `json:"neq"`
	Equals             []string `json:"equals"`
	NotEquals          []string `json:"notEquals"`
	Gt                 *float64 `json:"gt"`
	Gte                *float64 `json:"gte"`
	Lt                 *float64 `json:"lt"`
	Lte                *float64 `json:"lte"`
	GreaterThan        *float64 `json:"greaterThan"`
	GreaterThanOrEqual *float64 `json:"greaterThanOrEqual"`
	LessThan           *float64 `json:"lessThan"`
	LessThanOrEqual    *float64 `json:"lessThanOrEqual"`
	Matches            []string `json:"matches"`
	NotMatches         []string `json:"notMatches"`
}

type gdSort struct {
	AttributeName string `json:"attributeName"`
	OrderBy       string `json:"orderBy"`
}

type gdListRequest struct {
	FindingCriteria *struct {
		Criterion map[string]gdCondition `json:"criterion"`
	} `json:"findingCriteria"`
	SortCriteria *gdSort `json:"sortCriteria"`
	MaxResults   int     `json:"maxResults"`
	NextToken    string  `json:"nextToken"`
}

type gdIDsRequest struct {
	FindingIDs   []string `json:"findingIds"`
	SortCriteria *gdSort  `json:"sortCriteria"`
}

// GuardDutyList is a parsed ListFindings request.
type GuardDutyList struct {
	Filter store.FindingFilter // what the store can select
	keep   []func(detect.Finding) bool
	sort   gdSort
	Max    int
	Offset int
}

func decodeStrict(body []byte, v any) error {
	if len(bytes.TrimSpace(body)) == 0 {
		return nil
	}
	d := json.NewDecoder(bytes.NewReader(body))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		return fmt.Errorf("malformed request body: %w", err)
	}
	if d.More() {
		return errors.New("malformed request body: data after the JSON object")
	}
	return nil
}

// ParseGuardDutyList reads a ListFindings body.
func ParseGuardDutyList(body []byte) (GuardDutyList, error) {
	var req gdListRequest
	if err := decodeStrict(body, &req); err != nil {
		return GuardDutyList{}, err
	}
	l := GuardDutyList{Max: 50, sort: gdSort{AttributeName: "updatedAt", OrderBy: "DESC"}}
	switch {
	case req.MaxResults == 0:
	case req.MaxResults < 1 || req.MaxResults > 50:
		return GuardDutyList{}, fmt.Errorf("maxResults %d: want 1 to 50", req.MaxResults)
	default:
		l.Max = req.MaxResults
	}
	if req.NextToken != "" {
		n, err := strconv.Atoi(req.NextToken)
		if err != nil || n < 0 || n > 1<<20 {
			return GuardDutyList{}, errors.New("nextToken is not one this API returned")
		}
		l.Offset = n
	}
	if s := req.SortCriteria; s != nil {
		if err := checkSort(s); err != nil {
			return GuardDutyList{}, err
		}
		l.sort = *s
	}
	if req.FindingCriteria == nil {
		return l, nil
	}
	for name, c := range req.FindingCriteria.Criterion {
		if len(c.Matches) > 0 || len(c.NotMatches) > 0 {
			return GuardDutyList{}, fmt.Errorf("criterion %s: matches and notMatches are not supported", name)
		}
		eq := append(slices.Clone(c.Eq), c.Equals...)
		neq := append(slices.Clone(c.Neq), c.NotEquals...)
		hasRange := c.Gt != nil || c.Gte != nil || c.Lt != nil || c.Lte != nil || c.GreaterThan != nil ||
			c.GreaterThanOrEqual != nil || c.LessThan != nil || c.LessThanOrEqual != nil
		switch name {
		case "service.archived":
			if hasRange {
				return GuardDutyList{}, errors.New("criterion service.archived: use eq or neq")
			}
			for _, v := range append(slices.Clone(eq), neq...) {
				if v != "true" && v != "false" {
					return GuardDutyList{}, fmt.Errorf("criterion service.archived: %q is not true or false", v)
				}
			}
			if len(eq) > 0 {
				want := eq
				l.keep = append(l.keep, func(f detect.Finding) bool { return slices.Contains(want, strconv.FormatBool(f.Service.Archived)) })
			}
			if len(neq) > 0 {
				not := neq
				l.keep = append(l.keep, func(f detect.Finding) bool { return !slices.Contains(not, strconv.FormatBool(f.Service.Archived)) })
			}
		case "type", "id":
			if hasRange {
				return GuardDutyList{}, fmt.Errorf("criterion %s: use eq or neq", name)
			}
			get := func(f detect.Finding) string { return f.Type }
			if name == "id" {
				get = func(f detect.Finding) string { return f.ID }
			}
			if len(eq) == 1 && name == "type" {
				l.Filter.Type = eq[0]
			}
			if len(eq) > 0 {
				want := eq
				l.keep = append(l.keep, func(f detect.Finding) bool { return slices.Contains(want, get(f)) })
			}
			if len(neq) > 0 {
				not := neq
				l.keep = append(l.keep, func(f detect.Finding) bool { return !slices.Contains(not, get(f)) })
			}
		case "severity":
			if len(eq) > 0 || len(neq) > 0 {
				return GuardDutyList{}, errors.New("criterion severity: use gt, gte, lt or lte")
			}
			bound := func(a, b *float64) *float64 {
				if a != nil {
					return a
				}
				return b
			}
			gt, gte := bound(c.Gt, c.GreaterThan), bound(c.Gte, c.GreaterThanOrEqual)
			lt, lte := bound(c.Lt, c.LessThan), bound(c.Lte, c.LessThanOrEqual)
			if gte != nil {
				l.Filter.MinSeverity = max(l.Filter.MinSeverity, *gte)
			}
			l.keep = append(l.keep, func(f detect.Finding) bool {
				return (gt == nil || f.Severity > *gt) && (gte == nil || f.Severity >= *gte) &&
					(lt == nil || f.Severity < *lt) && (lte == nil || f.Severity <= *lte)
			})
		default:
			return GuardDutyList{}, fmt.Errorf("criterion %q is not supported (use service.archived, type, id or severity)", name)
		}
	}
	return l, nil
}

func checkSort(s *gdSort) error {
	switch s.AttributeName {
	case "", "updatedAt", "createdAt", "severity", "type", "id", "service.count":
	default:
		return fmt.Errorf("sortCriteria attributeName %q is not supported", s.AttributeName)
	}
	switch s.OrderBy {
	case "", "ASC", "DESC":
	default:
		return fmt.Errorf("sortCriteria orderBy %q: want ASC or DESC", s.OrderBy)
	}
	return nil
}

func sortFindings(fs []detect.Finding, s gdSort) {
	if s.AttributeName == "" {
		s.AttributeName = "updatedAt"
	}
	less := func(a, b detect.Finding) int {
		switch s.AttributeName {
		case "createdAt":
			return a.CreatedAt.Compare(b.CreatedAt)
		case "severity":
			return cmpFloat(a.Severity, b.Severity)
		case "type":
			return strings.Compare(a.Type, b.Type)
		case "id":
			return strings.Compare(a.ID, b.ID)
		case "service.count":
			return a.Service.Count - b.Service.Count
		}
		return a.UpdatedAt.Compare(b.UpdatedAt)
	}
	sort.SliceStable(fs, func(i, j int) bool {
		c := less(fs[i], fs[j])
		if c == 0 {
			c = strings.Compare(fs[i].ID, fs[j].ID)
		}
		if s.OrderBy == "ASC" {
			return c < 0
		}
		return c > 0
	})
}

func cmpFloat(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// ParseFindingIDs reads the findingIds (1 to 50 valid ids) of GetFindings, ArchiveFindings
// and UnarchiveFindings.
func ParseFindingIDs(body []byte) ([]string, *gdSort, error) {
	var req gdIDsRequest
	if err := decodeStrict(body, &req); err != nil {
		return nil, nil, err
	}
	if len(req.FindingIDs) < 1 || len(req.FindingIDs) > 50 {
		return nil, nil, fmt.Errorf("findingIds has %d members: want 1 to 50", len(req.FindingIDs))
	}
	for _, id := range req.FindingIDs {
		if !validID(id) {
			return nil, nil, fmt.Errorf("finding id %q is not valid", id)
		}
	}
	if req.SortCriteria != nil {
		if err := checkSort(req.SortCriteria); err != nil {
			return nil, nil, err
		}
	}
	return req.FindingIDs, req.SortCriteria, nil
}
