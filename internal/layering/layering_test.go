package layering

import (
	"go/build"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/phantom-perimeter/phantom/"

// foundations import no package of this module but those listed with them: the cores
// (sigv4, the IAM policy engine) and the small packages every layer may use. A core that
// imported a component could not be reviewed, fuzzed or benchmarked alone.
var foundations = map[string][]string{
	"internal/sigv4": nil, "internal/sigv4/rawhttp": nil, "internal/policy": nil,
	"internal/arn": nil, "internal/nodeapi": nil, "internal/atomicfile": nil, "internal/requestid": nil,
	"internal/authzmsg": nil, "internal/buildinfo": nil, "internal/testenv": nil, "internal/jsonstr": nil,
	"internal/accept": nil,
	// The one place keys are derived from the master key: a reviewer reads it alone.
	"internal/keys": {"internal/atomicfile"},
}

// dataPath are the components on a request's path. They read the store's state only
// through what another package keeps of it (identity's snapshots, the spec): a request
// never waits on the store, and a data-path host needs no store credentials for it.
var dataPath = []string{
	"internal/gateway", "internal/endpoint", "internal/handoff", "internal/egress", "internal/agent",
	"internal/admission", "internal/sigv4", "internal/policy",
}

// components are the processes' main parts. None imports another: they meet in wire
// formats (SigV4, the endpoint's headers, the identity assertion, nodeapi, CloudTrail
// events) and in the store.
var components = []string{
	"internal/gateway", "internal/endpoint", "internal/egress", "internal/sts", "internal/agent",
	"internal/console", "internal/detect/consume",
}

// runtime assembles components into processes (internal/perimeter): it may import every
// component, and only commands, benches and harnesses import it, so no component comes
// to depend on how it is run.
const runtime = "internal/perimeter"

// harnesses are for tests and benches only: these, and every package whose name ends in
// "test" (storetest, audittest, oidctest, ssotest, …).
var harnesses = []string{"internal/testenv", "internal/proctest"}

func harness(p string) bool {
	return slices.Contains(harnesses, p) || strings.HasSuffix(p[strings.LastIndexByte(p, '/')+1:], "test")
}

// pkg is one directory's package: its path in the module and what its code (not its
// tests) imports from the module.
type pkg struct {
	path    string
	imports []string // module-relative
	tests   []string // module-relative imports of its _test.go files
}

func loadPackages(t *testing.T) map[string]pkg {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	own := func(list []string) []string {
		var out []string
		for _, p := range list {
			if rel, ok := strings.CutPrefix(p, module); ok {
				out = append(out, rel)
			}
		}
		return out
	}
	pkgs := map[string]pkg{}
	err = filepath.WalkDir(root, func(dir string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			return nil
		}
		if name := d.Name(); dir != root && (strings.HasPrefix(name, ".") || name == "testdata" || name == "node_modules") {
			return filepath.SkipDir
		}
		bp, err := build.ImportDir(dir, build.ImportComment)
		if err != nil {
			if _, ok := err.(*build.NoGoError); ok {
				return nil
			}
			return err
		}
		rel, _ := filepath.Rel(root, dir)
		rel = filepath.ToSlash(rel)
		pkgs[rel] = pkg{path: rel, imports: own(bp.Imports), tests: own(append(bp.TestImports, bp.XTestImports...))}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return pkgs
}

func TestLayering(t *testing.T) {
	pkgs := loadPackages(t)
	for _, list := range [][]string{slices.Collect(maps.Keys(foundations)), dataPath, components, harnesses} {
		for _, p := range list {
			if _, ok := pkgs[p]; !ok {
				t.Errorf("%s is named by a rule but is not in the repository: update the rule", p)
			}
		}
	}
	for p, allowed := range foundations {
		for _, imp := range pkgs[p].imports {
			if !slices.Contains(allowed, imp) {
				t.Errorf("%s imports %s: a foundation imports no package of ours but %v", p, imp, allowed)
			}
		}
	}
	for _, p := range dataPath {
		if slices.Contains(pkgs[p].imports, "internal/store") {
			t.Errorf("%s imports internal/store: data-path components read state through snapshots", p)
		}
	}
	for _, p := range components {
		for _, imp := range pkgs[p].imports {
			if imp != p && slices.Contains(components, imp) {
				t.Errorf("%s imports %s: components meet in wire formats and the store, never in code", p, imp)
			}
		}
	}
	if _, ok := pkgs[runtime]; !ok {
		t.Errorf("%s is named by a rule but is not in the repository: update the rule", runtime)
	}
	for _, p := range pkgs {
		for _, imp := range append(slices.Clone(p.imports), p.tests...) {
			if imp == "cmd" || strings.HasPrefix(imp, "cmd/") {
				t.Errorf("%s imports %s: nothing imports a command", p.path, imp)
			}
		}
		if slices.Contains(p.imports, runtime) && !strings.HasPrefix(p.path, "cmd/") && !strings.HasPrefix(p.path, "bench/") && !harness(p.path) {
			t.Errorf("%s imports %s: only commands, benches and harnesses build processes", p.path, runtime)
		}
		if strings.HasPrefix(p.path, "bench/") || harness(p.path) {
			continue // benches drive harnesses; a harness may build on another
		}
		for _, imp := range p.imports {
			if harness(imp) {
				t.Errorf("%s imports the test harness %s outside its tests", p.path, imp)
			}
		}
	}
}

// TestLayeringSeesViolations: the rules above are checked against what loadPackages
// found, so the loader must see imports at all, tests' included.
func TestLayeringSeesViolations(t *testing.T) {
	pkgs := loadPackages(t)
	if !slices.Contains(pkgs["internal/gateway"].imports, "internal/sigv4") {
		t.Errorf("internal/gateway's imports %v lack internal/sigv4", pkgs["internal/gateway"].imports)
	}
	if !slices.Contains(pkgs["internal/store"].tests, "internal/store/storetest") {
		t.Errorf("internal/store's test imports %v lack storetest", pkgs["internal/store"].tests)
	}
	if _, ok := pkgs["cmd/phantom"]; !ok {
		t.Error("cmd/phantom not found")
	}
	if _, err := os.Stat(filepath.Join("..", "..", "go.mod")); err != nil {
		t.Errorf("the repository root is not two directories up: %v", err)
	}
}
