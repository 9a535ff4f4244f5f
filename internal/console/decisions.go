package console

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/phantom-perimeter/phantom/internal/audit"
	"github.com/phantom-perimeter/phantom/internal/policy"
)

// Filter selects decisions on /decisions. The zero value selects everything.
type Filter struct {
	Principal string // case-insensitive substring of the caller's ARN or its role's
	API       string // requestParameters.apiId
	Decision  string // "", "allowed" (no errorCode) or "denied"
	ErrorCode string
	Endpoint  string // vpcEndpointId
	Source    string // eventSource
	EventID   string
	From, To  time.Time // zero: open
	Limit     int
}

const (
	defaultDecisionLimit = 100
	maxDecisionLimit     = 500
	maxFilterField       = 256
)

// Time layouts the filter accepts: RFC 3339, and what an <input type=datetime-local>
// sends (read as UTC).
var filterTimeLayouts = []string{time.RFC3339Nano, "2006-01-02T15:04:05", "2006-01-02T15:04"}

// ParseFilter reads a decisions filter from a query string. Every field is bounded and
// printable; unknown parameters are ignored (the page's own links carry none).
func ParseFilter(q url.Values) (Filter, error) {
	var f Filter
	for _, fld := range []struct {
		name string
		dst  *string
	}{
		{"principal", &f.Principal}, {"api", &f.API}, {"decision", &f.Decision}, {"errorCode", &f.ErrorCode},
		{"endpoint", &f.Endpoint}, {"source", &f.Source}, {"eventId", &f.EventID},
	} {
		v := strings.TrimSpace(q.Get(fld.name))
		if err := printable(v, maxFilterField); err != nil {
			return Filter{}, fmt.Errorf("%s: %w", fld.name, err)
		}
		*fld.dst = v
	}
	switch f.Decision {
	case "", "allowed", "denied":
	default:
		return Filter{}, errors.New(`decision: use "allowed" or "denied"`)
	}
	for _, t := range []struct {
		name string
		dst  *time.Time
	}{{"from", &f.From}, {"to", &f.To}} {
		v := strings.TrimSpace(q.Get(t.name))
		if v == "" {
			continue
		}
		if len(v) > 64 {
			return Filter{}, fmt.Errorf("%s: too long", t.name)
		}
		var err error
		for _, layout := range filterTimeLayouts {
			var tm time.Time
			if tm, err = time.Parse(layout, v); err == nil {
				*t.dst = tm.UTC()
				break
			}
		}
		if err != nil {
			return Filter{}, fmt.Errorf("%s: %q is not a time (use 2006-01-02T15:04:05Z)", t.name, v)
		}
	}
	if !f.From.IsZero() && !f.To.IsZero() && f.To.Before(f.From) {
		return Filter{}, errors.New("to is before from")
	}
	f.Limit = defaultDecisionLimit
	if v := strings.TrimSpace(q.Get("limit")); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxDecisionLimit {
			return Filter{}, fmt.Errorf("limit: use a number from 1 to %d", maxDecisionLimit)
		}
		f.Limit = n
	}
	return f, nil
}

// printable checks a form value: valid UTF-8, no control characters, at most n bytes.
func printable(s string, n int) error {
	if len(s) > n {
		return fmt.Errorf("longer than %d bytes", n)
	}
	if !utf8.ValidString(s) {
		return errors.New("not valid UTF-8")
	}
	for _, r := range s {
		if unicode.IsControl(r) {
			return errors.New("holds a control character")
		}
	}
	return nil
}

// Query is the filter as a query string, for links and the live refresh.
func (f Filter) Query() string {
	q := url.Values{}
	set := func(k, v string) {
		if v != "" {
			q.Set(k, v)
		}
	}
	set("principal", f.Principal)
	set("api", f.API)
	set("decision", f.Decision)
	set("errorCode", f.ErrorCode)
	set("endpoint", f.Endpoint)
	set("source", f.Source)
	set("eventId", f.EventID)
	if !f.From.IsZero() {
		q.Set("from", f.From.Format(time.RFC3339Nano))
	}
	if !f.To.IsZero() {
		q.Set("to", f.To.Format(time.RFC3339Nano))
	}
	if f.Limit != 0 && f.Limit != defaultDecisionLimit {
		q.Set("limit", strconv.Itoa(f.Limit))
	}
	return q.Encode()
}

// match reports whether the filter selects ev.
func (f Filter) match(ev *audit.Event) bool {
	if f.Principal != "" {
		want := strings.ToLower(f.Principal)
		arn := strings.ToLower(ev.UserIdentity.ARN)
		issuer := ""
		if sc := ev.UserIdentity.SessionContext; sc != nil && sc.SessionIssuer != nil {
			issuer = strings.ToLower(sc.SessionIssuer.ARN)
		}
		if !strings.Contains(arn, want) && !strings.Contains(issuer, want) {
			return false
		}
	}
	if f.API != "" && param(ev, "apiId") != f.API {
		return false
	}
	switch f.Decision {
	case "allowed":
		if ev.ErrorCode != "" {
			return false
		}
	case "denied":
		if ev.ErrorCode == "" {
			return false
		}
	}
	switch {
	case f.ErrorCode != "" && ev.ErrorCode != f.ErrorCode,
		f.Endpoint != "" && ev.VPCEndpointID != f.Endpoint,
		f.Source != "" && ev.EventSource != f.Source,
		f.EventID != "" && ev.EventID != f.EventID,
		!f.From.IsZero() && ev.EventTime.Before(f.From),
		!f.To.IsZero() && ev.EventTime.After(f.To):
		return false
	}
	return true
}

