package sts

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/phantom-perimeter/phantom/internal/nodeapi"
)

type metricsCall struct{ action, result, code string }

// fakeMetrics records the hook's calls.
type fakeMetrics struct {
	mu    sync.Mutex
	calls []metricsCall
}

func (f *fakeMetrics) Request(action, result, code string, d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if d <= 0 {
		action += " (no duration)"
	}
	f.calls = append(f.calls, metricsCall{action, result, code})
}

func (f *fakeMetrics) take() []metricsCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.calls
	f.calls = nil
	return c
}

// TestMetrics: every call, query API or node API, is one Request with a bounded action,
// the result (allow; deny for a 4xx; error for a 5xx) and the audit errorCode.
func TestMetrics(t *testing.T) {
	e := newEnv(t)
	m := &fakeMetrics{}
	e.h.cfg.Metrics = m
	alice, bob := e.users["alice"], e.users["bob"]
	badSig := alice
	badSig.SecretAccessKey = strings.Repeat("x", 40)
	tests := []struct {
		name  string
		do    func(t *testing.T)
		want  metricsCall
		setup func()
	}{
		{"assume role", func(t *testing.T) { e.call(t, alice, form("AssumeRole", "RoleArn", appARN, "RoleSessionName", "ss")) },
			metricsCall{"AssumeRole", "allow", ""}, nil},
		{"caller identity", func(t *testing.T) { e.call(t, alice, form("GetCallerIdentity")) },
			metricsCall{"GetCallerIdentity", "allow", ""}, nil},
		{"trust policy denies", func(t *testing.T) { e.call(t, bob, form("AssumeRole", "RoleArn", appARN, "RoleSessionName", "ss")) },
			metricsCall{"AssumeRole", "deny", "AccessDenied"}, nil},
		{"invalid parameter", func(t *testing.T) {
			e.call(t, alice, form("AssumeRole", "RoleArn", appARN, "RoleSessionName", "ss", "DurationSeconds", "899"))
		}, metricsCall{"AssumeRole", "deny", "ValidationError"}, nil},
		{"bad signature", func(t *testing.T) { e.call(t, badSig, form("GetSessionToken")) },
			metricsCall{"GetSessionToken", "deny", "SignatureDoesNotMatch"}, nil},
		{"unsigned", func(t *testing.T) { e.call(t, aws.Credentials{}, form("GetCallerIdentity")) },
			metricsCall{"GetCallerIdentity", "deny", "MissingAuthenticationToken"}, nil},
		{"a made-up action is not a label", func(t *testing.T) { e.call(t, badSig, form("Drop<Tables>")) },
			metricsCall{"other", "deny", "SignatureDoesNotMatch"}, nil},
		{"unknown action, signed", func(t *testing.T) { e.call(t, alice, form("DeleteEverything")) },
			metricsCall{"", "deny", "InvalidAction"}, nil},
		{"node API without node configuration", func(t *testing.T) {
			e.h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodPost, nodeapi.CredentialsPath, nil))
		}, metricsCall{"NodeCredentials", "deny", "UnknownOperationException"}, nil},
		{"audit failure", func(t *testing.T) { e.call(t, alice, form("GetCallerIdentity")) },
			metricsCall{"GetCallerIdentity", "error", "AuditFailed"}, func() { e.h.audit = failingAudit{} }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.setup != nil {
				tc.setup()
			}
			tc.do(t)
			got := m.take()
			if len(got) != 1 {
				t.Fatalf("calls %+v: want exactly one", got)
			}
			if got[0] != tc.want {
				t.Errorf("call %+v, want %+v", got[0], tc.want)
			}
		})
	}
}
