package detect

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/phantom-perimeter/phantom/internal/audit"
	"github.com/phantom-perimeter/phantom/internal/config"
)

const acct = "123456789012"

var t0 = time.Date(2026, 11, 1, 9, 0, 0, 0, time.UTC)

// gen builds CloudTrail events the way AWS writes them.
type gen struct {
	n   int
	evs []*audit.Event
}

func user(name, key string) audit.UserIdentity {
	return audit.UserIdentity{Type: "IAMUser", PrincipalID: "AIDA" + strings.ToUpper(name), ARN: "arn:aws:iam::" + acct + ":user/" + name,
		AccountID: acct, AccessKeyID: key, UserName: name}
}

func nodeSession(role, instance, key string) audit.UserIdentity {
	return audit.UserIdentity{Type: "AssumedRole", PrincipalID: "AROAROLE:" + instance,
		ARN: "arn:aws:sts::" + acct + ":assumed-role/" + role + "/" + instance, AccountID: acct, AccessKeyID: key,
		SessionContext: &audit.SessionContext{EC2RoleDelivery: "2.0", Attributes: map[string]string{"mfaAuthenticated": "false"},
			SessionIssuer: &audit.SessionIssuer{Type: "Role", ARN: "arn:aws:iam::" + acct + ":role/" + role, UserName: role, AccountID: acct}}}
}

func (g *gen) add(u audit.UserIdentity, at time.Time, source, name, ip, ua, errCode string, params map[string]any) *audit.Event {
	g.n++
	ev := &audit.Event{EventVersion: "1.08", UserIdentity: u, EventTime: at, EventSource: source, EventName: name,
		AWSRegion: "us-east-1", SourceIPAddress: ip, UserAgent: ua, ErrorCode: errCode, RequestParameters: params,
		EventID: fmt.Sprintf("ev-%06d", g.n), RequestID: fmt.Sprintf("req-%06d", g.n), EventType: "AwsApiCall",
		ManagementEvent: true, RecipientAccountID: acct, EventCategory: "Management"}
	g.evs = append(g.evs, ev)
	return ev
}

const cli = "aws-cli/2.15.30 Python/3.11.8 Linux/6.1 exe/x86_64.amzn.2023"

