package sts

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
)

type failingAudit struct{}

func (failingAudit) Record(context.Context, *Event) error { return errors.New("disk full") }

// TestAuditFailureFailsClosed: credentials are never handed out unrecorded.
func TestAuditFailureFailsClosed(t *testing.T) {
	e := newEnv(t)
	h, err := New(Config{Account: testAccount, Region: "us-east-1", Directory: func() Directory { return e.spec },
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, e.creds, e.issuer, failingAudit{})
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, signedRequest(t, e.users["alice"], form("AssumeRole", "RoleArn", appARN, "RoleSessionName", "ss")))
	er := parseError(t, rec.Body.Bytes())
	if rec.Code != 500 || er.Code != "InternalFailure" || er.Type != "Receiver" || strings.Contains(rec.Body.String(), "ASIA") {
		t.Fatalf("%d %s", rec.Code, rec.Body)
	}
}

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
