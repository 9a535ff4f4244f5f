// Package buildinfo says which build of Phantom is running: its version, VCS revision
// and time, and Go version, for `phantom --version` and phantom_build_info. It reads
// what the Go toolchain stamps into every binary (runtime/debug.ReadBuildInfo); a
// package build (scripts/package) sets the version and revision with -ldflags
// "-X github.com/phantom-perimeter/phantom/internal/buildinfo.version=...".
package buildinfo

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// version and revision are set at link time by scripts/package (a package is built from
// an export of the tree, where the toolchain finds no VCS to stamp); empty otherwise.
var version, revision string

// Info is one binary's build.
type Info struct {
	// Version is the package version, else the module version the toolchain stamped
	// (a pseudo-version from the VCS for a checkout), else "(devel)".
	Version string
	// Revision is the VCS commit; Modified says the work tree had uncommitted changes.
	Revision string
	Time     string
	Modified bool
	// GoVersion and Platform are the toolchain's and the target's.
	GoVersion, Platform string
}

// Read returns the running binary's build.
func Read() Info {
	in := Info{Version: "(devel)", Revision: "unknown", GoVersion: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	if bi, ok := debug.ReadBuildInfo(); ok {
		if bi.Main.Version != "" {
			in.Version = bi.Main.Version
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				in.Revision = s.Value
			case "vcs.time":
				in.Time = s.Value
			case "vcs.modified":
				in.Modified = s.Value == "true"
			}
		}
	}
	if version != "" {
		in.Version = version
	}
	if revision != "" {
		in.Revision = revision
	}
	return in
}

// String is the --version line: phantom 1.2.3 (revision abc123, 2026-01-02T03:04:05Z,
// go1.26.8 linux/amd64).
func (in Info) String() string {
	rev := in.Revision
	if in.Modified {
		rev += " with local changes"
	}
	when := ""
	if in.Time != "" {
		when = ", " + in.Time
	}
	return fmt.Sprintf("phantom %s (revision %s%s, %s %s)", in.Version, rev, when, in.GoVersion, in.Platform)
}
