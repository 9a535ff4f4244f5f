// Command testsummary condenses `go test -json` for scripts/test. While the tests run it
// prints what `go test` prints without -v — each package's result line, and the whole
// output of every test that fails, of a build that fails and of a package that panics —
// and records the events. At the end it reads the records back and prints how many tests
// ran, passed, failed and were skipped, with the skipped ones grouped by the reason they
// gave, so a skip is never silent.
//
//	go test -json ./... | testsummary -record events.jsonl
//	testsummary -report events.jsonl
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
)

// event is one line of `go test -json` (cmd/test2json), and the build events `go test
// -json` adds (Action "build-output", "build-fail" with ImportPath).
type event struct {
	Action     string
	Package    string
	Test       string
	Output     string
	ImportPath string
}

// maxLine bounds one line of input: test output lines are short, but a test may print a
// large blob on one line.
const maxLine = 16 << 20

func main() {
	record := flag.String("record", "", "stream mode: read go test -json on stdin, print the condensed output, append the events to this file")
	report := flag.Bool("report", false, "report mode: summarize the event files named as arguments")
	flag.Parse()
	switch {
	case *record != "" && !*report:
		f, err := os.OpenFile(*record, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			fatal(err)
		}
		err = stream(os.Stdin, os.Stdout, f)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			fatal(err)
		}
	case *report && *record == "":
		s := newSummary()
		for _, name := range flag.Args() {
			if err := s.readFile(name); err != nil {
				fatal(err)
			}
		}
		s.print(os.Stdout)
		if s.failed > 0 || len(s.failedPackages) > 0 {
			os.Exit(1)
		}
	default:
		fmt.Fprintln(os.Stderr, "usage: testsummary -record FILE < go-test-json | testsummary -report FILE...")
		os.Exit(2)
	}
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "testsummary:", err)
	os.Exit(2)
}

// stream copies go test -json from r to rec and prints, to w, what go test without -v
// would: package lines, and the output of failing tests, builds and packages.
func stream(r io.Reader, w io.Writer, rec io.Writer) error {
	type key struct{ pkg, test string }
	held := map[key][]string{} // output of running tests, printed only if they fail
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), maxLine)
	for sc.Scan() {
		line := sc.Bytes()
		var ev event
		if len(line) == 0 || line[0] != '{' || json.Unmarshal(line, &ev) != nil || ev.Action == "" {
			fmt.Fprintf(w, "%s\n", line) // not go test -json: go vet, or the build's own output
			continue
		}
		if _, err := fmt.Fprintf(rec, "%s\n", line); err != nil {
			return err
		}
		k := key{ev.Package, ev.Test}
		switch {
		case ev.Action == "build-output":
			io.WriteString(w, ev.Output)
		case ev.Test == "" && ev.Action == "output":
			if ev.Output != "PASS\n" {
				io.WriteString(w, ev.Output)
			}
		case ev.Action == "output":
			held[k] = append(held[k], ev.Output)
		case ev.Action == "fail":
			for _, o := range held[k] {
				io.WriteString(w, o)
			}
			delete(held, k)
		case ev.Action == "pass" || ev.Action == "skip":
			delete(held, k)
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("read go test -json: %w", err)
	}
	return nil
}

// summary is what the recorded events add up to.
type summary struct {
	tests, subtests         int
	passed, failed, skipped int
	packages                map[string]bool // packages with tests
	failedPackages          []string        // packages that failed (a build, a panic, a timeout)
	failedTests             []string
	// skips groups skipped tests by the reason they gave.
	skips  map[string][]string
	output map[[2]string][]string // a test's output until it ends
}

func newSummary() *summary {
	return &summary{packages: map[string]bool{}, skips: map[string][]string{}, output: map[[2]string][]string{}}
}

func (s *summary) readFile(name string) error {
	f, err := os.Open(name)
	if err != nil {
		return err
	}
	defer f.Close()
	data, err := io.ReadAll(f)
	if err != nil {
		return err
	}
	if err := s.readLines(data); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}

// readLines adds recorded events, one JSON object a line.
func (s *summary) readLines(data []byte) error {
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64*1024), maxLine)
	for sc.Scan() {
		var ev event
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			return err
		}
		s.add(ev)
	}
	return sc.Err()
}

func (s *summary) add(ev event) {
	k := [2]string{ev.Package, ev.Test}
	if ev.Test == "" {
		if ev.Action == "fail" {
			s.failedPackages = append(s.failedPackages, shortPackage(ev.Package))
		}
		if ev.Action == "build-fail" {
			s.failedPackages = append(s.failedPackages, shortPackage(ev.ImportPath)+" (build)")
		}
		return
	}
	switch ev.Action {
	case "output":
		s.output[k] = append(s.output[k], ev.Output)
		return
	case "pass", "fail", "skip":
	default:
		return
	}
	s.packages[ev.Package] = true
	if strings.Contains(ev.Test, "/") {
		s.subtests++
	} else {
		s.tests++
	}
	name := shortPackage(ev.Package) + ": " + ev.Test
	switch ev.Action {
	case "pass":
		s.passed++
	case "fail":
		s.failed++
		s.failedTests = append(s.failedTests, name)
	case "skip":
		s.skipped++
		r := skipReason(s.output[k])
		s.skips[r] = append(s.skips[r], name)
	}
	delete(s.output, k)
}

// skipReason is the first line a skipped test logged, without the file:line prefix
// testing adds: the message of its t.Skip.
func skipReason(lines []string) string {
	for _, l := range lines {
		t := strings.TrimSpace(l)
		if t == "" || strings.HasPrefix(t, "=== ") || strings.HasPrefix(t, "--- ") {
			continue
		}
		if i := strings.Index(t, ": "); i > 0 && strings.Contains(t[:i], ".go:") && !strings.Contains(t[:i], " ") {
			t = t[i+2:]
		}
		return t
	}
	return "(no reason given)"
}

// shortPackage drops the module path from a package of the repository.
func shortPackage(p string) string {
	return strings.TrimPrefix(strings.TrimPrefix(p, "github.com/phantom-perimeter/phantom"), "/")
}

func (s *summary) print(w io.Writer) {
	fmt.Fprintf(w, "== summary\n%d tests ran (%d top-level tests and %d subtests in %d packages): %d passed, %d failed, %d skipped\n",
		s.tests+s.subtests, s.tests, s.subtests, len(s.packages), s.passed, s.failed, s.skipped)
	if len(s.failedPackages) > 0 {
		fmt.Fprintf(w, "FAILED packages: %s\n", strings.Join(s.failedPackages, ", "))
	}
	for _, t := range s.failedTests {
		fmt.Fprintf(w, "FAILED %s\n", t)
	}
	if len(s.skips) == 0 {
		return
	}
	reasons := make([]string, 0, len(s.skips))
	for r := range s.skips {
		reasons = append(reasons, r)
	}
	sort.Slice(reasons, func(i, j int) bool {
		a, b := len(s.skips[reasons[i]]), len(s.skips[reasons[j]])
		return a > b || a == b && reasons[i] < reasons[j]
	})
	fmt.Fprintln(w, "skipped, by reason:")
	for _, r := range reasons {
		names := s.skips[r]
		sort.Strings(names)
		const show = 4
		more := ""
		if len(names) > show {
			more = fmt.Sprintf(", … (%d more)", len(names)-show)
			names = names[:show]
		}
		fmt.Fprintf(w, "  %4d  %s\n        %s%s\n", len(s.skips[r]), r, strings.Join(names, ", "), more)
	}
}
