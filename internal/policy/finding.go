package policy

import (
	"fmt"
	"strings"
)

// Severity ranks a Finding the way IAM Access Analyzer's policy validation does.
type Severity string

// Access Analyzer's finding types ("Access Analyzer policy check reference").
const (
	SeverityError           Severity = "ERROR"
	SeveritySecurityWarning Severity = "SECURITY_WARNING"
	SeverityWarning         Severity = "WARNING"
	SeveritySuggestion      Severity = "SUGGESTION"
)

// Finding is one located problem in a policy document. Parse reports grammar errors
// as findings of SeverityError; Validate adds warnings and suggestions.
type Finding struct {
	Severity     Severity
	Code         string // Access Analyzer-like issue code, e.g. "INVALID_EFFECT"
	Message      string
	Path         string // JSON path, e.g. "Statement[1].Condition.IpAddress.aws:SourceIp[0]"
	Line, Column int    // 1-based location in the document; 0 when unknown
}

func (f Finding) String() string {
	loc := ""
	if f.Line > 0 {
		loc = fmt.Sprintf("%d:%d: ", f.Line, f.Column)
	}
	p := ""
	if f.Path != "" {
		p = " at " + f.Path
	}
	return fmt.Sprintf("%s%s %s: %s%s", loc, f.Severity, f.Code, f.Message, p)
}

// ParseError is returned by Parse when a document is not a valid IAM policy. The
// engine fails closed: a document with any grammar error is rejected whole.
type ParseError struct{ Findings []Finding }

func (e *ParseError) Error() string {
	if len(e.Findings) == 0 {
		return "parse policy: invalid document"
	}
	var b strings.Builder
	b.WriteString("parse policy: ")
	b.WriteString(e.Findings[0].String())
	if n := len(e.Findings) - 1; n > 0 {
		fmt.Fprintf(&b, " (and %d more)", n)
	}
	return b.String()
}
