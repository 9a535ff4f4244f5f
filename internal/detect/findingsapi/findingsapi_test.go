package findingsapi_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"

	"github.com/phantom-perimeter/phantom/internal/audit"
	"github.com/phantom-perimeter/phantom/internal/config"
	"github.com/phantom-perimeter/phantom/internal/detect"
	"github.com/phantom-perimeter/phantom/internal/detect/export"
	"github.com/phantom-perimeter/phantom/internal/detect/findingsapi"
	"github.com/phantom-perimeter/phantom/internal/identity"
	"github.com/phantom-perimeter/phantom/internal/store"
	"github.com/phantom-perimeter/phantom/internal/testenv"
)

const testSpec = `version: 1
account: "123456789012"
region: eu-west-1
users:
  - name: analyst
    policies:
      - name: findings
        document:
          Version: "2012-10-17"
          Statement:
            - Effect: Allow
              Action: ["guardduty:ListFindings", "guardduty:GetFindings", "guardduty:ArchiveFindings", "guardduty:UnarchiveFindings"]
              Resource: arn:aws:guardduty:eu-west-1:123456789012:detector/phantom
            - Sid: NotWhileRisky
              Effect: Deny
              Action: guardduty:ArchiveFindings
              Resource: "*"
              Condition:
                StringEquals: {"phantom:RiskLevel": high}
  - name: reader
    policies:
      - name: read
        document:
          Version: "2012-10-17"
          Statement:
            - Effect: Allow
              Action: "guardduty:*"
              Resource: "*"
            - Effect: Deny
              Action: ["guardduty:ArchiveFindings", "guardduty:UnarchiveFindings"]
              Resource: "*"
  - name: bob
  - name: otherdetector
    policies:
      - name: wrong-resource
        document:
          Version: "2012-10-17"
          Statement:
            - Effect: Allow
              Action: "guardduty:*"
              Resource: arn:aws:guardduty:eu-west-1:123456789012:detector/other
roles:
  - name: responder
    trustPolicy:
      Version: "2012-10-17"
      Statement:
        - Effect: Allow
          Principal: {AWS: arn:aws:iam::123456789012:root}
          Action: sts:AssumeRole
    policies:
      - name: findings
        document:
          Version: "2012-10-17"
          Statement:
            - Effect: Allow
              Action: "guardduty:*"
              Resource: "*"
`

var t0 = time.Date(2026, 11, 29, 4, 0, 0, 0, time.UTC)

type recorder struct {
	mu     sync.Mutex
	events []*audit.Event
	fail   error
}

func (a *recorder) Record(_ context.Context, ev *audit.Event) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.fail != nil {
		return a.fail
	}
	a.events = append(a.events, ev)
	return nil
}

func (a *recorder) last(t *testing.T) *audit.Event {
	t.Helper()
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.events) == 0 {
		t.Fatal("no audit event")
	}
	return a.events[len(a.events)-1]
}

type riskMap map[string]string

func (m riskMap) RiskLevel(arn string) string { return m[arn] }

type cred struct{ id, secret, token string }

type env struct {
	srv   *httptest.Server
	st    *store.SQLite
	ids   *identity.Service
	aud   *recorder
	risk  riskMap
	creds map[string]cred
}

