package export

import (
	"fmt"

	"github.com/phantom-perimeter/phantom/internal/detect"
)

// Formats findings can be written in.
const (
	FormatGuardDuty = "guardduty"
	FormatOCSF      = "ocsf"
	FormatASFF      = "asff"
)

// ParseFormat checks a format name; "" means FormatGuardDuty.
func ParseFormat(s string) (string, error) {
	switch s {
	case "":
		return FormatGuardDuty, nil
	case FormatGuardDuty, FormatOCSF, FormatASFF:
		return s, nil
	}
	return "", fmt.Errorf("format %q: want guardduty, ocsf or asff", s)
}

// List is the JSON document of several findings in a format: GuardDuty's GetFindings
// response {"findings": [...]}, a JSON array of OCSF Detection Findings (what SIEMs
// ingest), or {"Findings": [...]}, the input of Security Hub's BatchImportFindings.
func List(format string, fs []detect.Finding) any {
	switch format {
	case FormatOCSF:
		out := make([]OCSFFinding, 0, len(fs))
		for _, f := range fs {
			out = append(out, OCSF(f))
		}
		return out
	case FormatASFF:
		out := make([]ASFFFinding, 0, len(fs))
		for _, f := range fs {
			out = append(out, ASFF(f))
		}
		return map[string]any{"Findings": out}
	}
	if fs == nil {
		fs = []detect.Finding{}
	}
	return map[string]any{"findings": fs}
}

// One is the JSON document of one finding in a format.
func One(format string, f detect.Finding) any {
	switch format {
	case FormatOCSF:
		return OCSF(f)
	case FormatASFF:
		return ASFF(f)
	}
	return f
}
