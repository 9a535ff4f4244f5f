package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestExportCloudFormation drives phantom export cloudformation in process: stdout and
// --output give the same template, twice the same bytes.
func TestExportCloudFormation(t *testing.T) {
	var out1, out2, errb bytes.Buffer
	if code := run([]string{"export", "cloudformation", "--config", "../../examples/demo.yaml"}, nil, &out1, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	file := filepath.Join(t.TempDir(), "perimeter.template.json")
	if code := run([]string{"export", "cloudformation", "--config", "../../examples/demo.yaml", "--output", file}, nil, &out2, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	written, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if out2.Len() != 0 || !bytes.Equal(written, out1.Bytes()) {
		t.Fatalf("--output wrote %d bytes (stdout %d), want the %d bytes of the stdout run", len(written), out2.Len(), out1.Len())
	}
	var tm struct {
		AWSTemplateFormatVersion string
		Resources                map[string]struct{ Type string }
	}
	if err := json.Unmarshal(written, &tm); err != nil {
		t.Fatal(err)
	}
	if tm.AWSTemplateFormatVersion != "2010-09-09" || tm.Resources["RestApiA1b2c3d4e5"].Type != "AWS::ApiGateway::RestApi" {
		t.Fatalf("template: %s", written[:min(len(written), 400)])
	}
}

func TestExportCloudFormationRefusesInvalidSpec(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(bad, []byte("version: 1\naccount: \"12\"\nregion: us-east-1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	code := run([]string{"export", "cloudformation", "--config", bad}, nil, &out, &errb)
	if code != 1 || out.Len() != 0 || !strings.Contains(errb.String(), "bad.yaml:2:") {
		t.Fatalf("exit %d, stdout %q, stderr %q: want 1 and the located problem", code, out.String(), errb.String())
	}
	out.Reset()
	errb.Reset()
	if code := run([]string{"export", "cloudformation"}, nil, &out, &errb); code == 0 || !strings.Contains(errb.String(), "config") {
		t.Fatalf("without --config: exit %d, %q", code, errb.String())
	}
}
