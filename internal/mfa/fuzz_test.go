package mfa

import (
	"strings"
	"testing"
)

// FuzzParseCode: a TokenCode is accepted exactly when it is six ASCII digits, and then
// unchanged.
func FuzzParseCode(f *testing.F) {
	for _, s := range []string{"123456", "000000", "12345", "1234567", "12345a", "١٢٣٤٥٦", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := ParseCode(s)
		six := len(s) == 6 && strings.Trim(s, "0123456789") == ""
		if (err == nil) != six {
			t.Fatalf("ParseCode(%q) err = %v; six digits: %v", s, err, six)
		}
		if err == nil && got != s {
			t.Fatalf("ParseCode(%q) = %q", s, got)
		}
	})
}

// FuzzParseSerial: an accepted SerialNumber is an MFA ARN of the account that
// SerialNumber builds back from its own path and name.
func FuzzParseSerial(f *testing.F) {
	const acct = "123456789012"
	for _, s := range []string{
		"arn:aws:iam::123456789012:mfa/alice", "arn:aws:iam::123456789012:mfa/p/q/alice",
		"arn:aws:iam::123456789012:mfa//", "GAHT12345678", "arn:aws:iam::123456789012:user/alice",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := ParseSerial(acct, s)
		if err != nil {
			return
		}
		rest, ok := strings.CutPrefix(got, "arn:aws:iam::"+acct+":mfa/")
		if !ok || got != s {
			t.Fatalf("ParseSerial(%q) = %q", s, got)
		}
		i := strings.LastIndexByte(rest, '/')
		again, err := SerialNumber(acct, "/"+rest[:i+1], rest[i+1:])
		if err != nil || again != s {
			t.Fatalf("ParseSerial accepted %q but SerialNumber rebuilds %q, %v", s, again, err)
		}
	})
}
