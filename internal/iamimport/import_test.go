package iamimport

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/phantom-perimeter/phantom/internal/config"
	"github.com/phantom-perimeter/phantom/internal/testenv"
)

func importFile(t *testing.T, file string, opts Options) (*Details, *Result) {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	d, err := Parse(f)
	if err != nil {
		t.Fatalf("parse %s: %v", file, err)
	}
	res, err := Import(d, opts)
	if err != nil {
		t.Fatalf("import %s: %v", file, err)
	}
	for _, b := range verify(d, res) {
		t.Error(b)
	}
	// What config validate reads: the text, loaded again from a file.
	out := filepath.Join(t.TempDir(), "imported.yaml")
	if err := os.WriteFile(out, res.YAML, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := config.Load(out); err != nil {
		t.Fatalf("the written spec does not load: %v", err)
	}
	return d, res
}

// noteTexts lists the notes as "subject: text" lines.
func noteTexts(res *Result) []string {
	var out []string
	for _, n := range res.Notes {
		out = append(out, n.String())
	}
	return out
}

// wantNotes checks that the notes are exactly these, each given by its subject and a
// fragment of its text, in any order.
func wantNotes(t *testing.T, res *Result, want [][2]string) {
	t.Helper()
	got := noteTexts(res)
	for _, w := range want {
		i := slices.IndexFunc(got, func(s string) bool { return strings.HasPrefix(s, w[0]+": ") && strings.Contains(s, w[1]) })
		if i < 0 {
			t.Errorf("no note %q about %q", w[1], w[0])
			continue
		}
		got = slices.Delete(got, i, i+1)
	}
	for _, g := range got {
		t.Errorf("unexpected note: %s", g)
	}
	if !bytes.Contains(res.YAML, []byte("# Not carried as it was ("+strconv.Itoa(len(res.Notes))+";")) && len(res.Notes) > 0 {
		t.Errorf("the spec's header does not list the %d notes", len(res.Notes))
	}
	for _, n := range res.Notes {
		if !bytes.Contains(res.YAML, []byte("# - "+cleanLine(n.String())+"\n")) {
			t.Errorf("the spec's header lacks the note %s", n)
		}
	}
}

// startMoto runs a moto server (a stand-in for IAM's API we did not write) on a free
// loopback port with AWS's managed policies loaded, and returns its URL.
func startMoto(t *testing.T) string {
	t.Helper()
	bin := testenv.LookPath(t, "moto_server")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	cmd := exec.Command(bin, "-H", "127.0.0.1", "-p", strconv.Itoa(port))
	cmd.Env = append(os.Environ(), "MOTO_IAM_LOAD_MANAGED_POLICIES=true")
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	url := fmt.Sprintf("http://127.0.0.1:%d", port)
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get(url + "/moto-api/")
		if err == nil {
			resp.Body.Close()
			return url
		}
		if time.Now().After(deadline) {
			t.Fatalf("moto_server did not answer on %s: %v\n%s", url, err, logs.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestImportMotoAccount builds an account with boto3 in a moto server
// (testdata/account.py) and imports what boto3 and the AWS CLI print for it: the whole
// account, and the CLI's --filter output without AWS's managed policies.
func TestImportMotoAccount(t *testing.T) {
	py := testenv.Python(t, "boto3")
	aws := testenv.LookPath(t, "aws")
	url := startMoto(t)
	dir := t.TempDir()
	run := func(name string, args ...string) string {
		t.Helper()
		out := filepath.Join(dir, name)
		f, err := os.Create(out)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		cmd := exec.Command(args[0], args[1:]...)
		cmd.Env = append(os.Environ(), "AWS_ACCESS_KEY_ID=testing", "AWS_SECRET_ACCESS_KEY=testing", "AWS_DEFAULT_REGION=us-east-1",
			"AWS_CONFIG_FILE=/dev/null", "AWS_SHARED_CREDENTIALS_FILE=/dev/null")
		var stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = f, &stderr
		if err := cmd.Run(); err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, stderr.String())
		}
		return out
	}
	boto := run("boto3.json", py, "testdata/account.py", url)
	cli := run("cli.json", aws, "iam", "get-account-authorization-details", "--endpoint-url", url, "--output", "json")
	filtered := run("filtered.json", aws, "iam", "get-account-authorization-details", "--endpoint-url", url, "--output", "json",
		"--filter", "User", "Role", "Group", "LocalManagedPolicy")

	// What only this account has: everything carried but the service-linked role, the
	// instance profile, the older version of ReadOrders; AWS's managed policies copied.
	full := [][2]string{
		{"managed policy arn:aws:iam::123456789012:policy/app/ReadOrders", "versions v1 not carried"},
		{"managed policy arn:aws:iam::aws:policy/AdministratorAccess", "carried as this perimeter's managed policy AdministratorAccess"},
		{"managed policy arn:aws:iam::aws:policy/IAMUserChangePassword", "carried as this perimeter's managed policy IAMUserChangePassword"},
		{"managed policy arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess", "carried as this perimeter's managed policy AmazonS3ReadOnlyAccess"},
		{"instance profile worker", "not expressible"},
		{"role AWSServiceRoleForElasticBeanstalk", "left out: a service-linked role"},
	}
	for name, file := range map[string]string{"boto3": boto, "aws cli": cli} {
		t.Run(name, func(t *testing.T) {
			_, res := importFile(t, file, Options{Source: name})
			wantNotes(t, res, full)
			s := res.Spec
			if len(s.ManagedPolicies) != 7 || len(s.Groups) != 3 || len(s.Users) != 3 || len(s.Roles) != 3 {
				t.Errorf("carried %d managed policies, %d groups, %d users, %d roles; want 7, 3, 3, 3",
					len(s.ManagedPolicies), len(s.Groups), len(s.Users), len(s.Roles))
			}
			bob, _ := s.User("bob")
			if bob == nil || len(bob.Groups) != 2 || bob.Tags["team"] != "équipe-ops" {
				t.Errorf("bob: %+v", bob)
			}
			app, _ := s.Role("app")
			if app == nil || app.PermissionsBoundary == nil || app.PermissionsBoundary.Name != "DeveloperBoundary" || app.ARN != "arn:aws:iam::123456789012:role/app/app" {
				t.Errorf("app: %+v", app)
			}
			// The imported groups decide: bob is an administrator through admins.
			names := []string{}
			for _, ip := range bob.IdentityPolicies() {
				names = append(names, ip.Name())
			}
			if !slices.Contains(names, "arn:aws:iam::123456789012:policy/AdministratorAccess") {
				t.Errorf("bob's identity policies %v lack his group's AdministratorAccess", names)
			}
		})
	}
	// Without AWS's managed policies the policies attached from them are unknown, and
	// could deny: their holders are left out, each listed.
	t.Run("aws cli --filter", func(t *testing.T) {
		_, res := importFile(t, filtered, Options{})
		if app, ok := res.Spec.Role("app"); !ok || !bytes.Contains(app.TrustPolicy.Document, []byte(`"AWS":["arn:aws:iam::123456789012:user/eng/alice"]`)) {
			t.Errorf("app's trust without bob: %+v", app)
		}
		wantNotes(t, res, [][2]string{
			{"managed policy arn:aws:iam::123456789012:policy/app/ReadOrders", "versions v1 not carried"},
			{"managed policy arn:aws:iam::aws:policy/AdministratorAccess", "not in the input"},
			{"managed policy arn:aws:iam::aws:policy/IAMUserChangePassword", "not in the input"},
			{"managed policy arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess", "not in the input"},
			{"group admins", "left out: its managed policy arn:aws:iam::aws:policy/AdministratorAccess is not carried and could deny"},
			{"user bob", "left out: a member of group admins"},
			{"user carol", "left out: its managed policy arn:aws:iam::aws:policy/IAMUserChangePassword"},
			{"role worker", "left out: its managed policy arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess"},
			{"instance profile worker", "not expressible"},
			{"role AWSServiceRoleForElasticBeanstalk", "left out: a service-linked role"},
			// bob was left out, so app's trust in him cannot load: he is taken out of
			// the statement, which keeps alice.
			{"role app", `principal "arn:aws:iam::123456789012:user/bob" taken out of trust policy statement 0`},
		})
	})
}

// TestImportDocumented imports testdata/documented.json, written in the shape of IAM's
// API reference for what moto does not produce: URL-encoded documents, a user's
// permissions boundary, a deleted principal's unique id in a trust policy, an OIDC
// trust, reserved tags, an AWS managed policy over the spec's size limit and one named
// like the account's own.
func TestImportDocumented(t *testing.T) {
	oidc := []OIDCProvider{{URL: "https://token.actions.githubusercontent.com", ClientIDs: []string{"sts.amazonaws.com"}}}
	_, res := importFile(t, "testdata/documented.json", Options{Region: "eu-west-1", OIDCProviders: oidc})
	wantNotes(t, res, [][2]string{
		{"managed policy arn:aws:iam::111122223333:policy/OnlyAllows", "versions v2 not carried"},
		{"user frank", "left out: a member of group not-in-input, which is not in the input"},
		{"managed policy arn:aws:iam::aws:policy/AWSDenyAll", "not in the input"},
		{"group quarantine", "left out: its managed policy arn:aws:iam::aws:policy/AWSDenyAll is not carried and could deny"},
		{"user erin", "left out: a member of group quarantine"},
		{"managed policy arn:aws:iam::aws:policy/BigReadOnly", "carried as this perimeter's managed policy BigReadOnly"},
		{"managed policy arn:aws:iam::aws:policy/BigReadOnly", "over AWS's limit of 6144"},
		{"user dave", "managed policy arn:aws:iam::aws:policy/BigReadOnly not attached (it only allows"},
		{"managed policy arn:aws:iam::aws:policy/Boundary", "carried as this perimeter's managed policy AWS-Boundary (not Boundary"},
		{"user gina", "tag aws:cloudformation:stack-name not carried"},
		{"role deploy", `trust policy statement 1 not carried: the spec refuses it: AWS principal "AIDAJQABLZS4A3QDU576Q"`},
	})
	s := res.Spec
	dave, _ := s.User("dave")
	if dave == nil || dave.PermissionsBoundary == nil || dave.PermissionsBoundary.Name != "Boundary" {
		t.Fatalf("dave's boundary: %+v", dave)
	}
	// The URL-encoded document decoded exactly: + stays +, %20 is a space.
	if !bytes.Contains(dave.Policies[0].Document, []byte(`"aws:userid":"a+b c%"`)) {
		t.Errorf("dave's inline policy %s", dave.Policies[0].Document)
	}
	svc, _ := s.Role("svc")
	if svc == nil || svc.MaxSessionDuration != 12*time.Hour || svc.Description != "A Lambda function's role" || len(svc.ManagedPolicies) != 1 || svc.ManagedPolicies[0].Name != "AWS-Boundary" {
		t.Errorf("svc: %+v", svc)
	}
	if _, ok := s.Role("github-ci"); !ok {
		t.Error("github-ci, trusting the provider given, was not imported")
	}

	// Without the provider, the OIDC role cannot be trusted by anyone: left out, saying how.
	_, res = importFile(t, "testdata/documented.json", Options{Region: "eu-west-1"})
	if !slices.ContainsFunc(noteTexts(res), func(s string) bool {
		return strings.HasPrefix(s, "role github-ci: left out") && strings.Contains(s, "--oidc-provider")
	}) {
		t.Errorf("no note leaving github-ci out with the --oidc-provider hint: %q", noteTexts(res))
	}
}

// TestDocumentSpellings reads a document in each spelling clients print.
func TestDocumentSpellings(t *testing.T) {
	want := `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:GetObject","Resource":"arn:aws:s3:::a+b/c d"}]}`
	for name, in := range map[string]string{
		"object":      want,
		"JSON string": strconv.Quote(want),
		// RFC 3986, as IAM's API returns it.
		"URL-encoded": strconv.Quote(strings.NewReplacer("{", "%7B", "}", "%7D", `"`, "%22", ":", "%3A", " ", "%20", "[", "%5B", "]", "%5D", ",", "%2C", "/", "%2F", "+", "%2B").Replace(want)),
	} {
		var d Document
		if err := json.Unmarshal([]byte(in), &d); err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if string(d) != want {
			t.Errorf("%s: %s, want %s", name, d, want)
		}
	}
	for name, in := range map[string]string{
		"an array":     `["x"]`,
		"bad encoding": `"%7B%ZZ"`,
		"not JSON":     `"%7Bnope"`,
		"a number":     `7`,
	} {
		var d Document
		if err := json.Unmarshal([]byte(in), &d); err == nil {
			t.Errorf("%s: accepted as %s", name, d)
		}
	}
}

func TestParseRefuses(t *testing.T) {
	for name, in := range map[string]string{
		"a truncated page": `{"UserDetailList": [], "IsTruncated": true, "Marker": "x"}`,
		"two values":       `{} {}`,
		"not JSON":         `users:`,
	} {
		if _, err := Parse(strings.NewReader(in)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := Import(&Details{}, Options{}); err == nil || !strings.Contains(err.Error(), "--account") {
		t.Errorf("an input naming no account: %v", err)
	}
	two := &Details{UserDetailList: []UserDetail{{UserName: "a", Arn: "arn:aws:iam::111111111111:user/a"}, {UserName: "b", Arn: "arn:aws:iam::222222222222:user/b"}}}
	if _, err := Import(two, Options{}); err == nil || !strings.Contains(err.Error(), "two accounts") {
		t.Errorf("two accounts: %v", err)
	}
}

// TestCommentsHoldInput: names and documents from the input reach the header comment;
// no line break in them may end the comment and write YAML.
func TestCommentsHoldInput(t *testing.T) {
	d := &Details{RoleDetailList: []RoleDetail{{
		RoleName: "r", Arn: "arn:aws:iam::123456789012:role/r",
		AssumeRolePolicyDocument: Document(`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::123456789012:root"},"Action":"sts:AssumeRole"}]}`),
		InstanceProfileList:      []InstanceProfile{{InstanceProfileName: "p\nusers:\n  - name: mallory\u2028x\u0085y\rz", Arn: "arn:aws:iam::123456789012:instance-profile/p"}},
	}}}
	res, err := Import(d, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Spec.Users) != 0 {
		t.Fatalf("a name in a comment wrote users: %s", res.YAML)
	}
	if !bytes.Contains(res.YAML, []byte("# - instance profile p\uFFFDusers:\uFFFD  - name: mallory\uFFFDx\uFFFDy\uFFFDz:")) {
		t.Errorf("the header does not show the name with its line breaks replaced:\n%s", res.YAML)
	}
}

// FuzzImport: whatever the input, the import either refuses it or writes a spec that
// loads and keeps its promise (verify).
func FuzzImport(f *testing.F) {
	seed, err := os.ReadFile("testdata/documented.json")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(seed)
	f.Add([]byte(`{"UserDetailList":[{"UserName":"a","Arn":"arn:aws:iam::123456789012:user/a","GroupList":["g"],"Tags":[{"Key":"k","Value":"v"}]}],"GroupDetailList":[{"GroupName":"g","GroupPolicyList":[{"PolicyName":"p","PolicyDocument":"%7B%22Version%22%3A%222012-10-17%22%2C%22Statement%22%3A%5B%5D%7D"}]}]}`))
	f.Add([]byte(`{"RoleDetailList":[{"RoleName":"r","Arn":"arn:aws:iam::123456789012:role/r","AssumeRolePolicyDocument":{"Statement":{"Effect":"Deny","Principal":"*","Action":"*"}}}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		d, err := Parse(bytes.NewReader(data))
		if err != nil {
			return
		}
		res, err := Import(d, Options{})
		if err != nil {
			return
		}
		if _, err := config.Parse("fuzz.yaml", res.YAML); err != nil {
			t.Fatalf("the import wrote a spec that does not load: %v\n%s", err, res.YAML)
		}
		for _, b := range verify(d, res) {
			t.Error(b)
		}
	})
}

// TestTestedTagLeavesPrincipalOut: a tag the spec refuses goes quietly only when no
// policy tests a tag of its key; when one does, the principal goes whole (a Deny on
// aws:PrincipalTag could otherwise stop applying).
func TestTestedTagLeavesPrincipalOut(t *testing.T) {
	deny := Document(`{"Version":"2012-10-17","Statement":[{"Effect":"Deny","Action":"*","Resource":"*","Condition":{"StringEquals":{"aws:PrincipalTag/aws:quarantined":"yes"}}}]}`)
	d := &Details{UserDetailList: []UserDetail{
		{UserName: "kim", Arn: "arn:aws:iam::123456789012:user/kim", Tags: []Tag{{Key: "aws:quarantined", Value: "yes"}},
			UserPolicyList: []PolicyDetail{{PolicyName: "quarantine", PolicyDocument: deny}}},
		{UserName: "lee", Arn: "arn:aws:iam::123456789012:user/lee", Tags: []Tag{{Key: "aws:other", Value: "x"}, {Key: "team", Value: "a"}}},
	}}
	res, err := Import(d, Options{})
	if err != nil {
		t.Fatal(err)
	}
	wantNotes(t, res, [][2]string{
		{"user kim", "left out: its tag aws:quarantined is not carried"},
		{"user lee", "tag aws:other not carried"},
	})
	if lee, ok := res.Spec.User("lee"); !ok || lee.Tags["team"] != "a" {
		t.Errorf("lee: %+v", lee)
	}
	for _, b := range verify(d, res) {
		t.Error(b)
	}
}
