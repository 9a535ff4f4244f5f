package simulate

import (
	"bytes"
	"encoding/json"
	"os"
	"reflect"
	"testing"
)

// FuzzLoad: any input either loads or fails with a *CaseError that names a case of the
// input (or the input as a whole); nothing panics, including the mapping of policy errors
// back to file positions. A loaded input decides each of its cases: one decision per case,
// Allow and ExplicitDeny naming the statements that decided, of policies the case has;
// the same again when run twice; and ExplicitDeny once a resource policy denying
// everything to everyone is added to every case (an explicit deny overrides any allow).
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
			ce, ok := err.(*CaseError)
			if !ok {
				t.Fatalf("error %T %v is not a *CaseError", err, err)
			}
			if ce.Index < -1 || ce.Msg == "" {
				t.Fatalf("error %+v names no case or says nothing", ce)
			}
			return
		}
		var raw []Case
		if bytes.TrimLeft(in, " \t\r\n")[0] == '[' {
			err = json.Unmarshal(in, &raw)
		} else {
			raw = make([]Case, 1)
			err = json.Unmarshal(in, &raw[0])
		}
		if err != nil || len(raw) != len(cases) {
			t.Fatalf("loaded %d cases from input encoding/json reads as %d (%v)", len(cases), len(raw), err)
		}
		got := Run(cases)
		if len(got) != len(cases) {
			t.Fatalf("%d results for %d cases", len(got), len(cases))
		}
		if again := Run(cases); !reflect.DeepEqual(got, again) {
			t.Fatalf("the same cases decided twice: %+v, then %+v", got, again)
		}
		for i, r := range got {
			switch r.Decision {
			case "Allow", "ExplicitDeny":
				if len(r.Matched) == 0 {
					t.Fatalf("case %d: %s names no statement", i, r.Decision)
				}
			case "ImplicitDeny":
			default:
				t.Fatalf("case %d: decision %q", i, r.Decision)
			}
			for _, m := range r.Matched {
				if m.Policy < 0 || m.Policy >= len(raw[i].Policies) || m.Statement == "" {
					t.Fatalf("case %d: matched %+v, but the case has %d policies", i, m, len(raw[i].Policies))
				}
			}
		}
		for i := range raw {
			raw[i].Policies = append(raw[i].Policies, Policy{Type: "resource", Document: json.RawMessage(denyAll)})
		}
		denied, err := json.Marshal(raw)
		if err != nil {
			t.Fatal(err)
		}
		withDeny, err := Load(denied)
		if err != nil {
			t.Fatalf("the loaded cases with a deny-all resource policy added do not load: %v", err)
		}
		for i, r := range Run(withDeny) {
			if r.Decision != "ExplicitDeny" {
				t.Fatalf("case %d with a deny-all resource policy: %s (%s)", i, r.Decision, r.Reason)
			}
		}
	})
}

const denyAll = `{"Version":"2012-10-17","Statement":{"Effect":"Deny","Principal":"*","Action":"*","Resource":"*"}}`
