// Package simulate runs policy simulation cases through the policy engine: it owns the
// case-file format of `phantom policy simulate` (one case or a JSON array of cases, each
// a set of typed policy documents and one request), checks every case before any is
// run, and shapes the engine's decisions as results. It does not evaluate anything
// itself: decisions come from policy.Set.Evaluate, exactly as the gateway gets them.
package simulate

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"

	"github.com/phantom-perimeter/phantom/internal/policy"
)

// Case is one simulation: the policies that apply and the request to decide.
type Case struct {
	Policies []Policy `json:"policies"`
	Request  Request  `json:"request"`
}

// Policy is one policy of a case; its index in Case.Policies is the index results use.
type Policy struct {
	Type     string          `json:"type"`     // identity|resource|boundary|session|scp|endpoint
	Document json.RawMessage `json:"document"` // the policy JSON, or a JSON string holding it (as the AWS CLI takes policies)
}

// Request is the request to decide. An empty Principal is an anonymous caller.
type Request struct {
	Principal       string                     `json:"principal"`
	Action          string                     `json:"action"`
	Resource        string                     `json:"resource"`
	ResourceAccount string                     `json:"resourceAccount"`
	Context         map[string]json.RawMessage `json:"context"`
}

// Result is the decision for one case, in the shape the CLI prints.
type Result struct {
	Decision string  `json:"decision"` // Allow, ExplicitDeny or ImplicitDeny
	Matched  []Match `json:"matched"`  // the statements that decided; never null
	Reason   string  `json:"reason,omitempty"`
}

// Match names a deciding statement: the policy's index in the case and the statement's
// Sid, or its index as a decimal string when it has none.
type Match struct {
	Policy    int    `json:"policy"`
	Statement string `json:"statement"`
}

// CaseError reports an unusable case. Index is the case's position in the file (0 for
// a file holding a single case); -1 when the file as a whole is unusable.
type CaseError struct {
	Index int
	Msg   string
}

func (e *CaseError) Error() string {
	if e.Index < 0 {
		return e.Msg
	}
	return fmt.Sprintf("case %d: %s", e.Index, e.Msg)
}

// Prepared is a checked case: its policies compiled into a set and its request built.
type Prepared struct {
	set *policy.Set
	req *policy.Request
}

// Load reads a case file (one case object, or an array of them) and prepares every
// case. The first unusable case stops it with a *CaseError naming the case, so a file
// is either run whole or not at all.
func Load(data []byte) ([]*Prepared, error) {
	trimmed := bytes.TrimLeft(data, " \t\r\n")
	if len(trimmed) == 0 {
		return nil, &CaseError{Index: -1, Msg: "input is empty: want a case object or an array of cases"}
	}
	var raws []json.RawMessage
	if trimmed[0] == '[' {
		if err := json.Unmarshal(data, &raws); err != nil {
			return nil, &CaseError{Index: -1, Msg: "input is not a JSON array of cases: " + jsonErr(data, err)}
		}
		if len(raws) == 0 {
			return nil, &CaseError{Index: -1, Msg: "input is an empty array: want at least one case"}
		}
	} else {
		raws = []json.RawMessage{data}
	}
	out := make([]*Prepared, 0, len(raws))
	cursor := 0
	for i, raw := range raws {
		// Locate the case in the file so policy errors can name file lines. The
		// elements of an array appear in order with only commas and whitespace between
		// them, so the first occurrence after the previous element is this one.
		base := -1
		if j := bytes.Index(data[cursor:], raw); j >= 0 {
			base = cursor + j
			cursor = base + len(raw)
		}
		p, err := prepare(raw, locator{file: data, base: base})
		if err != nil {
			return nil, &CaseError{Index: i, Msg: err.Error()}
		}
		out = append(out, p)
	}
	return out, nil
}

// Run evaluates prepared cases in order.
func Run(cases []*Prepared) []Result {
	out := make([]Result, len(cases))
	for i, c := range cases {
		out[i] = c.Run()
	}
	return out
}