// scenarios writes the known benign and malicious scenarios as CloudTrail log files in
// dir and returns the findings they must give: "type principal" -> count.
func scenarios(t *testing.T, dir string) map[string]int {
	t.Helper()
	g := new(gen)
	want := map[string]int{}
	arn := func(u audit.UserIdentity) string { return u.ARN }

	// Benign: alice works 9:00-17:00 from one office network for 9 days, always the same calls.
	alice := user("alice", "AKIAALICE0000000000A")
	for day := 0; day < 9; day++ {
		for h := 0; h < 8; h++ {
			at := t0.Add(time.Duration(day)*24*time.Hour + time.Duration(h)*time.Hour)
			g.add(alice, at, "s3.amazonaws.com", "ListBuckets", "198.51.100.10", cli, "", nil)
			g.add(alice, at.Add(time.Minute), "ec2.amazonaws.com", "DescribeInstances", "198.51.100.11", cli, "", nil)
		}
	}
	// Benign: an instance's session used from the instance only, through its endpoint.
	web := nodeSession("web", "i-0123456789abcdef0", "ASIAWEB0000000000001")
	for i := 0; i < 20; i++ {
		g.add(web, t0.Add(time.Duration(i)*time.Hour), "s3.amazonaws.com", "GetObject", "10.0.1.5", "aws-sdk-go-v2/1.30.0", "", map[string]any{"bucketName": "assets"})
	}
	// Benign: a client with a stale policy retrying one refused call 20 times in a minute.
	stale := user("batch", "AKIABATCH00000000001")
	for i := 0; i < 20; i++ {
		g.add(stale, t0.Add(30*time.Hour+time.Duration(i)*2*time.Second), "sqs.amazonaws.com", "SendMessage", "198.51.100.20", cli, "AccessDenied", map[string]any{"queueUrl": "https://sqs/q1"})
	}
	// Benign: an expired session's one refresh-time refusal is still a finding? No: ExpiredToken is
	// reported (low) — see the malicious list; benign here are calls without error codes only.

	// Malicious: instance credentials used from outside, with a desktop CLI.
	stolen := nodeSession("api", "i-0fedcba9876543210", "ASIASTOLEN0000000001")
	g.add(stolen, t0.Add(2*time.Hour), "s3.amazonaws.com", "ListBuckets", "10.0.3.9", "aws-sdk-go-v2/1.30.0", "", nil)
	g.add(stolen, t0.Add(3*time.Hour), "s3.amazonaws.com", "ListBuckets", "203.0.113.77", "aws-cli/1.18.136 Python/3.8.5 Darwin/19.5.0 botocore/1.17.59", "", nil)
	g.add(stolen, t0.Add(3*time.Hour+time.Second), "s3.amazonaws.com", "GetObject", "203.0.113.77", "aws-cli/1.18.136 Python/3.8.5 Darwin/19.5.0 botocore/1.17.59", "", map[string]any{"bucketName": "data", "key": "x"})
	want[TypeExfilOutside+" "+arn(stolen)] = 2

	// Malicious: a Phantom node session used from another address in the VPC (gateway event).
	node := nodeSession("worker", "node-a", "ASIANODEA00000000001")
	ev := g.add(node, t0.Add(5*time.Hour), "execute-api.amazonaws.com", "Invoke", "10.0.9.9", "Boto3/1.34", "", nil)
	ev.VPCEndpointID = "vpce-0a1"
	ev.AdditionalEventData = map[string]any{"sessionBinding": map[string]any{"node": "node-a", "vpc": "vpc-1", "privateIp": "10.0.1.7", "vpcEndpointId": "vpce-0a1"}}
	ev = g.add(node, t0.Add(5*time.Hour+time.Second), "execute-api.amazonaws.com", "Invoke", "10.0.1.7", "Boto3/1.34", "", nil)
	ev.VPCEndpointID = "vpce-0a1"
	ev.AdditionalEventData = map[string]any{"sessionBinding": map[string]any{"node": "node-a", "vpc": "vpc-1", "privateIp": "10.0.1.7", "vpcEndpointId": "vpce-0a1"}}
	want[TypeExfilInside+" "+arn(node)] = 1

	// Malicious: calls from a Tor exit and from a listed network.
	tor := user("carol", "AKIACAROL00000000001")
	g.add(tor, t0.Add(6*time.Hour), "sts.amazonaws.com", "GetCallerIdentity", "185.220.101.4", cli, "", nil)
	want[TypeTor+" "+arn(tor)] = 1
	bad := user("dave", "AKIADAVE000000000001")
	g.add(bad, t0.Add(6*time.Hour), "sts.amazonaws.com", "GetCallerIdentity", "192.0.2.200", cli, "", nil)
	want[TypeMaliciousIP+" "+arn(bad)] = 1

	// Malicious: root credentials.
	root := audit.UserIdentity{Type: "Root", PrincipalID: acct, ARN: "arn:aws:iam::" + acct + ":root", AccountID: acct, AccessKeyID: "AKIAROOT000000000001"}
	g.add(root, t0.Add(7*time.Hour), "iam.amazonaws.com", "ListUsers", "198.51.100.99", cli, "", nil)
	want[TypeRoot+" "+arn(root)] = 1

	// Malicious: logging stopped (twice: one finding, count 2) and Phantom's audit log cut.
	eve := user("eve", "AKIAEVE0000000000001")
	g.add(eve, t0.Add(8*time.Hour), "cloudtrail.amazonaws.com", "StopLogging", "198.51.100.30", cli, "", map[string]any{"name": "main"})
	g.add(eve, t0.Add(8*time.Hour+time.Minute), "cloudtrail.amazonaws.com", "StopLogging", "198.51.100.30", cli, "", map[string]any{"name": "main"})
	want[TypeLoggingOff+" "+arn(eve)] = 2
	rec := g.add(audit.UserIdentity{}, t0.Add(9*time.Hour), "audit.phantom.internal", "AuditLogRecovered", "", "", "", nil)
	rec.EventType = "AwsServiceEvent"
	rec.AdditionalEventData = map[string]any{"segment": "000002.log", "tornBytes": 77}
	want[TypeAuditTampered+" anonymous"] = 1

	// Malicious: an access-denied sweep over 12 secrets in 24 s.
	frank := user("frank", "AKIAFRANK00000000001")
	for i := 0; i < 12; i++ {
		g.add(frank, t0.Add(10*time.Hour+time.Duration(i)*2*time.Second), "secretsmanager.amazonaws.com", "DescribeSecret", "198.51.100.40", cli, "AccessDeniedException",
			map[string]any{"secretId": fmt.Sprintf("prod/db-%d", i)})
	}
	want[TypeAccessDenied+" "+arn(frank)] = 3 // the 10th, 11th and 12th refusal

	// Malicious: signature brute force on one key (10 bad signatures in 10 s).
	grace := audit.UserIdentity{AccessKeyID: "AKIAGRACE00000000001"}
	for i := 0; i < 10; i++ {
		g.add(grace, t0.Add(11*time.Hour+time.Duration(i)*time.Second), "sts.amazonaws.com", "GetCallerIdentity", "203.0.113.50", "curl/8.5", "SignatureDoesNotMatch", nil)
	}
	want[TypeBruteForce+" AKIAGRACE00000000001"] = 1

	// Malicious: an unknown key.
	g.add(audit.UserIdentity{AccessKeyID: "AKIANOSUCHKEY0000001"}, t0.Add(12*time.Hour), "sts.amazonaws.com", "GetCallerIdentity", "203.0.113.51", cli, "InvalidClientTokenId", nil)
	want[TypeBadCredentials+" AKIANOSUCHKEY0000001"] = 1

	// Malicious: a workload refused by the egress proxy (twice to one host: one finding).
	wl := nodeSession("worker", "node-b", "ASIANODEB00000000001")
	wl.SessionContext.EC2RoleDelivery = ""
	for i := 0; i < 2; i++ {
		e := g.add(wl, t0.Add(13*time.Hour+time.Duration(i)*time.Second), "egress.phantom.amazonaws.com", "Connect", "10.0.1.8", "", "DestinationNotAllowed", map[string]any{"host": "pastebin.com", "port": 443.0})
		e.EventType, e.EventCategory = "AwsVpceEvent", "NetworkActivity"
	}
	want[TypeEgressDenied+" "+arn(wl)] = 2

	// Malicious: an administrator's long-term key in use.
	admin := user("ops-admin", "AKIAOPSADMIN00000001")
	g.add(admin, t0.Add(14*time.Hour), "s3.amazonaws.com", "ListBuckets", "198.51.100.10", cli, "", nil)
	want[TypeAdminKey+" "+arn(admin)] = 1

	// Malicious: mallory learns a routine for 8 days, then reads secrets from a new network.
	mallory := user("mallory", "AKIAMALLORY000000001")
	for day := 0; day < 8; day++ {
		g.add(mallory, t0.Add(time.Duration(day)*24*time.Hour+time.Hour), "s3.amazonaws.com", "ListBuckets", "198.51.100.60", cli, "", nil)
	}
	g.add(mallory, t0.Add(8*24*time.Hour+time.Hour+time.Minute), "secretsmanager.amazonaws.com", "GetSecretValue", "203.0.113.90", cli, "", map[string]any{"secretId": "prod/db"})
	want["CredentialAccess:IAMUser/AnomalousBehavior "+arn(mallory)] = 1

	// Files: CloudTrail's log-file format, gzipped, two files, events not in time order.
	sort.SliceStable(g.evs, func(i, j int) bool { return i%7 < j%7 })
	half := len(g.evs) / 2
	writeRecords(t, filepath.Join(dir, "a_CloudTrail_us-east-1_1.json.gz"), g.evs[:half], true)
	writeRecords(t, filepath.Join(dir, "b_CloudTrail_us-east-1_2.json"), g.evs[half:], false)
	return want
}

