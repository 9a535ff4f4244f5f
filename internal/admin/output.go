package admin

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"
)

// Format is an output format, as the AWS CLI's --output names it.
type Format string

// The formats every command supports.
const (
	JSON Format = "json"
	Text Format = "text"
)

// ParseFormat checks an --output value.
func ParseFormat(s string) (Format, error) {
	switch f := Format(s); f {
	case JSON, Text:
		return f, nil
	}
	return "", fmt.Errorf("--output %q: want json or text", s)
}

// Output is a command result that can be written as JSON (the AWS CLI's shape) or text.
type Output interface {
	writeText(w io.Writer) error
}

// Write writes out in format f: JSON indented by four spaces as the AWS CLI prints it, or
// text as tab-separated lines.
func Write(w io.Writer, f Format, out Output) error {
	if f == Text {
		return out.writeText(w)
	}
	b, err := json.MarshalIndent(out, "", "    ")
	if err != nil {
		return fmt.Errorf("encode output: %w", err)
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

// Time is a timestamp shown as the AWS CLI shows IAM's: ISO 8601 in UTC to the second,
// "2026-11-29T01:55:00+00:00".
type Time time.Time

const timeLayout = "2006-01-02T15:04:05-07:00"

func (t Time) String() string { return time.Time(t).UTC().Format(timeLayout) }

// MarshalJSON writes the timestamp as a JSON string.
func (t Time) MarshalJSON() ([]byte, error) { return json.Marshal(t.String()) }

// textLine writes one line of AWS CLI text output: the row's name in upper case, then the
// values tab-separated (the CLI orders them by key name; callers pass them so).
func textLine(w io.Writer, name string, values ...string) error {
	_, err := fmt.Fprintln(w, strings.ToUpper(name)+"\t"+strings.Join(values, "\t"))
	return err
}
