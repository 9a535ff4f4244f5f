package sts

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"
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

// TestAuditEventShape: the JSON names CloudTrail uses, and nothing secret.
func TestAuditEventShape(t *testing.T) {
	e := newEnv(t)
	x := e.assume(t, e.users["alice"], "RoleArn", partnerARN, "RoleSessionName", "audit", "ExternalId", "partner-7f3a",
		"Policy", `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:GetObject","Resource":"arn:aws:s3:::secret-bucket-name/*"}]}`)
	e.call(t, x.creds(), form("GetCallerIdentity"))
	evs := e.audit.all()
	b, err := json.Marshal(evs[0])
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	for _, want := range []string{`"eventVersion":"1.08"`, `"eventSource":"sts.amazonaws.com"`, `"eventName":"AssumeRole"`, `"type":"IAMUser"`,
		`"userName":"alice"`, `"sourceIPAddress":"192.0.2.1"`, `"roleArn":"` + partnerARN + `"`, `"externalId":"partner-7f3a"`, `"policySize":`,
		`"accessKeyId":"` + x.Result.Credentials.AccessKeyID + `"`, `"recipientAccountId":"123456789012"`, `"tlsDetails":{"tlsVersion":"TLSv1.3"`} {
		if !strings.Contains(s, want) {
			t.Errorf("event lacks %s: %s", want, s)
		}
	}
	if strings.Contains(s, "secret-bucket-name") || strings.Contains(s, x.Result.Credentials.SecretAccessKey) || strings.Contains(s, x.Result.Credentials.SessionToken) {
		t.Fatalf("event holds the session policy text or a secret: %s", s)
	}
	b, _ = json.Marshal(evs[1])
	for _, want := range []string{`"type":"AssumedRole"`, `"sessionIssuer":{"type":"Role"`, `"arn":"arn:aws:sts::123456789012:assumed-role/partner/audit"`, `"readOnly":true`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("role session event lacks %s: %s", want, b)
		}
	}
}
