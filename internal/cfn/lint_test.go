package cfn_test

import (
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/phantom-perimeter/phantom/internal/cfn"
	"github.com/phantom-perimeter/phantom/internal/config"
	"github.com/phantom-perimeter/phantom/internal/testenv"
)

// acceptedWarnings are cfn-lint warning rules a Phantom template may raise, each with the
// reason it is acceptable. None today: every template lints with no warnings at all, and
// a new warning fails the test until it is fixed or argued for here.
var acceptedWarnings = map[string]string{}

// lintFinding is one entry of cfn-lint --format json.
type lintFinding struct {
	Level    string
	Message  string
	Rule     struct{ Id string }
	Location struct{ Path []any }
}

// cfnLint returns cfn-lint's path: a skip locally when it is missing, a failure in CI.
func cfnLint(t *testing.T) string {
	t.Helper()
	return testenv.LookPath(t, "cfn-lint")
}

// lint runs cfn-lint on one template file. Its exit status is a bit mask: 2 errors,
// 4 warnings, 8 informational; anything else (1: it could not run) is a failure too.
func lint(t *testing.T, bin, file string) (findings []lintFinding, fatal error) {
	t.Helper()
	cmd := exec.Command(bin, "--format", "json", "--", file)
	out, err := cmd.Output()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		return nil, err
	}
	if err := json.Unmarshal(out, &findings); err != nil {
		stderr := ""
		if ee != nil {
			stderr = string(ee.Stderr)
		}
		return nil, errors.New("cfn-lint printed no JSON: " + err.Error() + "\n" + string(out) + stderr)
	}
	if ee != nil && ee.ExitCode()&^(2|4|8) != 0 {
		return findings, errors.New("cfn-lint failed: " + string(ee.Stderr))
	}
	return findings, nil
}

// check fails on errors and on warnings not accepted above; informational findings are
// logged.
func check(t *testing.T, name string, findings []lintFinding) {
	t.Helper()
	for _, f := range findings {
		msg := name + ": " + f.Level + " " + f.Rule.Id + " at " + pathString(f.Location.Path) + ": " + f.Message
		switch {
		case f.Level == "Error":
			t.Error(msg)
		case f.Level == "Warning" && acceptedWarnings[f.Rule.Id] == "":
			t.Error(msg + " (not an accepted warning)")
		default:
			t.Log(msg)
		}
	}
}

func pathString(p []any) string {
	parts := make([]string, len(p))
	for i, e := range p {
		b, _ := json.Marshal(e)
		parts[i] = strings.Trim(string(b), `"`)
	}
	return strings.Join(parts, "/")
}

func writeTemplate(t *testing.T, s *config.Spec, name string) string {
	t.Helper()
	tm, err := cfn.Translate(s)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	b, err := cfn.Marshal(tm)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), name+".template.json")
	if err := os.WriteFile(file, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return file
}

// TestCfnLintTemplates lints the template of the demo perimeter phantom up runs, of every
// example in examples/ (a glob, so a new example is covered without touching this test)
// and of this package's testdata.
func TestCfnLintTemplates(t *testing.T) {
	bin := cfnLint(t)
	specs := map[string]*config.Spec{}
	demo, err := config.Parse("demo.yaml", demoSpec(t))
	if err != nil {
		t.Fatal(err)
	}
	specs["phantom-up-demo"] = demo
	examples, err := filepath.Glob("../../examples/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(examples) == 0 {
		t.Fatal("no examples found in ../../examples")
	}
	testdata, _ := filepath.Glob("testdata/*.yaml")
	for _, f := range append(examples, testdata...) {
		specs[strings.TrimSuffix(filepath.Base(filepath.Dir(f)), "s")+"-"+strings.TrimSuffix(filepath.Base(f), ".yaml")] = load(t, f)
	}
	for name, s := range specs {
		t.Run(name, func(t *testing.T) {
			findings, err := lint(t, bin, writeTemplate(t, s, name))
			if err != nil {
				t.Fatal(err)
			}
			check(t, name, findings)
		})
	}
}

// TestCfnLintCatchesErrors proves the harness above can fail: a template with a property
// CloudFormation does not have must be reported as an error.
func TestCfnLintCatchesErrors(t *testing.T) {
	bin := cfnLint(t)
	tm, err := cfn.Translate(load(t, "../../examples/demo.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	tm.Resources["GuardDutyDetector"].Properties["Enabled"] = true // the property is Enable
	b, err := cfn.Marshal(tm)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "broken.json")
	if err := os.WriteFile(file, b, 0o600); err != nil {
		t.Fatal(err)
	}
	findings, err := lint(t, bin, file)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range findings {
		if f.Level == "Error" && strings.Contains(f.Message, "Enabled") {
			return
		}
	}
	t.Fatalf("cfn-lint did not report the unknown property: %+v", findings)
}