func writeRecords(t testing.TB, path string, evs []*audit.Event, gz bool) {
	t.Helper()
	data, err := json.Marshal(map[string]any{"Records": evs})
	if err != nil {
		t.Fatal(err)
	}
	if gz {
		var b bytes.Buffer
		zw := gzip.NewWriter(&b)
		zw.Write(data)
		zw.Close()
		data = b.Bytes()
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

func threatLists(t *testing.T, dir string) []config.ThreatList {
	t.Helper()
	tor := filepath.Join(dir, "tor-exits.txt")
	custom := filepath.Join(dir, "bad.txt")
	os.WriteFile(tor, []byte("# Tor exits\n185.220.101.4\n\n2001:db8::1\n"), 0o600)
	os.WriteFile(custom, []byte("192.0.2.0/24 # test net\n"), 0o600)
	return []config.ThreatList{{Name: "tor-exits", File: tor}, {Name: "botnet", File: custom}}
}

// TestBatchScenarios: the known scenarios give the expected findings and no others.
func TestBatchScenarios(t *testing.T) {
	dir := t.TempDir()
	logs := filepath.Join(dir, "logs")
	os.Mkdir(logs, 0o700)
	want := scenarios(t, logs)
	d, err := New(Config{LearningPeriod: 7 * 24 * time.Hour, ThreatLists: threatLists(t, dir), AdminUsers: []string{"ops-admin"},
		Now: func() time.Time { return t0 }})
	if err != nil {
		t.Fatal(err)
	}
	if rep, err := ReadEvents(logs, func(ev *audit.Event) error { d.Observe(ev); return nil }); err != nil || len(rep.Problems) > 0 {
		t.Fatal(err, rep.Problems)
	}
	got := map[string]int{}
	for _, f := range d.Findings() {
		p := f.Resource.AccessKeyDetails.PrincipalARN
		if p == "" {
			p = f.Resource.AccessKeyDetails.AccessKeyID
		}
		if p == "" {
			p = "anonymous"
		}
		got[f.Type+" "+p] += f.Service.Count
		checkShape(t, f)
	}
	for k, n := range want {
		if got[k] != n {
			t.Errorf("finding %s: count %d, want %d", k, got[k], n)
		}
	}
	for k, n := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("unexpected finding %s (count %d)", k, n)
		}
	}
}

