package sts

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"

	"github.com/phantom-perimeter/phantom/internal/config"
)

// TestPresignedGetCallerIdentity: a presigned GET (what aws-iam-authenticator and EKS
// tokens carry) is the query protocol too.
func TestPresignedGetCallerIdentity(t *testing.T) {
	e := newEnv(t)
	r, _ := http.NewRequest(http.MethodGet, "https://sts.amazonaws.com/?Action=GetCallerIdentity&Version=2011-06-15&X-Amz-Expires=60", nil)
	r.Header.Set("x-k8s-aws-id", "cluster-1")
	u, hdr, err := v4.NewSigner().PresignHTTP(context.Background(), e.users["alice"], r, sha256Hex(nil), "sts", "us-east-1", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	req := httptest.NewRequest(http.MethodGet, u, nil)
	for k, v := range hdr {
		req.Header[k] = v
	}
	rec := httptest.NewRecorder()
	e.h.ServeHTTP(rec, req)
	if rec.Code != 200 || !strings.Contains(rec.Body.String(), "<Arn>arn:aws:iam::123456789012:user/alice</Arn>") {
		t.Fatalf("%d %s", rec.Code, rec.Body)
	}
}

func TestNewValidates(t *testing.T) {
	e := newEnv(t)
	dir := func() Directory { return e.spec }
	for _, tt := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"bad account", Config{Account: "12", Region: "us-east-1", Directory: dir}, "not 12 digits"},
		{"no directory", Config{Account: testAccount, Region: "us-east-1"}, "directory is required"},
		{"no region", Config{Account: testAccount, Directory: dir}, "egion"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.cfg, e.creds, e.issuer, e.audit)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err %v, want %q", err, tt.want)
			}
		})
	}
	if _, err := New(Config{Account: testAccount, Region: "us-east-1", Directory: dir}, nil, e.issuer, e.audit); err == nil {
		t.Fatal("nil credentials accepted")
	}
}

// TestDirectoryPerCall: a reloaded spec (config.Watcher.Current) applies to the next call.
func TestDirectoryPerCall(t *testing.T) {
	e := newEnv(t)
	cur := atomic.Pointer[config.Spec]{}
	cur.Store(e.spec)
	h, err := New(Config{Account: testAccount, Region: "us-east-1", Directory: func() Directory { return cur.Load() },
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, e.creds, e.issuer, e.audit)
	if err != nil {
		t.Fatal(err)
	}
	assume := func() int {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, signedRequest(t, e.users["alice"], form("AssumeRole", "RoleArn", appARN, "RoleSessionName", "ss")))
		return rec.Code
	}
	if c := assume(); c != 200 {
		t.Fatalf("before reload: %d", c)
	}
	data, err := os.ReadFile(filepath.Join("testdata", "spec.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	// The reloaded spec's app role trusts carol only.
	edited := strings.Replace(string(data), `["arn:aws:iam::123456789012:user/alice", "arn:aws:iam::123456789012:user/carol"]`, `"arn:aws:iam::123456789012:user/carol"`, 1)
	spec2, err := config.Parse("spec.yaml", []byte(edited))
	if err != nil || edited == string(data) {
		t.Fatalf("edit spec: %v", err)
	}
	cur.Store(spec2)
	if c := assume(); c != 403 {
		t.Fatalf("after reload: %d", c)
	}
}
