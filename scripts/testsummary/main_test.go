package main

import (
	"bytes"
	"strings"
	"testing"
)

// events is go test -json of a package with a passing test that logs, a failing one, a
// test skipped with a reason (and a second with the same reason), a subtest skipped
// without one, and a package whose build failed.
const events = `{"Action":"start","Package":"github.com/phantom-perimeter/phantom/internal/x"}
{"Action":"run","Package":"github.com/phantom-perimeter/phantom/internal/x","Test":"TestPass"}
{"Action":"output","Package":"github.com/phantom-perimeter/phantom/internal/x","Test":"TestPass","Output":"=== RUN   TestPass\n"}
{"Action":"output","Package":"github.com/phantom-perimeter/phantom/internal/x","Test":"TestPass","Output":"    x_test.go:9: chatter a passing test logs\n"}
{"Action":"pass","Package":"github.com/phantom-perimeter/phantom/internal/x","Test":"TestPass"}
{"Action":"run","Package":"github.com/phantom-perimeter/phantom/internal/x","Test":"TestFail"}
{"Action":"output","Package":"github.com/phantom-perimeter/phantom/internal/x","Test":"TestFail","Output":"=== RUN   TestFail\n"}
{"Action":"output","Package":"github.com/phantom-perimeter/phantom/internal/x","Test":"TestFail","Output":"    x_test.go:12: the reason it failed\n"}
{"Action":"output","Package":"github.com/phantom-perimeter/phantom/internal/x","Test":"TestFail","Output":"--- FAIL: TestFail (0.00s)\n"}
{"Action":"fail","Package":"github.com/phantom-perimeter/phantom/internal/x","Test":"TestFail"}
{"Action":"output","Package":"github.com/phantom-perimeter/phantom/internal/x","Test":"TestSkip","Output":"=== RUN   TestSkip\n"}
{"Action":"output","Package":"github.com/phantom-perimeter/phantom/internal/x","Test":"TestSkip","Output":"    shared.go:61: the dataset is absent: skipping\n"}
{"Action":"output","Package":"github.com/phantom-perimeter/phantom/internal/x","Test":"TestSkip","Output":"--- SKIP: TestSkip (0.00s)\n"}
{"Action":"skip","Package":"github.com/phantom-perimeter/phantom/internal/x","Test":"TestSkip"}
{"Action":"output","Package":"github.com/phantom-perimeter/phantom/internal/x","Test":"TestSkip2","Output":"    shared.go:61: the dataset is absent: skipping\n"}
{"Action":"skip","Package":"github.com/phantom-perimeter/phantom/internal/x","Test":"TestSkip2"}
{"Action":"output","Package":"github.com/phantom-perimeter/phantom/internal/x","Test":"TestParent/sub","Output":"--- SKIP: TestParent/sub (0.00s)\n"}
{"Action":"skip","Package":"github.com/phantom-perimeter/phantom/internal/x","Test":"TestParent/sub"}
{"Action":"output","Package":"github.com/phantom-perimeter/phantom/internal/x","Output":"FAIL\n"}
{"Action":"output","Package":"github.com/phantom-perimeter/phantom/internal/x","Output":"FAIL\tgithub.com/phantom-perimeter/phantom/internal/x\t0.01s\n"}
{"Action":"fail","Package":"github.com/phantom-perimeter/phantom/internal/x"}
{"ImportPath":"github.com/phantom-perimeter/phantom/internal/y","Action":"build-output","Output":"internal/y/y.go:3:1: syntax error\n"}
{"ImportPath":"github.com/phantom-perimeter/phantom/internal/y","Action":"build-fail"}
`

func TestStreamPrintsWhatGoTestWouldWithoutV(t *testing.T) {
	var out, rec bytes.Buffer
	in := "# a line go vet printed\n" + events
	if err := stream(strings.NewReader(in), &out, &rec); err != nil {
		t.Fatal(err)
	}
	got := out.String()
	for _, want := range []string{"# a line go vet printed\n", "    x_test.go:12: the reason it failed\n--- FAIL: TestFail",
		"FAIL\tgithub.com/phantom-perimeter/phantom/internal/x\t0.01s\n", "internal/y/y.go:3:1: syntax error\n"} {
		if !strings.Contains(got, want) {
			t.Errorf("stream output lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "chatter") || strings.Contains(got, "not found: skipping") {
		t.Errorf("stream printed the output of a test that did not fail:\n%s", got)
	}
	if rec.String() != events {
		t.Errorf("recorded events differ from the go test -json input:\n%s", rec.String())
	}
}

func TestReportCountsAndGroupsSkips(t *testing.T) {
	s := newSummary()
	if err := s.readLines([]byte(events)); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	s.print(&out)
	got := out.String()
	for _, want := range []string{
		"5 tests ran (4 top-level tests and 1 subtests in 1 packages): 1 passed, 1 failed, 3 skipped\n",
		"FAILED packages: internal/x, internal/y (build)\n",
		"FAILED internal/x: TestFail\n",
		"     2  the dataset is absent: skipping\n        internal/x: TestSkip, internal/x: TestSkip2\n",
		"     1  (no reason given)\n        internal/x: TestParent/sub\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("report lacks %q:\n%s", want, got)
		}
	}
}