func checkShape(t *testing.T, f Finding) {
	t.Helper()
	if len(f.ID) != 32 || f.Severity < 1 || f.Severity > 8.9 || f.SchemaVersion != "2.0" || f.Title == "" || f.Description == "" ||
		f.Service.Count < 1 || f.Service.EventFirstSeen.After(f.Service.EventLastSeen) || f.Service.Action.AWSAPICallAction == nil ||
		f.Resource.ResourceType != "AccessKey" || len(f.Service.Evidence) == 0 {
		t.Errorf("finding shape: %+v", f)
	}
}

// TestObserveDedup: a repeat updates the same finding (same id, count up, last seen moves).
func TestObserveDedup(t *testing.T) {
	d, _ := New(Config{})
	g := new(gen)
	root := audit.UserIdentity{Type: "Root", ARN: "arn:aws:iam::" + acct + ":root", AccountID: acct}
	a := d.Observe(g.add(root, t0, "iam.amazonaws.com", "ListUsers", "198.51.100.1", cli, "", nil))
	b := d.Observe(g.add(root, t0.Add(time.Hour), "iam.amazonaws.com", "ListRoles", "198.51.100.1", cli, "", nil))
	var ra, rb *Finding
	for i := range a {
		if a[i].Type == TypeRoot {
			ra = &a[i]
		}
	}
	for i := range b {
		if b[i].Type == TypeRoot {
			rb = &b[i]
		}
	}
	if ra == nil || rb == nil || ra.ID != rb.ID || rb.Service.Count != 2 || !rb.Service.EventLastSeen.Equal(t0.Add(time.Hour)) ||
		!rb.Service.EventFirstSeen.Equal(t0) || len(rb.Service.Evidence) != 2 {
		t.Fatalf("dedup: %+v / %+v", ra, rb)
	}
	// A second network is a second root finding.
	c := d.Observe(g.add(root, t0.Add(2*time.Hour), "iam.amazonaws.com", "ListUsers", "203.0.113.1", cli, "", nil))
	for _, f := range c {
		if f.Type == TypeRoot && f.ID == ra.ID {
			t.Fatal("root from a new address merged into the first finding")
		}
	}
}

