package findingsapi

import (
	"errors"
	"fmt"
	"math"
	"net/url"
	"strconv"
	"strings"

	"github.com/phantom-perimeter/phantom/internal/detect/export"
	"github.com/phantom-perimeter/phantom/internal/store"
)

// Operation is an API operation, named as GuardDuty's actions are (and as IAM policies
// name them: guardduty:<Operation>).
type Operation string

const (
	OpListFindings      Operation = "ListFindings"
	OpGetFindings       Operation = "GetFindings"
	OpArchiveFindings   Operation = "ArchiveFindings"
	OpUnarchiveFindings Operation = "UnarchiveFindings"
)

// Route is a parsed request target.
type Route struct {
	Op Operation
	ID string // the finding, except for ListFindings
	// GuardDuty is set for GuardDuty's own routes (/detector/{id}/findings...), whose
	// parameters are in a JSON body; Detector is the id in their path.
	GuardDuty bool
	Detector  string
}

// Limits of the list query.
const (
	DefaultLimit = 50
	MaxLimit     = 1000
	maxIDLen     = 128
	maxTypeLen   = 256
)

// ParsePath maps method and escaped path onto an operation:
//
//	GET  /findings                 ListFindings
//	GET  /findings/{id}            GetFindings
//	POST /findings/{id}/archive    ArchiveFindings
//	POST /findings/{id}/unarchive  UnarchiveFindings
//
// Ids are 1 to 128 characters of [A-Za-z0-9._:-]; percent-escapes, empty or dot
// segments and a trailing slash are refused rather than normalized, so one finding has
// exactly one path. A known path with another method is errMethod. GuardDuty's own
// routes are accepted too (see guardduty.go).
func ParsePath(method, escapedPath string) (Route, error) {
	if r, ok, err := parseDetectorPath(method, escapedPath); ok {
		return r, err
	}
	rest, ok := strings.CutPrefix(escapedPath, "/findings")
	if !ok {
		return Route{}, errNoRoute
	}
	if rest == "" {
		return want(method, "GET", Route{Op: OpListFindings})
	}
	rest, ok = strings.CutPrefix(rest, "/")
	if !ok {
		return Route{}, errNoRoute
	}
	id, action, hasAction := strings.Cut(rest, "/")
	if !validID(id) {
		return Route{}, errNoRoute
	}
	if !hasAction {
		return want(method, "GET", Route{Op: OpGetFindings, ID: id})
	}
	switch action {
	case "archive":
		return want(method, "POST", Route{Op: OpArchiveFindings, ID: id})
	case "unarchive":
		return want(method, "POST", Route{Op: OpUnarchiveFindings, ID: id})
	}
	return Route{}, errNoRoute
}

var (
	errNoRoute = errors.New("no such resource")
	errMethod  = errors.New("method not allowed")
)

func want(method, allowed string, r Route) (Route, error) {
	if method != allowed {
		return r, errMethod
	}
	return r, nil
}

func validID(id string) bool {
	if id == "" || len(id) > maxIDLen || id == "." || id == ".." {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '.', c == '_', c == ':', c == '-':
		default:
			return false
		}
	}
	return true
}

// Query is a parsed list query.
type Query struct {
	Filter store.FindingFilter
	Format string
}

// presignParams are SigV4's query parameters, which a presigned request carries.
var presignParams = map[string]bool{
	"X-Amz-Algorithm": true, "X-Amz-Credential": true, "X-Amz-Date": true, "X-Amz-Expires": true,
	"X-Amz-SignedHeaders": true, "X-Amz-Signature": true, "X-Amz-Security-Token": true,
}

// ParseQuery reads a request's query:
//
//	archived=false|true|all  current findings (default), archived ones, or both
//	type=T                   one finding type (exact)
//	minSeverity=N            severity at least N (0 to 10)
//	limit=N                  1 to 1000, default 50
//	format=guardduty|ocsf|asff
//
// Each parameter may appear once; unknown parameters are refused (a misspelt filter
// must not silently widen the answer). For GetFindings only format is accepted.
func ParseQuery(op Operation, rawQuery string) (Query, error) {
	q := Query{Format: export.FormatGuardDuty, Filter: store.FindingFilter{Limit: DefaultLimit}}
	no := false
	q.Filter.Archived = &no
	vals, err := url.ParseQuery(rawQuery)
	if err != nil {
		return Query{}, fmt.Errorf("malformed query: %w", err)
	}
	for k, vs := range vals {
		if presignParams[k] {
			continue
		}
		if len(vs) != 1 {
			return Query{}, fmt.Errorf("parameter %s is given %d times", k, len(vs))
		}
		v := vs[0]
		if k != "format" && op != OpListFindings {
			return Query{}, fmt.Errorf("unknown parameter %q", k)
		}
		switch k {
		case "format":
			f, err := export.ParseFormat(v)
			if err != nil || v == "" {
				return Query{}, fmt.Errorf("format %q: want guardduty, ocsf or asff", v)
			}
			q.Format = f
		case "archived":
			switch v {
			case "false":
			case "true":
				yes := true
				q.Filter.Archived = &yes
			case "all":
				q.Filter.Archived = nil
			default:
				return Query{}, fmt.Errorf("archived %q: want true, false or all", v)
			}
		case "type":
			if v == "" || len(v) > maxTypeLen || strings.ContainsFunc(v, func(r rune) bool { return r <= ' ' || r > '~' }) {
				return Query{}, fmt.Errorf("type %q: want a finding type of 1 to %d printable characters", v, maxTypeLen)
			}
			q.Filter.Type = v
		case "minSeverity":
			f, err := strconv.ParseFloat(v, 64)
			if err != nil || math.IsNaN(f) || f < 0 || f > 10 {
				return Query{}, fmt.Errorf("minSeverity %q: want a number from 0 to 10", v)
			}
			q.Filter.MinSeverity = f
		case "limit":
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > MaxLimit {
				return Query{}, fmt.Errorf("limit %q: want 1 to %d", v, MaxLimit)
			}
			q.Filter.Limit = n
		default:
			return Query{}, fmt.Errorf("unknown parameter %q", k)
		}
	}
	return q, nil
}