// Run evaluates one prepared case.
func (p *Prepared) Run() Result {
	d := p.set.Evaluate(p.req)
	r := Result{Decision: d.Effect.String(), Matched: make([]Match, 0, len(d.Matched)), Reason: d.Reason}
	var by []string
	for _, m := range d.Matched {
		r.Matched = append(r.Matched, Match{Policy: m.Policy, Statement: m.Statement})
		by = append(by, fmt.Sprintf("policy %d statement %s", m.Policy, m.Statement))
	}
	// The engine explains denies; an Allow is explained by the statements that allowed it.
	if r.Reason == "" && d.Effect == policy.Allow {
		r.Reason = "allowed by " + strings.Join(by, ", ")
	}
	return r
}

// locator maps a position inside a case back to the case file.
type locator struct {
	file []byte
	base int // offset of the case in file
}

// at converts a 1-based line and rune column inside the value found at off (relative
// to the case) to a line and column of the file.
func (l locator) at(off, line, col int) (int, int) {
	start := l.base + off
	fileLine := 1 + bytes.Count(l.file[:start], []byte("\n"))
	if line > 1 {
		return fileLine + line - 1, col
	}
	lineStart := bytes.LastIndexByte(l.file[:start], '\n') + 1
	return fileLine, utf8.RuneCount(l.file[lineStart:start]) + col
}

func prepare(raw json.RawMessage, loc locator) (*Prepared, error) {
	var c Case
	// Unknown fields are errors: a misspelt "resourceAcount" or "contexts" silently
	// ignored would simulate a different request than the one the author wrote.
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		// Positions are left out: within an array they would count from the case, not the file.
		return nil, errors.New(jsonErr(nil, err))
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("unexpected data after the case object")
	}
	if c.Policies == nil {
		return nil, errors.New(`missing "policies" (an array of {"type", "document"})`)
	}
	entries := make([]policy.Entry, 0, len(c.Policies))
	docCursor := 0
	for i, p := range c.Policies {
		// Documents appear in the case in order (RawMessage keeps their bytes as written).
		docOff := -1
		if len(p.Document) > 0 {
			if j := bytes.Index(raw[docCursor:], p.Document); j >= 0 {
				docOff = docCursor + j
				docCursor = docOff + len(p.Document)
			}
		}
		k := policy.Kind(p.Type)
		switch k {
		case policy.Identity, policy.Resource, policy.Boundary, policy.Session, policy.SCP, policy.Endpoint:
		case "":
			return nil, fmt.Errorf("policy %d: missing \"type\" (identity, resource, boundary, session, scp or endpoint)", i)
		default:
			return nil, fmt.Errorf("policy %d: unknown policy type %q (want identity, resource, boundary, session, scp or endpoint)", i, p.Type)
		}
		doc := bytes.TrimSpace(p.Document)
		if len(doc) == 0 || string(doc) == "null" {
			return nil, fmt.Errorf("policy %d: missing \"document\"", i)
		}
		inString := doc[0] == '"'
		if inString {
			var s string
			if err := json.Unmarshal(doc, &s); err != nil {
				return nil, fmt.Errorf("policy %d: document: %v", i, err)
			}
			doc = []byte(s)
		}
		// The policy's type decides what its document may hold (a Principal only in
		// resource-based and endpoint policies...): a case AWS would refuse is refused.
		pol, err := policy.ParseKind(doc, k)
		if err != nil {
			return nil, fmt.Errorf("policy %d (%s): %s", i, k, parseProblem(err, loc, docOff, inString))
		}
		entries = append(entries, policy.Entry{Kind: k, Policy: pol})
	}
	req, err := request(&c.Request)
	if err != nil {
		return nil, err
	}
	return &Prepared{set: policy.NewSet(entries...), req: req}, nil
}