// TestRestore: a detector given the findings an earlier run stored continues their
// count and first-seen time on a repeat, instead of starting over at 1.
func TestRestore(t *testing.T) {
	g := new(gen)
	root := audit.UserIdentity{Type: "Root", ARN: "arn:aws:iam::" + acct + ":root", AccountID: acct}
	first, _ := New(Config{})
	var stored []Finding
	for i := range 3 {
		for _, f := range first.Observe(g.add(root, t0.Add(time.Duration(i)*time.Minute), "iam.amazonaws.com", "ListUsers", "198.51.100.1", cli, "", nil)) {
			if f.Type == TypeRoot {
				stored = []Finding{f}
			}
		}
	}
	if len(stored) != 1 || stored[0].Service.Count != 3 {
		t.Fatalf("first run: %+v", stored)
	}
	second, _ := New(Config{})
	second.Restore(stored)
	second.Restore(stored) // again: kept, not doubled
	var got *Finding
	for _, f := range second.Observe(g.add(root, t0.Add(time.Hour), "iam.amazonaws.com", "ListRoles", "198.51.100.1", cli, "", nil)) {
		if f.Type == TypeRoot {
			got = &f
		}
	}
	if got == nil || got.ID != stored[0].ID || got.Service.Count != 4 || !got.Service.EventFirstSeen.Equal(t0) || len(got.Service.Evidence) != 4 {
		t.Fatalf("after restore: %+v, want the stored finding with count 4", got)
	}
	roots := 0
	for _, f := range second.Findings() {
		if f.Type == TypeRoot {
			roots++
		}
	}
	if roots != 1 {
		t.Fatalf("%d root findings after restore, want the one", roots)
	}
}

// TestThreatListReload: lists swap whole; a bad file keeps the old set.
func TestThreatListReload(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "list")
	os.WriteFile(file, []byte("203.0.113.5\n"), 0o600)
	d, err := New(Config{ThreatLists: []config.ThreatList{{Name: "intel", File: file}}})
	if err != nil {
		t.Fatal(err)
	}
	g := new(gen)
	u := user("x", "AKIAX")
	hits := func(ip string) int {
		n := 0
		for _, f := range d.Observe(g.add(u, t0, "sts.amazonaws.com", "GetCallerIdentity", ip, cli, "", nil)) {
			if f.Type == TypeMaliciousIP {
				n++
			}
		}
		return n
	}
	if hits("203.0.113.5") != 1 || hits("203.0.113.6") != 0 {
		t.Fatal("initial list")
	}
	os.WriteFile(file, []byte("203.0.113.0/28\n"), 0o600)
	if err := d.Reload(); err != nil {
		t.Fatal(err)
	}
	if hits("203.0.113.6") != 1 {
		t.Fatal("reloaded list not used")
	}
	os.WriteFile(file, []byte("not an address\n"), 0o600)
	if err := d.Reload(); err == nil {
		t.Fatal("bad list accepted")
	}
	if hits("203.0.113.7") != 1 {
		t.Fatal("old list lost after a failed reload")
	}
	if _, err := New(Config{ThreatLists: []config.ThreatList{{Name: "x", File: filepath.Join(dir, "absent")}}}); err == nil {
		t.Fatal("missing list accepted")
	}
}

