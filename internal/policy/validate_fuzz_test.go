package policy

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzValidate: Validate never panics on any input, under any kind, and agrees with
// Parse on which documents are errors.
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
		for _, k := range []Kind{Identity, Resource, SCP, "bogus"} {
			ValidateKind(data, k)
		}
	})
}
