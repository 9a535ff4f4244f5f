package main

import (
	"encoding/base32"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/phantom-perimeter/phantom/internal/mfa"
)

// TestIAMVirtualMFADevice: the lifecycle of a virtual MFA device through phantom iam, in
// AWS's shapes: create (the seed only in the 0600 outfile), enable with two consecutive
// codes (wrong ones refused), list, the errors IAM gives, deactivate and delete.
func TestIAMVirtualMFADevice(t *testing.T) {
	dir := t.TempDir()
	seedFile := filepath.Join(t.TempDir(), "alice.seed")
	r := admOK(t, admRun(t, dir, "", "iam", "create-virtual-mfa-device", "--virtual-mfa-device-name", "alice-phone",
		"--outfile", seedFile, "--bootstrap-method", "Base32StringSeed"))
	var created struct{ VirtualMFADevice struct{ SerialNumber string } }
	if err := json.Unmarshal([]byte(r.stdout), &created); err != nil {
		t.Fatalf("output %q: %v", r.stdout, err)
	}
	serial := created.VirtualMFADevice.SerialNumber
	if serial != "arn:aws:iam::123456789012:mfa/alice-phone" {
		t.Fatalf("SerialNumber = %q", serial)
	}
	st, err := os.Stat(seedFile)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("seed file: %v, mode %v", err, st.Mode())
	}
	raw, _ := os.ReadFile(seedFile)
	seed, err := seedEncodingForTest(strings.TrimSpace(string(raw)))
	if err != nil || len(seed) != mfa.SeedSize {
		t.Fatalf("seed file holds %q: %v", raw, err)
	}
	if strings.Contains(r.stdout+r.stderr, strings.TrimSpace(string(raw))) {
		t.Fatal("the seed was printed")
	}
	// Same name again; an existing outfile; QRCodePNG.
	admWantAWSError(t, admRun(t, dir, "", "iam", "create-virtual-mfa-device", "--virtual-mfa-device-name", "alice-phone",
		"--outfile", filepath.Join(t.TempDir(), "x"), "--bootstrap-method", "Base32StringSeed"), "CreateVirtualMFADevice", "EntityAlreadyExists")
	if r := admRun(t, dir, "", "iam", "create-virtual-mfa-device", "--virtual-mfa-device-name", "other",
		"--outfile", seedFile, "--bootstrap-method", "Base32StringSeed"); r.code != 2 || !strings.Contains(r.stderr, "exists") {
		t.Errorf("an existing outfile: exit %d, %s", r.code, r.stderr)
	}
	if r := admRun(t, dir, "", "iam", "create-virtual-mfa-device", "--virtual-mfa-device-name", "other",
		"--outfile", filepath.Join(t.TempDir(), "y"), "--bootstrap-method", "QRCodePNG"); r.code != 2 {
		t.Errorf("QRCodePNG: exit %d, %s", r.code, r.stderr)
	}

	now := mfa.Step(time.Now())
	code := func(s int64) string { return mfa.Code(seed, s) }
	// Not consecutive, wrong user, wrong device: refused with IAM's codes.
	admWantAWSError(t, admRun(t, dir, "", "iam", "enable-mfa-device", "--user-name", "alice", "--serial-number", serial,
		"--authentication-code1", code(now-1), "--authentication-code2", code(now+1)), "EnableMFADevice", "InvalidAuthenticationCode")
	admWantAWSError(t, admRun(t, dir, "", "iam", "enable-mfa-device", "--user-name", "mallory", "--serial-number", serial,
		"--authentication-code1", code(now-1), "--authentication-code2", code(now)), "EnableMFADevice", "NoSuchEntity")
	admWantAWSError(t, admRun(t, dir, "", "iam", "enable-mfa-device", "--user-name", "alice", "--serial-number", serial+"x",
		"--authentication-code1", code(now-1), "--authentication-code2", code(now)), "EnableMFADevice", "NoSuchEntity")
	admOK(t, admRun(t, dir, "", "iam", "enable-mfa-device", "--user", "alice", "--serial-number", serial,
		"--authentication-code1", code(now-1), "--authentication-code2", code(now)))
	admWantAWSError(t, admRun(t, dir, "", "iam", "enable-mfa-device", "--user-name", "alice", "--serial-number", serial,
		"--authentication-code1", code(now-1), "--authentication-code2", code(now)), "EnableMFADevice", "EntityAlreadyExists")

	var list struct {
		MFADevices []struct{ UserName, SerialNumber, EnableDate string }
	}
	r = admOK(t, admRun(t, dir, "", "iam", "list-mfa-devices", "--user-name", "alice"))
	if err := json.Unmarshal([]byte(r.stdout), &list); err != nil || len(list.MFADevices) != 1 ||
		list.MFADevices[0].SerialNumber != serial || list.MFADevices[0].UserName != "alice" || !strings.HasSuffix(list.MFADevices[0].EnableDate, "+00:00") {
		t.Fatalf("list-mfa-devices: %s (%v)", r.stdout, err)
	}
	if strings.Contains(r.stdout, "Seed") {
		t.Error("list-mfa-devices shows a seed")
	}

	admWantAWSError(t, admRun(t, dir, "", "iam", "delete-virtual-mfa-device", "--serial-number", serial), "DeleteVirtualMFADevice", "DeleteConflict")
	admOK(t, admRun(t, dir, "", "iam", "deactivate-mfa-device", "--user-name", "alice", "--serial-number", serial))
	admWantAWSError(t, admRun(t, dir, "", "iam", "deactivate-mfa-device", "--user-name", "alice", "--serial-number", serial), "DeactivateMFADevice", "NoSuchEntity")
	admOK(t, admRun(t, dir, "", "iam", "delete-virtual-mfa-device", "--serial-number", serial))
	admWantAWSError(t, admRun(t, dir, "", "iam", "delete-virtual-mfa-device", "--serial-number", serial), "DeleteVirtualMFADevice", "NoSuchEntity")
}

func seedEncodingForTest(s string) ([]byte, error) {
	return mfaSeedEncoding.DecodeString(s)
}

var mfaSeedEncoding = base32.StdEncoding.WithPadding(base32.NoPadding)