// TestReadFormats: every file format gives the same events.
func TestReadFormats(t *testing.T) {
	dir := t.TempDir()
	ev := `{"eventTime":"2026-11-01T09:00:01Z","eventName":"B","eventSource":"s3.amazonaws.com","userIdentity":{"type":"IAMUser","arn":"arn:aws:iam::1:user/u"},"requestParameters":"odd type"}`
	ev0 := `{"@timestamp":"2026-11-01T09:00:00.000Z","eventName":"A","eventSource":"s3.amazonaws.com","userIdentity":{"type":"IAMUser","arn":"arn:aws:iam::1:user/u"}}`
	files := map[string]string{
		"records.json": `{"Records":[` + ev + `,` + ev0 + `]}`,
		"array.json":   `[` + ev + `,` + ev0 + `]`,
		"lines.jsonl":  ev + "\n" + ev0 + "\n",
		"chain.log":    `{"seq":1,"event":` + ev + `}` + "\n" + `{"seq":2,"event":` + ev0 + `}` + "\n",
	}
	for name, content := range files {
		t.Run(name, func(t *testing.T) {
			for _, gz := range []bool{false, true} {
				p := filepath.Join(dir, name)
				data := []byte(content)
				if gz {
					var b bytes.Buffer
					zw := gzip.NewWriter(&b)
					zw.Write(data)
					zw.Close()
					data = b.Bytes()
					p += ".gz"
				}
				os.WriteFile(p, data, 0o600)
				var names []string
				_, err := ReadEvents(p, func(e *audit.Event) error {
					names = append(names, e.EventName+e.EventTime.Format("05"))
					return nil
				})
				if err != nil || strings.Join(names, ",") != "A00,B01" {
					t.Fatalf("gz=%v: %v %v", gz, names, err)
				}
			}
		})
	}
	n := 0
	if rep, err := ReadEvents(dir, func(*audit.Event) error { n++; return nil }); err != nil || n != 16 || rep.Files != 8 || rep.Events != 16 {
		t.Fatalf("dir: %d events, %+v, %v", n, rep, err)
	}
	// A broken file, a file with one record in a time layout neither CloudTrail nor
	// Panther writes (no time zone), and a file that is JSON but not CloudTrail: the
	// read goes on, and says so.
	os.WriteFile(filepath.Join(dir, "broken.json"), []byte(`{"Records":[{`), 0o600)
	os.WriteFile(filepath.Join(dir, "mixed.jsonl"), []byte(`{"eventName":"A","eventTime":"2026-11-01T09:00:00Z"}
{"eventName":"B","eventTime":"2025-01-21T17:49:47"}
{"eventName":"C","eventTime":"2026-11-01T09:00:02Z"}
`), 0o600)
	os.WriteFile(filepath.Join(dir, "labels.json"), []byte(`[{"file":"x.json","label":"malicious"},{"file":"y.json"}]`), 0o600)
	n = 0
	rep, err := ReadEvents(dir, func(*audit.Event) error { n++; return nil })
	if err != nil || n != 18 || rep.Files != 9 || rep.Events != 18 {
		t.Fatalf("with broken files: %d events, %+v, %v", n, rep, err)
	}
	if len(rep.NotCloudTrail) != 1 || filepath.Base(rep.NotCloudTrail[0]) != "labels.json" {
		t.Fatalf("labels.json not skipped as not CloudTrail: %v", rep.NotCloudTrail)
	}
	badFiles, badRecords := rep.Unreadable()
	if badFiles != 1 || badRecords != 1 || len(rep.Problems) != 2 {
		t.Fatalf("unreadable: %d files, %d records, %v", badFiles, badRecords, rep.Problems)
	}
	for _, p := range rep.Problems {
		switch filepath.Base(p.File) {
		case "broken.json":
			if p.Records != 0 {
				t.Errorf("broken.json: %v", p)
			}
		case "mixed.jsonl":
			if p.Records != 1 || !strings.Contains(p.String(), "record 1: ") || !strings.Contains(p.String(), "2025-01-21T17:49:47") {
				t.Errorf("mixed.jsonl: %v", p)
			}
		default:
			t.Errorf("unexpected problem %v", p)
		}
	}
}

