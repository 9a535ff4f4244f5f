package simulate

import (
	"encoding/json"
	"os"
	"testing"
)

// FuzzLoad: any input either loads (and then runs) or fails with a *CaseError; nothing
// panics, including the mapping of policy errors back to file positions.
func FuzzLoad(f *testing.F) {
	data, err := os.ReadFile("testdata/aws_docs.json")
	if err != nil {
		f.Fatal(err)
	}
	var rows []struct {
		Case json.RawMessage `json:"case"`
	}
	if err := json.Unmarshal(data, &rows); err != nil {
		f.Fatal(err)
	}
	for _, r := range rows {
		f.Add([]byte(r.Case))
	}
	f.Add([]byte(`[{"policies":[{"type":"identity","document":{"Statement":{"Effect":"X"}}}],"request":{"action":"a:b","resource":"*"}}]`))
	f.Fuzz(func(t *testing.T, in []byte) {
		cases, err := Load(in)
		if err != nil {
			if _, ok := err.(*CaseError); !ok {
				t.Fatalf("error %T %v is not a *CaseError", err, err)
			}
			return
		}
		if got := Run(cases); len(got) != len(cases) {
			t.Fatalf("%d results for %d cases", len(got), len(cases))
		}
	})
}
