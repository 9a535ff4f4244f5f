package policy

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// FuzzValidate: Validate never panics on any input, under any kind, and agrees with
// Parse on which documents are errors; a known kind only adds findings (every error the
// kind-free check reports is reported for each kind too), an unknown kind adds none, and
// every finding is located inside the document.
func FuzzValidate(f *testing.F) {
	seedCorpus(f)
	files, _ := filepath.Glob("testdata/validate/*.json")
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		checkAgreement(t, data)
		base := Validate(data)
		lines := bytes.Count(data, []byte("\n")) + 1
		for _, k := range []Kind{Identity, Resource, SCP, "bogus"} {
			got := ValidateKind(data, k)
			for _, f := range got {
				if f.Line < 0 || f.Column < 0 || f.Line > lines || f.Code == "" || f.Message == "" {
					t.Fatalf("kind %q: finding %+v is not located in the document or says nothing", k, f)
				}
			}
			for _, f := range base {
				if f.Severity == SeverityError && !slices.Contains(got, f) {
					t.Fatalf("kind %q drops the error %v that the kind-free check reports", k, f)
				}
			}
			if k == "bogus" && !slices.Equal(got, base) {
				t.Fatalf("an unknown kind changed the findings:\n%v\n%v", got, base)
			}
		}
	})
}