// TestPantherTime: events exported from Panther (and its rule tests) carry eventTime in
// Panther's layout, which Panther writes in UTC; they are read as such, with fractional
// seconds of any length or none, under any spelling of the key encoding/json accepts.
// A time without a zone in any other layout is refused with the reason.
func TestPantherTime(t *testing.T) {
	data := []byte(`{"eventName":"A","eventTime":"2025-01-21 17:49:47.000000000"}
{"eventName":"B","eventTime":"2022-11-21 18:06:52"}
{"eventName":"C","eventTime":"2021-01-24 04:55:45.125"}
{"eventname":"D","eventtime":"2021-01-24 04:55:46"}
{"eventName":"E","eventTime":"2021-01-24T04:55:47"}
{"eventName":"F","eventTime":"redacted"}
{"eventName":"G","eventTime":"2021-01-24 04:55:48 +0100"}
`)
	evs, bad, err := ParseEvents(data)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]time.Time{
		"A": time.Date(2025, 1, 21, 17, 49, 47, 0, time.UTC),
		"B": time.Date(2022, 11, 21, 18, 6, 52, 0, time.UTC),
		"C": time.Date(2021, 1, 24, 4, 55, 45, 125e6, time.UTC),
		"D": time.Date(2021, 1, 24, 4, 55, 46, 0, time.UTC),
	}
	if len(evs) != len(want) {
		t.Fatalf("%d events, want %d (bad: %v)", len(evs), len(want), bad)
	}
	for _, ev := range evs {
		if w := want[ev.EventName]; !ev.EventTime.Equal(w) || ev.EventTime.Location() != time.UTC {
			t.Errorf("%s: %v, want %v", ev.EventName, ev.EventTime, w)
		}
	}
	if len(bad) != 3 {
		t.Fatalf("bad records %v, want E, F, G", bad)
	}
	for _, b := range bad {
		if !strings.Contains(b.Error(), "neither RFC 3339") || !strings.Contains(b.Error(), "Panther") {
			t.Errorf("refusal without its reason: %v", b)
		}
	}
	// Phantom's own audit records are RFC 3339 only, as encoding/json reads time.Time.
	var d EventDecoder
	if _, err := d.Decode([]byte(`{"eventName":"A","eventTime":"2025-01-21 17:49:47.000000000"}`)); err == nil {
		t.Error("EventDecoder took Panther's layout in an audit record")
	}
}

func TestNewRejects(t *testing.T) {
	if _, err := New(Config{LearningPeriod: -time.Second}); err == nil {
		t.Fatal("negative learning period accepted")
	}
}

// TestBounded: state stays within MaxPrincipals whatever the number of principals.
func TestBounded(t *testing.T) {
	d, _ := New(Config{MaxPrincipals: 100, MaxFindings: 50})
	g := new(gen)
	for i := 0; i < 5000; i++ {
		u := user(fmt.Sprintf("u%d", i), fmt.Sprintf("AKIA%d", i))
		ev := g.add(u, t0.Add(time.Duration(i)*time.Second), "cloudtrail.amazonaws.com", "StopLogging", fmt.Sprintf("198.51.%d.%d", i/256%256, i%256), cli, "AccessDenied", nil)
		d.Observe(ev)
		g.evs = g.evs[:0]
	}
	if d.baselines.len() > 100 || d.denied.len() > 100 || d.ipUsers.len() > 100 || d.findings.len() > 50 {
		t.Fatalf("state past bounds: %d %d %d %d", d.baselines.len(), d.denied.len(), d.ipUsers.len(), d.findings.len())
	}
}

