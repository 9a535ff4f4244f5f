// Package hsmtest makes SoftHSM2 tokens for tests of PKCS#11 key providers.
package hsmtest

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/phantom-perimeter/phantom/internal/hsm"
	"github.com/phantom-perimeter/phantom/internal/testenv"
)

// Module is Debian's SoftHSM2 PKCS#11 library (package softhsm2).
const Module = "/usr/lib/softhsm/libsofthsm2.so"

// SoftHSM makes a fresh SoftHSM2 token in a token directory of its own (SOFTHSM2_CONF
// is set for the test) and returns its config: label "phantom-test", user PIN "1234".
// Without SoftHSM2 it skips, or fails under CI=true.
func SoftHSM(t testing.TB) hsm.Config {
	t.Helper()
	util := testenv.LookPath(t, "softhsm2-util")
	if _, err := os.Stat(Module); err != nil {
		testenv.Skipf(t, "SoftHSM2's module %s not found (apt-get install softhsm2)", Module)
	}
	dir := t.TempDir()
	conf := filepath.Join(dir, "softhsm2.conf")
	if err := os.MkdirAll(filepath.Join(dir, "tokens"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(conf, []byte("directories.tokendir = "+filepath.Join(dir, "tokens")+"\nobjectstore.backend = file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("SOFTHSM2_CONF", conf)
	out, err := exec.Command(util, "--init-token", "--free", "--label", "phantom-test", "--pin", "1234", "--so-pin", "5678").CombinedOutput()
	if err != nil {
		t.Fatalf("softhsm2-util --init-token: %v\n%s", err, out)
	}
	return hsm.Config{Module: Module, TokenLabel: "phantom-test", PIN: "1234"}
}