func newEnv(t *testing.T) *env {
	t.Helper()
	spec, err := config.Parse("spec.yaml", []byte(testSpec))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	mk, err := store.LoadOrCreateMasterKey(dir)
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.OpenSQLite(t.Context(), store.Config{DataDir: dir, MasterKey: mk})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	ids, err := identity.New(identity.Config{Account: "123456789012"}, identity.Deps{AccessKeys: st, SealingKeys: st, Revocations: st, Changes: st})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ids.RotateSealingKey(t.Context()); err != nil {
		t.Fatal(err)
	}
	e := &env{st: st, ids: ids, aud: &recorder{}, risk: riskMap{}, creds: map[string]cred{}}
	for _, u := range []string{"analyst", "reader", "bob", "otherdetector", "ghost"} {
		k, err := ids.CreateAccessKey(t.Context(), u)
		if err != nil {
			t.Fatal(err)
		}
		e.creds[u] = cred{id: k.ID, secret: k.Secret}
	}
	c, token, err := ids.NewSession(identity.Claims{
		Principal: "arn:aws:sts::123456789012:assumed-role/responder/s1", Role: "arn:aws:iam::123456789012:role/responder", SessionName: "s1",
	}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	e.creds["responder"] = cred{id: c.AccessKeyID, secret: c.SecretAccessKey, token: token}
	if err := ids.Refresh(t.Context()); err != nil {
		t.Fatal(err)
	}
	for i, f := range []detect.Finding{finding("f1", 8), finding("f2", 3)} {
		f.UpdatedAt = t0.Add(time.Duration(i) * time.Minute)
		rec, err := export.ToStore(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := st.PutFinding(t.Context(), rec); err != nil {
			t.Fatal(err)
		}
	}
	h, err := findingsapi.New(findingsapi.Config{Spec: func() *config.Spec { return spec }, Store: st, Credentials: ids, Auditor: e.aud, Risk: e.risk})
	if err != nil {
		t.Fatal(err)
	}
	e.srv = httptest.NewTLSServer(h)
	t.Cleanup(e.srv.Close)
	return e
}

func finding(id string, sev float64) detect.Finding {
	return detect.Finding{SchemaVersion: "2.0", AccountID: "123456789012", Region: "eu-west-1", Partition: "aws", ID: id,
		ARN: "arn:aws:guardduty:eu-west-1:123456789012:detector/phantom/finding/" + id, Type: "Recon:IAMUser/AccessDeniedSweep",
		Title: "t", Description: "d", Severity: sev, CreatedAt: t0, UpdatedAt: t0,
		Resource: detect.Resource{ResourceType: "AccessKey", AccessKeyDetails: &detect.AccessKeyDetails{AccessKeyID: "AKIAX", PrincipalARN: "arn:aws:iam::123456789012:user/x"}},
		Service:  detect.Service{ServiceName: "guardduty", DetectorID: "phantom", Count: 1, EventFirstSeen: t0, EventLastSeen: t0}}
}

type response struct {
	status int
	typ    string
	body   map[string]any
	raw    []byte
}

// do sends method path as who (a key of e.creds, or "" unsigned), signed for service.
func (e *env) do(t *testing.T, who, method, path, service string) response {
	t.Helper()
	return e.doBody(t, who, method, path, service, nil)
}

func (e *env) doBody(t *testing.T, who, method, path, service string, body []byte) response {
	t.Helper()
	req, err := http.NewRequest(method, e.srv.URL+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body == nil {
		req.Body = http.NoBody
	} else {
		req.Header.Set("Content-Type", "application/x-amz-json-1.1")
	}
	if who != "" {
		c := e.creds[who]
		sum := sha256.Sum256(body)
		err := v4.NewSigner().SignHTTP(context.Background(), aws.Credentials{AccessKeyID: c.id, SecretAccessKey: c.secret, SessionToken: c.token},
			req, hex.EncodeToString(sum[:]), service, "eu-west-1", time.Now())
		if err != nil {
			t.Fatal(err)
		}
	}
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	r := response{status: resp.StatusCode, typ: resp.Header.Get("X-Amzn-Errortype"), raw: b}
	json.Unmarshal(b, &r.body)
	return r
}

func TestListGetArchive(t *testing.T) {
	e := newEnv(t)
	r := e.do(t, "analyst", "GET", "/findings", "guardduty")
	if r.status != 200 {
		t.Fatalf("list: %d %s", r.status, r.raw)
	}
	fs, _ := r.body["findings"].([]any)
	if len(fs) != 2 || fs[0].(map[string]any)["id"] != "f2" {
		t.Errorf("list = %s", r.raw)
	}
	ev := e.aud.last(t)
	if ev.EventSource != "guardduty.amazonaws.com" || ev.EventName != "ListFindings" || ev.ErrorCode != "" || !ev.ReadOnly ||
		ev.UserIdentity.Type != "IAMUser" || ev.UserIdentity.UserName != "analyst" {
		t.Errorf("audit event = %+v", ev)
	}

	r = e.do(t, "analyst", "GET", "/findings?minSeverity=5&format=asff", "guardduty")
	if as, _ := r.body["Findings"].([]any); r.status != 200 || len(as) != 1 {
		t.Errorf("asff list: %d %s", r.status, r.raw)
	}
	r = e.do(t, "analyst", "GET", "/findings/f1?format=ocsf", "guardduty")
	if r.status != 200 || r.body["class_uid"] != float64(2004) {
		t.Errorf("get ocsf: %d %s", r.status, r.raw)
	}

	r = e.do(t, "responder", "POST", "/findings/f1/archive", "guardduty")
	if r.status != 200 {
		t.Fatalf("archive as role session: %d %s", r.status, r.raw)
	}
	if ev := e.aud.last(t); ev.EventName != "ArchiveFindings" || ev.ReadOnly || ev.UserIdentity.Type != "AssumedRole" {
		t.Errorf("archive audit = %+v", ev)
	}
	if rec, _ := e.st.GetFinding(t.Context(), "f1"); !rec.Archived {
		t.Error("not archived")
	}
	r = e.do(t, "analyst", "GET", "/findings?archived=true", "guardduty")
	if fs, _ := r.body["findings"].([]any); len(fs) != 1 {
		t.Errorf("archived list = %s", r.raw)
	}
	r = e.do(t, "analyst", "POST", "/findings/f1/unarchive", "guardduty")
	if rec, _ := e.st.GetFinding(t.Context(), "f1"); r.status != 200 || rec.Archived {
		t.Errorf("unarchive: %d %s archived=%v", r.status, r.raw, rec.Archived)
	}
}

func TestDenyPaths(t *testing.T) {
	e := newEnv(t)
	tests := []struct {
		name, who, method, path, service string
		status                           int
		typ, code, msg                   string
		setup                            func()
	}{
		{"unsigned", "", "GET", "/findings", "guardduty", 403, "MissingAuthenticationTokenException", "MissingAuthenticationToken", "", nil},
		{"signed for another service", "analyst", "GET", "/findings", "execute-api", 403, "InvalidSignatureException", "SignatureDoesNotMatch", "", nil},
		{"user the spec lacks", "ghost", "GET", "/findings", "guardduty", 403, "AccessDeniedException", "AccessDenied", "is not an IAM user or role session", nil},
		{"no policy: implicit deny", "bob", "GET", "/findings", "guardduty", 403, "AccessDeniedException", "AccessDenied",
			"User: arn:aws:iam::123456789012:user/bob is not authorized to perform: guardduty:ListFindings on resource: arn:aws:guardduty:eu-west-1:123456789012:detector/phantom", nil},
		{"explicit deny", "reader", "POST", "/findings/f1/archive", "guardduty", 403, "AccessDeniedException", "AccessDenied", "with an explicit deny", nil},
		{"allowed on another detector only", "otherdetector", "GET", "/findings/f1", "guardduty", 403, "AccessDeniedException", "AccessDenied", "guardduty:GetFindings", nil},
		{"risk level denies archive", "analyst", "POST", "/findings/f1/archive", "guardduty", 403, "AccessDeniedException", "AccessDenied", "explicit deny",
			func() { e.risk["arn:aws:iam::123456789012:user/analyst"] = "high" }},
		{"revoked role session", "responder", "GET", "/findings", "guardduty", 403, "AccessDeniedException", "AccessDenied", "",
			func() {
				time.Sleep(2 * time.Millisecond)
				if _, err := e.ids.RevokeSessions(t.Context(), "responder"); err != nil {
					t.Fatal(err)
				}
			}},
		{"unknown path", "analyst", "GET", "/nothing", "guardduty", 404, "NotFoundException", "NotFound", "", nil},
		{"wrong method", "analyst", "DELETE", "/findings/f1", "guardduty", 405, "BadRequestException", "MethodNotAllowed", "", nil},
		{"bad query", "analyst", "GET", "/findings?limit=0", "guardduty", 400, "BadRequestException", "BadRequestException", "limit", nil},
		{"unknown parameter", "analyst", "GET", "/findings?archive=true", "guardduty", 400, "BadRequestException", "BadRequestException", "unknown parameter", nil},
		{"unknown finding", "analyst", "GET", "/findings/nope", "guardduty", 404, "ResourceNotFoundException", "ResourceNotFoundException", "nope", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.setup != nil {
				tc.setup()
			}
			r := e.do(t, tc.who, tc.method, tc.path, tc.service)
			if r.status != tc.status || r.typ != tc.typ || r.body["__type"] != tc.typ {
				t.Errorf("got %d %s %s; want %d %s", r.status, r.typ, r.raw, tc.status, tc.typ)
			}
			if msg, _ := r.body["message"].(string); !strings.Contains(msg, tc.msg) {
				t.Errorf("message %q lacks %q", msg, tc.msg)
			}
			if ev := e.aud.last(t); ev.ErrorCode != tc.code {
				t.Errorf("audit errorCode = %q, want %q (%+v)", ev.ErrorCode, tc.code, ev)
			}
		})
	}
	if rec, _ := e.st.GetFinding(t.Context(), "f1"); rec.Archived {
		t.Error("a denied archive archived")
	}
}

func TestAuditFailureRefuses(t *testing.T) {
	e := newEnv(t)
	e.aud.fail = errors.New("disk full")
	r := e.do(t, "analyst", "POST", "/findings/f1/archive", "guardduty")
	if r.status != 500 || r.typ != "InternalServerErrorException" {
		t.Errorf("got %d %s", r.status, r.raw)
	}
	if rec, _ := e.st.GetFinding(t.Context(), "f1"); rec.Archived {
		t.Error("archived although the call could not be audited")
	}
	if bytes.Contains(r.raw, []byte("disk full")) {
		t.Error("internal error text leaked")
	}
}

func TestParsePath(t *testing.T) {
	tests := []struct {
		method, path string
		op           findingsapi.Operation
		id           string
		ok           bool
	}{
		{"GET", "/findings", findingsapi.OpListFindings, "", true},
		{"GET", "/findings/abc", findingsapi.OpGetFindings, "abc", true},
		{"POST", "/findings/abc/archive", findingsapi.OpArchiveFindings, "abc", true},
		{"POST", "/findings/abc/unarchive", findingsapi.OpUnarchiveFindings, "abc", true},
		{"POST", "/findings", findingsapi.OpListFindings, "", false},
		{"GET", "/findings/", "", "", false},
		{"GET", "/findings/a%2Fb", "", "", false},
		{"GET", "/findings/..", "", "", false},
		{"GET", "/findings/abc/", "", "", false},
		{"GET", "/findingsx", "", "", false},
		{"POST", "/findings/abc/delete", "", "", false},
		{"GET", "/findings/" + strings.Repeat("a", 129), "", "", false},
	}
	for _, tc := range tests {
		r, err := findingsapi.ParsePath(tc.method, tc.path)
		if (err == nil) != tc.ok || (tc.ok && (r.Op != tc.op || r.ID != tc.id)) {
			t.Errorf("ParsePath(%s %s) = %+v, %v", tc.method, tc.path, r, err)
		}
	}
}

func TestParseQuery(t *testing.T) {
	q, err := findingsapi.ParseQuery(findingsapi.OpListFindings, "")
	if err != nil || q.Filter.Archived == nil || *q.Filter.Archived || q.Filter.Limit != findingsapi.DefaultLimit || q.Format != "guardduty" {
		t.Errorf("defaults = %+v, %v", q, err)
	}
	q, err = findingsapi.ParseQuery(findingsapi.OpListFindings, "archived=all&type=Recon:IAMUser/X&minSeverity=4.5&limit=10&format=ocsf")
	if err != nil || q.Filter.Archived != nil || q.Filter.Type != "Recon:IAMUser/X" || q.Filter.MinSeverity != 4.5 || q.Filter.Limit != 10 || q.Format != "ocsf" {
		t.Errorf("full = %+v, %v", q, err)
	}
	for _, bad := range []string{"archived=yes", "limit=1001", "limit=-1", "minSeverity=NaN", "minSeverity=11", "format=csv", "format=",
		"type=", "type=a%20b", "limit=1&limit=2", "foo=bar", "%zz"} {
		if _, err := findingsapi.ParseQuery(findingsapi.OpListFindings, bad); err == nil {
			t.Errorf("ParseQuery(%q) accepted", bad)
		}
	}
	if _, err := findingsapi.ParseQuery(findingsapi.OpGetFindings, "limit=1"); err == nil {
		t.Error("GetFindings accepted a list parameter")
	}
}

func FuzzParsePath(f *testing.F) {
	for _, s := range []string{"/findings", "/findings/abc", "/findings/abc/archive", "/findings/%2e%2e", "/findings//x",
		"/detector/phantom/findings", "/detector/phantom/findings/get", "/detector/../findings/archive"} {
		f.Add("GET", s)
		f.Add("POST", s)
	}
	f.Fuzz(func(t *testing.T, method, path string) {
		r, err := findingsapi.ParsePath(method, path)
		if err != nil {
			return
		}
		if r.GuardDuty {
			if method != "POST" || r.Detector == "" || strings.ContainsAny(r.Detector, "/%") || r.Detector == ".." || r.ID != "" {
				t.Fatalf("ParsePath(%s %q) = %+v", method, path, r)
			}
			return
		}
		if r.Op != findingsapi.OpListFindings && (r.ID == "" || strings.ContainsAny(r.ID, "/%") || r.ID == "..") {
			t.Fatalf("ParsePath(%q) gave id %q", path, r.ID)
		}
		if r.Op == findingsapi.OpListFindings && path != "/findings" {
			t.Fatalf("ParsePath(%q) listed", path)
		}
	})
}

func FuzzParseQuery(f *testing.F) {
	for _, s := range []string{"", "archived=all&limit=10", "minSeverity=7&format=asff", "type=Recon:IAMUser/X", "limit=1&limit=2"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		q, err := findingsapi.ParseQuery(findingsapi.OpListFindings, raw)
		if err != nil {
			return
		}
		if q.Filter.Limit < 1 || q.Filter.Limit > findingsapi.MaxLimit || q.Filter.MinSeverity < 0 || q.Filter.MinSeverity > 10 {
			t.Fatalf("ParseQuery(%q) = %+v", raw, q)
		}
		if _, err := export.ParseFormat(q.Format); err != nil {
			t.Fatalf("ParseQuery(%q) format %q", raw, q.Format)
		}
	})
}

func TestGuardDutyRoutes(t *testing.T) {
	e := newEnv(t)
	tests := []struct {
		name, who, path, body string
		status                int
		want                  string
	}{
		{"list all", "analyst", "/detector/phantom/findings", `{}`, 200, `{"findingIds":["f2","f1"]}`},
		{"list by severity, ascending, paged", "analyst", "/detector/phantom/findings",
			`{"findingCriteria":{"criterion":{"severity":{"gte":1}}},"sortCriteria":{"attributeName":"severity","orderBy":"ASC"},"maxResults":1}`,
			200, `{"findingIds":["f2"],"nextToken":"1"}`},
		{"second page", "analyst", "/detector/phantom/findings",
			`{"findingCriteria":{"criterion":{"severity":{"gte":1}}},"sortCriteria":{"attributeName":"severity","orderBy":"ASC"},"maxResults":1,"nextToken":"1"}`,
			200, `{"findingIds":["f1"]}`},
		{"archived criterion", "analyst", "/detector/phantom/findings", `{"findingCriteria":{"criterion":{"service.archived":{"eq":["true"]}}}}`, 200, `{"findingIds":[]}`},
		{"unsupported criterion refused", "analyst", "/detector/phantom/findings", `{"findingCriteria":{"criterion":{"resource.instanceDetails.instanceId":{"eq":["i-1"]}}}}`, 400, ""},
		{"unknown member refused", "analyst", "/detector/phantom/findings", `{"maxResult":1}`, 400, ""},
		{"other detector: not allowed on its ARN", "analyst", "/detector/other/findings", `{}`, 403, ""},
		{"other detector is also an IAM resource", "otherdetector", "/detector/other/findings", `{}`, 400, ""},
		{"get skips unknown ids", "analyst", "/detector/phantom/findings/get", `{"findingIds":["f1","nope"]}`, 200, ""},
		{"archive unknown id", "analyst", "/detector/phantom/findings/archive", `{"findingIds":["nope"]}`, 400, ""},
		{"archive denied", "reader", "/detector/phantom/findings/archive", `{"findingIds":["f1"]}`, 403, ""},
		{"archive", "analyst", "/detector/phantom/findings/archive", `{"findingIds":["f1"]}`, 200, `{}`},
		{"archived now", "analyst", "/detector/phantom/findings", `{"findingCriteria":{"criterion":{"service.archived":{"eq":["true"]}}}}`, 200, `{"findingIds":["f1"]}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := e.doBody(t, tc.who, "POST", tc.path, "guardduty", []byte(tc.body))
			if r.status != tc.status {
				t.Fatalf("status %d %s, want %d", r.status, r.raw, tc.status)
			}
			if tc.want != "" && string(r.raw) != tc.want {
				t.Errorf("body %s, want %s", r.raw, tc.want)
			}
		})
	}
	r := e.doBody(t, "analyst", "POST", "/detector/phantom/findings/get", "guardduty", []byte(`{"findingIds":["f1","nope"]}`))
	if fs, _ := r.body["findings"].([]any); len(fs) != 1 {
		t.Errorf("get = %s", r.raw)
	}
}

// TestAWSCLI drives the API with the AWS CLI itself, when it is installed.
func TestAWSCLI(t *testing.T) {
	awsPath := testenv.LookPath(t, "aws")
	e := newEnv(t)
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: e.srv.Certificate().Raw})
	if err := os.WriteFile(caFile, pemBytes, 0o600); err != nil {
		t.Fatal(err)
	}
	c := e.creds["analyst"]
	aws := func(args ...string) (string, error) {
		cmd := exec.Command(awsPath, append([]string{"guardduty", "--endpoint-url", e.srv.URL, "--region", "eu-west-1", "--output", "json"}, args...)...)
		cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir(), "AWS_ACCESS_KEY_ID=" + c.id, "AWS_SECRET_ACCESS_KEY=" + c.secret,
			"AWS_CA_BUNDLE=" + caFile, "AWS_EC2_METADATA_DISABLED=true", "AWS_CONFIG_FILE=/dev/null", "AWS_SHARED_CREDENTIALS_FILE=/dev/null"}
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	out, err := aws("list-findings", "--detector-id", "phantom")
	if err != nil || !strings.Contains(out, `"FindingIds"`) || !strings.Contains(out, "f1") {
		t.Fatalf("list-findings: %v\n%s", err, out)
	}
	out, err = aws("get-findings", "--detector-id", "phantom", "--finding-ids", "f1")
	if err != nil || !strings.Contains(out, `"Severity": 8`) || !strings.Contains(out, `"Type": "Recon:IAMUser/AccessDeniedSweep"`) {
		t.Fatalf("get-findings: %v\n%s", err, out)
	}
	if out, err = aws("archive-findings", "--detector-id", "phantom", "--finding-ids", "f1"); err != nil {
		t.Fatalf("archive-findings: %v\n%s", err, out)
	}
	if rec, _ := e.st.GetFinding(t.Context(), "f1"); !rec.Archived {
		t.Error("aws guardduty archive-findings did not archive")
	}
	c = e.creds["bob"]
	out, err = aws("list-findings", "--detector-id", "phantom")
	if err == nil || !strings.Contains(out, "AccessDeniedException") {
		t.Errorf("bob's list-findings: %v\n%s", err, out)
	}
}

func FuzzParseGuardDutyList(f *testing.F) {
	for _, s := range []string{"", "{}", `{"findingCriteria":{"criterion":{"severity":{"gte":4},"type":{"eq":["a","b"]}}},"maxResults":5,"nextToken":"3"}`,
		`{"findingCriteria":{"criterion":{"service.archived":{"neq":["true"]}}},"sortCriteria":{"attributeName":"severity","orderBy":"ASC"}}`,
		`{"maxResults":51}`, `{"nextToken":"-1"}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		l, err := findingsapi.ParseGuardDutyList(body)
		if err != nil {
			return
		}
		if l.Max < 1 || l.Max > 50 || l.Offset < 0 {
			t.Fatalf("ParseGuardDutyList(%q) = %+v", body, l)
		}
		if _, _, err := findingsapi.ParseFindingIDs(body); err == nil && len(body) == 0 {
			t.Fatal("ParseFindingIDs accepted an empty body")
		}
	})
}