// TestClaimedIdentity: a request that failed authentication names only the identity it
// claims (CloudTrail even writes the ARN of the key it named); its findings are marked
// claimed and never merge with the verified principal's, so responses (which act only on
// verified principals) cannot be steered at someone by naming their key.
func TestClaimedIdentity(t *testing.T) {
	list := filepath.Join(t.TempDir(), "bad.txt")
	if err := os.WriteFile(list, []byte("198.51.100.66\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	d, err := New(Config{ThreatLists: []config.ThreatList{{Name: "bad", File: list}}})
	if err != nil {
		t.Fatal(err)
	}
	g := new(gen)
	alice := user("alice", "AKIAALICEALICEALICE1")
	find := func(fs []Finding) *Finding {
		for i := range fs {
			if fs[i].Type == TypeMaliciousIP {
				return &fs[i]
			}
		}
		t.Fatalf("no %s finding in %d", TypeMaliciousIP, len(fs))
		return nil
	}
	// Phantom's gateway records a bad signature with the claimed key only; AWS with the
	// ARN too. Both are claims.
	phantom := find(d.Observe(g.add(audit.UserIdentity{AccessKeyID: alice.AccessKeyID}, t0, "execute-api.amazonaws.com", "Invoke", "198.51.100.66", cli, "SignatureDoesNotMatch", nil)))
	aws := find(d.Observe(g.add(alice, t0.Add(time.Second), "sts.amazonaws.com", "GetCallerIdentity", "198.51.100.66", cli, "SignatureDoesNotMatch", nil)))
	verified := find(d.Observe(g.add(alice, t0.Add(2*time.Second), "sts.amazonaws.com", "GetCallerIdentity", "198.51.100.66", cli, "", nil)))
	denied := find(d.Observe(g.add(alice, t0.Add(3*time.Second), "sts.amazonaws.com", "AssumeRole", "198.51.100.66", cli, "AccessDenied", nil)))
	for name, f := range map[string]*Finding{"phantom's bad signature": phantom, "aws's bad signature": aws} {
		if !f.Resource.AccessKeyDetails.Claimed {
			t.Errorf("%s: finding not marked claimed: %+v", name, f.Resource.AccessKeyDetails)
		}
	}
	if verified.Resource.AccessKeyDetails.Claimed || verified.ID == aws.ID {
		t.Errorf("the verified call's finding is claimed or shares the claimed finding's id")
	}
	if denied.ID != verified.ID || denied.Resource.AccessKeyDetails.Claimed {
		t.Errorf("an authenticated call refused by policy is the verified principal's: %+v", denied)
	}
}

// TestEvictedFindingStartsAgain: a finding dropped past MaxFindings (here by findings
// an earlier run stored, Restore) is not found again through the handle the detector
// keeps on it (findingRef): its principal's next hit starts a new one at count 1, while
// a finding still held counts on.
func TestEvictedFindingStartsAgain(t *testing.T) {
	d, _ := New(Config{MaxFindings: 3})
	g := new(gen)
	hit := func(name string, at int) Finding {
		t.Helper()
		ev := g.add(user(name, "AKIA"+strings.ToUpper(name)), t0.Add(time.Duration(at)*time.Second), "cloudtrail.amazonaws.com", "StopLogging", "198.51.100.7", cli, "", nil)
		for _, f := range d.Observe(ev) {
			if f.Type == TypeLoggingOff {
				return f
			}
		}
		t.Fatalf("%s: no %s finding", name, TypeLoggingOff)
		return Finding{}
	}
	a := hit("a", 0)
	if f := hit("a", 1); f.Service.Count != 2 {
		t.Fatalf("a's finding held: count %d, want 2", f.Service.Count)
	}
	b := hit("b", 2)
	d.Restore([]Finding{{ID: "stored-1"}, {ID: "stored-2"}}) // a's finding is the least recently used: dropped
	if f := hit("a", 3); f.Service.Count != 1 || f.ID != a.ID || !f.Service.EventFirstSeen.Equal(t0.Add(3*time.Second)) {
		t.Fatalf("a's dropped finding: count %d, first seen %s; want a new one (same id) at count 1", f.Service.Count, f.Service.EventFirstSeen)
	}
	if _, held := d.findings.peek(b.ID); held {
		t.Fatal("b's finding held past MaxFindings")
	}
	if f := hit("a", 4); f.Service.Count != 2 {
		t.Fatalf("a's new finding: count %d, want 2", f.Service.Count)
	}
	if n := d.findings.len(); n != 3 {
		t.Fatalf("%d findings held, want 3", n)
	}
}
