package sts

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"io"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/phantom-perimeter/phantom/internal/authzmsg"
	"github.com/phantom-perimeter/phantom/internal/config"
	"github.com/phantom-perimeter/phantom/internal/keys"
	"github.com/phantom-perimeter/phantom/internal/sigv4"
)

// decodeSpec: dave may decode messages, erin has no permission, frank is allowed
// everything but explicitly denied decoding.
const decodeSpec = `version: 1
account: "123456789012"
region: us-east-1
users:
  - name: dave
    policies:
      - name: decode
        document:
          Version: "2012-10-17"
          Statement:
            - Effect: Allow
              Action: sts:DecodeAuthorizationMessage
              Resource: "*"
  - name: erin
  - name: frank
    policies:
      - name: all-but-decode
        document:
          Version: "2012-10-17"
          Statement:
            - Effect: Allow
              Action: "*"
              Resource: "*"
            - Sid: NoDecode
              Effect: Deny
              Action: sts:DecodeAuthorizationMessage
              Resource: "*"
`

func newDecodeEnv(t testing.TB) (*Handler, *authzmsg.Sealer, *memAudit, map[string]aws.Credentials) {
	t.Helper()
	spec, err := config.Parse("decode.yaml", []byte(decodeSpec))
	if err != nil {
		t.Fatal(err)
	}
	key, err := keys.Derive(bytes.Repeat([]byte{7}, 32), keys.AuthzMessages)
	if err != nil {
		t.Fatal(err)
	}
	sealer, err := authzmsg.NewSealer(key, nil)
	if err != nil {
		t.Fatal(err)
	}
	creds := &fakeCreds{keys: map[string]fakeEntry{}}
	users := map[string]aws.Credentials{}
	for _, u := range spec.Users {
		c := aws.Credentials{AccessKeyID: randomKey("AKIA"), SecretAccessKey: randomSecret(30)}
		users[u.Name] = c
		creds.put(fakeEntry{cred: sigv4.Credential{AccessKeyID: c.AccessKeyID, SecretAccessKey: c.SecretAccessKey, Principal: u.ARN}})
	}
	audit := &memAudit{}
	h, err := New(Config{Account: testAccount, Region: "us-east-1", Directory: func() Directory { return spec },
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Messages: sealer}, creds, &fakeIssuer{creds: creds}, audit)
	if err != nil {
		t.Fatal(err)
	}
	return h, sealer, audit, users
}

func denial() *authzmsg.Message {
	return &authzmsg.Message{
		ExplicitDeny:      true,
		MatchedStatements: authzmsg.Statements{Items: []authzmsg.Statement{{StatementID: "DenyDelete", Effect: "DENY", Policy: "guard"}}},
		Context: authzmsg.Context{
			Principal: authzmsg.Principal{ARN: "arn:aws:iam::123456789012:user/erin"},
			Action:    "execute-api:Invoke",
			Resource:  "arn:aws:execute-api:us-east-1:123456789012:a1b2c3d4e5/prod/DELETE/items",
		},
	}
}

func TestDecodeAuthorizationMessage(t *testing.T) {
	h, sealer, audit, users := newDecodeEnv(t)
	enc, err := sealer.Seal(denial())
	if err != nil {
		t.Fatal(err)
	}
	want, _ := json.Marshal(denial())
	flip := byte('A')
	if enc[40] == 'A' {
		flip = 'B'
	}
	tampered := enc[:40] + string(flip) + enc[41:]
	tests := []struct {
		name   string
		user   string
		kv     []string
		status int
		code   string
	}{
		// "DecodeAuthorizationMessage": the caller must be allowed the action.
		{"allowed caller decodes", "dave", []string{"EncodedMessage", enc}, 200, ""},
		{"no policy: implicit deny", "erin", []string{"EncodedMessage", enc}, 403, "AccessDenied"},
		{"explicit deny wins over Allow *", "frank", []string{"EncodedMessage", enc}, 403, "AccessDenied"},
		// Authorization comes first, so the unauthorized learn nothing about a message.
		{"denied caller with garbage still AccessDenied", "erin", []string{"EncodedMessage", "garbage"}, 403, "AccessDenied"},
		{"tampered message", "dave", []string{"EncodedMessage", tampered}, 400, "InvalidAuthorizationMessageException"},
		{"truncated message", "dave", []string{"EncodedMessage", enc[:len(enc)-5]}, 400, "InvalidAuthorizationMessageException"},
		{"garbage", "dave", []string{"EncodedMessage", "not-an-encoded-message"}, 400, "InvalidAuthorizationMessageException"},
		{"missing EncodedMessage", "dave", nil, 400, "ValidationError"},
		// AWS caps EncodedMessage at 10240 ("AWS STS API Reference").
		{"EncodedMessage over 10240", "dave", []string{"EncodedMessage", strings.Repeat("A", 10241)}, 400, "ValidationError"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, signedRequest(t, users[tt.user], form("DecodeAuthorizationMessage", tt.kv...)))
			if rec.Code != tt.status {
				t.Fatalf("status %d, want %d: %s", rec.Code, tt.status, rec.Body)
			}
			if tt.code != "" {
				if got := parseError(t, rec.Body.Bytes()).Code; got != tt.code {
					t.Fatalf("code %s, want %s", got, tt.code)
				}
				return
			}
			var x struct {
				DecodedMessage string `xml:"DecodeAuthorizationMessageResult>DecodedMessage"`
				RequestID      string `xml:"ResponseMetadata>RequestId"`
			}
			if err := xml.Unmarshal(rec.Body.Bytes(), &x); err != nil {
				t.Fatal(err)
			}
			if x.DecodedMessage != string(want) || x.RequestID == "" {
				t.Fatalf("DecodedMessage = %s, want %s", x.DecodedMessage, want)
			}
		})
	}
	// Every call is audited under its name; the decoded explanation is not copied there.
	events := audit.all()
	if len(events) != len(tests) {
		t.Fatalf("%d audit events for %d calls", len(events), len(tests))
	}
	for _, ev := range events {
		b, _ := json.Marshal(ev)
		if ev.ErrorCode == "MalformedQueryString" {
			continue // not named: its parameters did not parse
		}
		if ev.EventName != "DecodeAuthorizationMessage" || bytes.Contains(b, []byte("DenyDelete")) || bytes.Contains(b, []byte(enc)) {
			t.Fatalf("audit event %s", b)
		}
	}
}

func TestDecodeWithoutKeyFailsClosed(t *testing.T) {
	spec, err := config.Parse("decode.yaml", []byte(decodeSpec))
	if err != nil {
		t.Fatal(err)
	}
	creds := &fakeCreds{keys: map[string]fakeEntry{}}
	dave := aws.Credentials{AccessKeyID: randomKey("AKIA"), SecretAccessKey: randomSecret(30)}
	creds.put(fakeEntry{cred: sigv4.Credential{AccessKeyID: dave.AccessKeyID, SecretAccessKey: dave.SecretAccessKey, Principal: "arn:aws:iam::123456789012:user/dave"}})
	h, err := New(Config{Account: testAccount, Region: "us-east-1", Directory: func() Directory { return spec },
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, creds, &fakeIssuer{creds: creds}, &memAudit{})
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, signedRequest(t, dave, form("DecodeAuthorizationMessage", "EncodedMessage", "AQ")))
	if rec.Code != 500 || parseError(t, rec.Body.Bytes()).Code != "InternalFailure" {
		t.Fatalf("no message key: %d %s", rec.Code, rec.Body)
	}
}