func request(r *Request) (*policy.Request, error) {
	if r.Action == "" {
		return nil, errors.New(`request: missing "action" ("service:Action")`)
	}
	if svc, name, ok := strings.Cut(r.Action, ":"); !ok || svc == "" || name == "" || strings.ContainsAny(r.Action, "*? ") {
		return nil, fmt.Errorf("request: action %q is not \"service:Action\" (a request names one action, no wildcards)", r.Action)
	}
	if r.Resource == "" {
		return nil, errors.New(`request: missing "resource" (an ARN, or "*" for actions without a resource)`)
	}
	ctx := policy.NewContext(nil)
	seen := make(map[string]string, len(r.Context))
	for k, raw := range r.Context {
		// Key names are case-insensitive: two spellings of one key would be one key
		// with the values of whichever came last.
		if other, dup := seen[strings.ToLower(k)]; dup {
			a, b := min(k, other), max(k, other)
			return nil, fmt.Errorf("request: context keys %q and %q are the same key (names are case-insensitive)", a, b)
		}
		seen[strings.ToLower(k)] = k
		vals, list, err := contextValues(raw)
		if err != nil {
			return nil, fmt.Errorf("request: context key %q: %v", k, err)
		}
		if list {
			ctx.SetMultivalued(k, vals...)
		} else {
			ctx.Set(k, vals...)
		}
	}
	return &policy.Request{
		Principal:       r.Principal,
		Action:          r.Action,
		Resource:        r.Resource,
		ResourceAccount: r.ResourceAccount,
		Context:         ctx,
	}, nil
}

// contextValues turns one context value into the engine's string values: a string,
// number or boolean is one value (condition operators parse numbers, dates and booleans
// from text, as AWS's request context carries them); an array is a multivalued key
// (list reports it), even of one value, and an empty array a key present with no values.
func contextValues(raw json.RawMessage) (vals []string, list bool, err error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, false, err
	}
	one := func(x any) (string, bool) {
		switch t := x.(type) {
		case string:
			return t, true
		case json.Number:
			return t.String(), true
		case bool:
			if t {
				return "true", true
			}
			return "false", true
		}
		return "", false
	}
	if arr, ok := v.([]any); ok {
		out := make([]string, 0, len(arr))
		for i, x := range arr {
			s, ok := one(x)
			if !ok {
				return nil, false, fmt.Errorf("value [%d] must be a string, number or boolean", i)
			}
			out = append(out, s)
		}
		return out, true, nil
	}
	s, ok := one(v)
	if !ok {
		return nil, false, errors.New("value must be a string, number, boolean or an array of them")
	}
	return []string{s}, false, nil
}

// jsonErr words an encoding/json error with a line and column when it has an offset.
func jsonErr(data []byte, err error) string {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	off := int64(-1)
	switch {
	case errors.As(err, &se):
		off = se.Offset - 1 // Offset counts the bytes read, the offending one included
	case errors.As(err, &te):
		off = te.Offset
	}
	msg := strings.TrimPrefix(err.Error(), "json: ")
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		msg = "unexpected end of JSON"
	}
	if se == nil {
		return msg // a well-formed value of the wrong shape, e.g. an unknown field
	}
	if data == nil || off < 0 || off > int64(len(data)) {
		return "invalid JSON: " + msg
	}
	line := 1 + bytes.Count(data[:off], []byte("\n"))
	col := int(off) - bytes.LastIndexByte(data[:off], '\n')
	return fmt.Sprintf("invalid JSON at line %d, column %d: %s", line, col, msg)
}

// parseProblem words a policy parse error with its location in the case file; for a
// document given as a JSON string the location is within the string's text.
func parseProblem(err error, loc locator, docOff int, inString bool) string {
	var pe *policy.ParseError
	if !errors.As(err, &pe) || len(pe.Findings) == 0 {
		return err.Error()
	}
	f := pe.Findings[0]
	var b strings.Builder
	switch {
	case f.Line == 0:
	case inString || docOff < 0 || loc.base < 0:
		fmt.Fprintf(&b, "line %d, column %d of the document: ", f.Line, f.Column)
	default:
		line, col := loc.at(docOff, f.Line, f.Column)
		fmt.Fprintf(&b, "line %d, column %d: ", line, col)
	}
	fmt.Fprintf(&b, "%s %s", f.Code, f.Message)
	if f.Path != "" {
		fmt.Fprintf(&b, " (%s)", f.Path)
	}
	if n := len(pe.Findings) - 1; n > 0 {
		fmt.Fprintf(&b, "; and %d more (phantom policy validate lists them all)", n)
	}
	return b.String()
}
