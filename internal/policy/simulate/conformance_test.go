package simulate

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/phantom-perimeter/phantom/internal/testenv"
)

// iamConformance, inside ../shared, holds public IAM policy-evaluation suites turned into
// simulation cases (its README.md describes the format and every id used below). The data
// stays there: two of its sources are AGPL-3.0 test data.
const iamConformance = "conformance/iam"

// recordedOnAWS are the files whose expectations were observed on real AWS: no
// disagreement with them may be excused.
var recordedOnAWS = map[string]bool{
	"politest.json": true,
	"benkehoe-permissions-boundary-test.json": true,
}

// conformanceExceptions lists in-scope, non-disputed cases whose expectation we believe
// is wrong, keyed by "file#index", with the reason and the AWS documentation that shows
// it. It may not excuse a case of recordedOnAWS, nor a case the engine allows and the
// expectation does not (the test enforces both).
var conformanceExceptions = map[string]string{}

type conformanceCase struct {
	Policies json.RawMessage `json:"policies"`
	Request  json.RawMessage `json:"request"`
	Expected string          `json:"expected"`
	Scope    string          `json:"scope"`
	Source   string          `json:"source"`
	Disputed string          `json:"disputed"`
}

// decide runs one case the way `phantom policy simulate` does, handing over only
// "policies" and "request"; an input the engine refuses is "Invalid" (exit status 2).
func decide(c conformanceCase) (decision, detail string) {
	in, err := json.Marshal(map[string]json.RawMessage{"policies": c.Policies, "request": c.Request})
	if err != nil {
		return "error", err.Error()
	}
	cases, err := Load(in)
	if err != nil {
		return "Invalid", err.Error()
	}
	r := cases[0].Run()
	return r.Decision, r.Reason
}

// agrees compares a decision with an expectation: "Deny" is either deny.
func agrees(expected, got string) bool {
	if expected == "Deny" {
		return got == "ExplicitDeny" || got == "ImplicitDeny"
	}
	return expected == got
}

// TestIAMConformance runs every in-scope case of every file in ../shared/conformance/iam
// and fails on each disagreement with AWS's decision, naming the case's source. Disputed
// cases are run and reported, not counted (README: "Leave disputed cases out of
// pass/fail"); TestIAMDisputedDecisions holds the decisions taken on them.
func TestIAMConformance(t *testing.T) {
	dir := testenv.Shared(t, iamConformance)
	files, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no case files in %s (%v)", dir, err)
	}
	slices.Sort(files)
	usedExceptions := map[string]bool{}
	var summary strings.Builder
	for _, path := range files {
		name := filepath.Base(path)
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		var cases []conformanceCase
		if err := json.Unmarshal(data, &cases); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		var counted, agreed, excused, disputed, disputedAgreed int
		for i, c := range cases {
			if c.Scope != "in" {
				continue
			}
			got, detail := decide(c)
			if c.Disputed != "" {
				disputed++
				if agrees(c.Expected, got) {
					disputedAgreed++
				} else {
					t.Logf("disputed (not counted): %s#%d %s: expected %s, engine %s (%s)", name, i, c.Source, c.Expected, got, detail)
				}
				continue
			}
			counted++
			if agrees(c.Expected, got) {
				agreed++
				continue
			}
			key := fmt.Sprintf("%s#%d", name, i)
			if reason, ok := conformanceExceptions[key]; ok {
				usedExceptions[key] = true
				switch {
				case recordedOnAWS[name]:
					t.Errorf("%s: an exception cannot excuse a case recorded against AWS (%s)", key, reason)
				case got == "Allow":
					t.Errorf("%s: an exception cannot excuse an Allow the expectation (%s) denies (%s)", key, c.Expected, reason)
				default:
					excused++
					continue
				}
			}
			t.Errorf("%s %s\n    expected %s, engine %s: %s", key, c.Source, c.Expected, got, detail)
		}
		fmt.Fprintf(&summary, "\n  %-42s %4d/%4d agree, %d excused; disputed: %d/%d agree", name, agreed, counted, excused, disputedAgreed, disputed)
	}
	for key := range conformanceExceptions {
		if !usedExceptions[key] {
			t.Errorf("exception %s excuses nothing: the engine agrees or the case is gone; remove it", key)
		}
	}
	t.Logf("IAM conformance (in scope, not disputed):%s", summary.String())
}
