package sts

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/phantom-perimeter/phantom/internal/testenv"
)

// TestBotocore drives the server with botocore (the library under boto3 and the AWS CLI)
// through testdata/botocore_sts.py.
func TestBotocore(t *testing.T) {
	py := testenv.Python(t, "botocore")
	e := newEnv(t)
	e.serve(t)
	alice, bob := e.users["alice"], e.users["bob"]
	cmd := exec.Command(py, filepath.Join("testdata", "botocore_sts.py"), e.srv.URL, e.caFile,
		alice.AccessKeyID, alice.SecretAccessKey, bob.AccessKeyID, bob.SecretAccessKey, appARN, partnerARN)
	cmd.Env = []string{"AWS_CONFIG_FILE=/dev/null", "AWS_SHARED_CREDENTIALS_FILE=/dev/null", "AWS_EC2_METADATA_DISABLED=true", "HOME=" + t.TempDir()}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("botocore_sts.py: %v\n%s", err, stderr.String())
	}
	type denial struct {
		Code, Message string
		RequestID     string `json:"request_id"`
		Status        int
	}
	var got struct {
		Identity struct{ UserId, Account, Arn string }
		Assumed  struct {
			Arn, ID        string
			KeyPrefix      string `json:"key_prefix"`
			ExpirationTZ   string `json:"expiration_tz"`
			Packed         int
			SourceIdentity string `json:"source_identity"`
		}
		RoleIdentity    string `json:"role_identity"`
		SessionIdentity string `json:"session_identity"`
		Denials         map[string]denial
	}
	decodeJSON(t, string(out), &got)
	if got.Identity.Arn != "arn:aws:iam::123456789012:user/alice" || got.Identity.Account != testAccount {
		t.Errorf("identity %+v", got.Identity)
	}
	if got.Assumed.Arn != "arn:aws:sts::123456789012:assumed-role/app/botocore" || got.Assumed.ExpirationTZ == "None" || got.Assumed.KeyPrefix != "ASIA" ||
		got.Assumed.Packed <= 0 || got.Assumed.SourceIdentity != "alice" || got.RoleIdentity != got.Assumed.Arn {
		t.Errorf("assumed %+v, role identity %q", got.Assumed, got.RoleIdentity)
	}
	if got.SessionIdentity != "arn:aws:iam::123456789012:user/alice" {
		t.Errorf("session identity %q", got.SessionIdentity)
	}
	want := map[string]struct {
		code   string
		status int
	}{
		"untrusted":                 {"AccessDenied", 403},
		"external_id":               {"AccessDenied", 403},
		"duration":                  {"ValidationError", 400},
		"session_name":              {"ValidationError", 400},
		"policy":                    {"MalformedPolicyDocument", 400},
		"unknown_key":               {"InvalidClientTokenId", 403},
		"session_get_session_token": {"AccessDenied", 403},
	}
	for name, w := range want {
		d := got.Denials[name]
		if d.Code != w.code || d.Status != w.status || d.Message == "" || d.RequestID == "" {
			t.Errorf("%s: got %+v, want %s %d", name, d, w.code, w.status)
		}
	}
}
