package datadir_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/phantom-perimeter/phantom/internal/datadir"
)

// TestDataDir: the flag, else $PHANTOM_DATA_DIR, else ./phantom-data; a new directory is
// made 0700 and one others can enter is tightened to 0700.
func TestDataDir(t *testing.T) {
	env := func(v string) func(string) string { return func(string) string { return v } }
	if got := datadir.Dir("", env("")); got != datadir.Default {
		t.Fatalf("default %q", got)
	}
	if got := datadir.Dir("", env("/srv/p")); got != "/srv/p" {
		t.Fatalf("env %q", got)
	}
	if got := datadir.Dir("/x", env("/srv/p")); got != "/x" {
		t.Fatalf("flag %q", got)
	}
	dir := filepath.Join(t.TempDir(), "new")
	if err := datadir.Prepare(dir); err != nil {
		t.Fatal(err)
	}
	if st, _ := os.Stat(dir); st.Mode().Perm() != 0o700 {
		t.Fatalf("created %v", st.Mode())
	}
	open := filepath.Join(t.TempDir(), "open")
	os.Mkdir(open, 0o755)
	os.Chmod(open, 0o755)
	if err := datadir.Prepare(open); err != nil {
		t.Fatal(err)
	}
	if st, _ := os.Stat(open); st.Mode().Perm() != 0o700 {
		t.Fatalf("a data directory others can enter was left %v", st.Mode())
	}
}