func param(ev *audit.Event, k string) string {
	s, _ := ev.RequestParameters[k].(string)
	return s
}

// decisionRow is one event as the page and its JSON show it.
type decisionRow struct {
	Time      string `json:"time"`
	Chain     string `json:"chain"`
	Source    string `json:"source"`
	Name      string `json:"name"`
	Principal string `json:"principal"`
	SourceIP  string `json:"sourceIp"`
	Target    string `json:"target"`
	API       string `json:"api"`
	Endpoint  string `json:"endpoint"`
	Decision  string `json:"decision"`
	ErrorCode string `json:"errorCode"`
	EventID   string `json:"eventId"`
}

func row(e tailEvent) decisionRow {
	ev := e.ev
	r := decisionRow{
		Time:      ev.EventTime.UTC().Format("2006-01-02 15:04:05.000"),
		Chain:     e.chain,
		Source:    strings.TrimSuffix(ev.EventSource, ".amazonaws.com"),
		Name:      ev.EventName,
		Principal: ev.UserIdentity.ARN,
		SourceIP:  ev.SourceIPAddress,
		API:       param(ev, "apiId"),
		Endpoint:  ev.VPCEndpointID,
		Decision:  "allowed",
		ErrorCode: ev.ErrorCode,
		EventID:   ev.EventID,
	}
	if r.Principal == "" {
		r.Principal = "anonymous"
		if ev.UserIdentity.AccessKeyID != "" {
			r.Principal = "key " + ev.UserIdentity.AccessKeyID
		}
	}
	if ev.ErrorCode != "" {
		r.Decision = "denied"
	}
	switch {
	case param(ev, "path") != "":
		r.Target = param(ev, "httpMethod") + " " + param(ev, "stage") + param(ev, "path")
	case param(ev, "host") != "":
		r.Target = param(ev, "host")
		if p, ok := ev.RequestParameters["port"].(float64); ok {
			r.Target += ":" + strconv.Itoa(int(p))
		}
	case param(ev, "roleArn") != "":
		r.Target = param(ev, "roleArn")
	}
	return r
}

// selectRows applies the filter to the tail, newest first.
func (h *Handler) selectRows(f Filter, now time.Time) ([]decisionRow, []string, []string, int) {
	evs, errs := h.tail.snapshot(now)
	var rows []decisionRow
	sources := map[string]bool{}
	for _, e := range evs {
		sources[e.ev.EventSource] = true
		if len(rows) < f.Limit && f.match(e.ev) {
			rows = append(rows, row(e))
		}
	}
	var srcs []string
	for s := range sources {
		srcs = append(srcs, s)
	}
	slices.Sort(srcs)
	return rows, errs, srcs, len(evs)
}

type decisionsData struct {
	Filter      Filter
	FilterError string
	Query       string
	Rows        []decisionRow
	Errors      []string
	Sources     []string
	APIs        []string
	Endpoints   []string
	Kept        int
	FromValue   string
	ToValue     string
}

// decisions is the live decisions page.
func (h *Handler) decisions(w http.ResponseWriter, r *http.Request) {
	rq, ok := h.signedIn(w, r, false)
	if !ok || !h.authorize(rq, "LookupEvents", check{ActionLookupEvents, "*"}) {
		return
	}
	d := decisionsData{}
	f, err := ParseFilter(r.URL.Query())
	status := http.StatusOK
	if err != nil {
		d.FilterError = err.Error()
		status = http.StatusBadRequest
		f = Filter{Limit: defaultDecisionLimit}
	}
	d.Filter, d.Query = f, f.Query()
	if !f.From.IsZero() {
		d.FromValue = f.From.Format("2006-01-02T15:04:05")
	}
	if !f.To.IsZero() {
		d.ToValue = f.To.Format("2006-01-02T15:04:05")
	}
	d.Rows, d.Errors, d.Sources, d.Kept = h.selectRows(f, rq.now)
	for _, a := range rq.spec.APIs {
		d.APIs = append(d.APIs, a.ID)
	}
	for _, e := range rq.spec.Endpoints {
		d.Endpoints = append(d.Endpoints, e.ID)
	}
	h.render(w, r, status, "decisions", rq, "Decisions", d)
}

// decisionsJSON is what the decisions page polls for its live refresh.
func (h *Handler) decisionsJSON(w http.ResponseWriter, r *http.Request) {
	rq, ok := h.signedIn(w, r, true)
	if !ok {
		return
	}
	w.Header().Set("Content-Type", "application/json")
	if d := h.decide(rq, ActionLookupEvents, "*"); d.Effect != policy.Allow {
		w.WriteHeader(http.StatusForbidden)
		w.Write([]byte(`{"error":"access denied"}`))
		return
	}
	f, err := ParseFilter(r.URL.Query())
	if err != nil {
		w.WriteHeader(http.StatusBadRequest)
		json.NewEncoder(w).Encode(map[string]string{"error": err.Error()})
		return
	}
	rows, errs, _, kept := h.selectRows(f, rq.now)
	if rows == nil {
		rows = []decisionRow{}
	}
	json.NewEncoder(w).Encode(map[string]any{"events": rows, "errors": errs, "kept": kept})
}
