package detect

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/phantom-perimeter/phantom/internal/audit"
	"github.com/phantom-perimeter/phantom/internal/config"
)

func pathUser(path, name string) audit.UserIdentity {
	u := user(name, "AKIA"+strings.ToUpper(name))
	u.ARN = "arn:aws:iam::" + acct + ":user" + path + name
	return u
}

func types(fs []Finding) []string {
	var out []string
	for _, f := range fs {
		out = append(out, f.Type)
	}
	return out
}

// TestPeerBaseline: a new user is compared with its peer group from its first call: what
// its peers do is not news, what none of them ever did is; an established user is
// compared with itself.
func TestPeerBaseline(t *testing.T) {
	d, err := New(Config{LearningPeriod: 7 * 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	g := new(gen)
	for day := 0; day < 9; day++ {
		for i, name := range []string{"dev1", "dev2", "dev3"} {
			at := t0.Add(time.Duration(day)*24*time.Hour + time.Duration(i)*time.Minute)
			g.add(pathUser("/engineering/", name), at, "ec2.amazonaws.com", "DescribeInstances", "198.51.100.10", cli, "", nil)
			g.add(pathUser("/engineering/", name), at.Add(time.Second), "s3.amazonaws.com", "ListBuckets", "198.51.100.10", cli, "", nil)
		}
	}
	for _, ev := range g.evs {
		if fs := d.Observe(ev); len(fs) > 0 {
			t.Fatalf("routine: %v", types(fs))
		}
	}
	day9 := t0.Add(9*24*time.Hour + time.Hour)
	newDev := pathUser("/engineering/", "newdev")
	check := func(ev *audit.Event, want string) {
		t.Helper()
		fs := d.Observe(ev)
		switch {
		case want == "" && len(fs) > 0:
			t.Errorf("%s by %s: %v, want none", ev.EventName, ev.UserIdentity.UserName, types(fs))
		case want != "" && (len(fs) != 1 || fs[0].Type != want):
			t.Errorf("%s by %s: %v, want %s", ev.EventName, ev.UserIdentity.UserName, types(fs), want)
		}
	}
	// What the peers do: nothing to say, though the user is new.
	check(g.add(newDev, day9, "ec2.amazonaws.com", "DescribeInstances", "198.51.100.10", cli, "", nil), "")
	// What no peer ever did: compared with the established group.
	check(g.add(newDev, day9.Add(time.Minute), "iam.amazonaws.com", "ListUsers", "198.51.100.10", cli, "", nil), "Discovery:IAMUser/AnomalousBehavior")
	// A sensitive API no peer ever called, on the user's first day.
	check(g.add(newDev, day9.Add(2*time.Minute), "iam.amazonaws.com", "CreateAccessKey", "198.51.100.10", cli, "", map[string]any{"userName": "ci-bot"}),
		"Persistence:IAMUser/AnomalousBehavior")
	// An established user calling something new from its usual network, agent and hour:
	// its own baseline decides, and nothing in it is unusual.
	check(g.add(pathUser("/engineering/", "dev1"), t0.Add(9*24*time.Hour), "iam.amazonaws.com", "ListUsers", "198.51.100.10", cli, "", nil), "")
	// ...the same from a new network is.
	check(g.add(pathUser("/engineering/", "dev2"), t0.Add(9*24*time.Hour), "iam.amazonaws.com", "ListRoles", "203.0.113.9", cli, "", nil), "Discovery:IAMUser/AnomalousBehavior")
	// A user of another group (another path) calling what engineering does: new to its
	// own group, which has no history: nothing to compare with but the sensitive table.
	check(g.add(pathUser("/finance/", "fin1"), day9, "ec2.amazonaws.com", "DescribeInstances", "198.51.100.20", cli, "", nil), "")
}

// TestPeerGroupsFromSpec: principals with the same managed policies share a group,
// whatever their paths; the others fall back to their IAM path.
func TestPeerGroupsFromSpec(t *testing.T) {
	ro := &config.ManagedPolicy{Name: "ReadOnly"}
	deploy := &config.ManagedPolicy{Name: "Deploy"}
	spec := &config.Spec{
		Users: []*config.User{
			{ARN: "arn:aws:iam::" + acct + ":user/a/alice", ManagedPolicies: []*config.ManagedPolicy{ro, deploy}},
			{ARN: "arn:aws:iam::" + acct + ":user/b/bob", ManagedPolicies: []*config.ManagedPolicy{deploy, ro}},
			{ARN: "arn:aws:iam::" + acct + ":user/carol"},
		},
		Roles: []*config.Role{{ARN: "arn:aws:iam::" + acct + ":role/ci", ManagedPolicies: []*config.ManagedPolicy{deploy}}},
	}
	g := PeerGroups(spec)
	d, _ := New(Config{PeerGroups: g})
	alice, bob := d.peerGroup("arn:aws:iam::"+acct+":user/a/alice"), d.peerGroup("arn:aws:iam::"+acct+":user/b/bob")
	if alice != bob || alice != "policies Deploy,ReadOnly" {
		t.Errorf("alice %q, bob %q", alice, bob)
	}
	if c := d.peerGroup("arn:aws:iam::" + acct + ":user/carol"); c != acct+" user /" {
		t.Errorf("carol %q", c)
	}
	if r := d.peerGroup("arn:aws:iam::" + acct + ":role/ci"); r != "policies Deploy" {
		t.Errorf("ci %q", r)
	}
	for arn, want := range map[string]string{
		"arn:aws:iam::" + acct + ":role/aws-reserved/sso.amazonaws.com/AWSReservedSSO_Dev": acct + " role /aws-reserved/sso.amazonaws.com/",
		"arn:aws:iam::" + acct + ":root":                    acct + " root",
		"arn:aws:sts::" + acct + ":assumed-role/web/i-0123": acct + " role /",
		"AKIAEXAMPLE": "other",
	} {
		if got := arnGroup(arn); got != want {
			t.Errorf("arnGroup(%s) = %q, want %q", arn, got, want)
		}
	}
}

// TestSequence: a discovery burst new to a session followed by a foothold is one
// high-severity finding listing the steps (and later footholds join it); the foothold
// alone is a first-use finding; a burst of the session's routine reads is not a burst.
func TestSequence(t *testing.T) {
	d, _ := New(Config{LearningPeriod: 7 * 24 * time.Hour})
	g := new(gen)
	s := nodeSession("web", "i-0aaaaaaaaaaaaaaa1", "ASIAWEB1")
	at := t0
	for i, name := range []string{"GetCallerIdentity", "ListUsers", "ListRoles", "ListRoles", "GetAccountAuthorizationDetails", "ListPolicies"} {
		src := "iam.amazonaws.com"
		if i == 0 {
			src = "sts.amazonaws.com"
		}
		d.Observe(g.add(s, at.Add(time.Duration(i)*10*time.Second), src, name, "10.0.1.5", cli, "", nil))
	}
	trust := `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::999988887777:root"},"Action":"sts:AssumeRole"}]}`
	fs := d.Observe(g.add(s, at.Add(2*time.Minute), "iam.amazonaws.com", "UpdateAssumeRolePolicy", "10.0.1.5", cli, "", map[string]any{"roleName": "admin", "policyDocument": trust}))
	if len(fs) != 1 || fs[0].Type != TypeSequence || fs[0].Severity < 8.5 || Tactic(fs[0]) != "Persistence" {
		t.Fatalf("sequence: %v", types(fs))
	}
	steps := fs[0].Service.AdditionalInfo["steps"].([]string)
	if len(steps) != 6 || steps[5] != "UpdateAssumeRolePolicy (Persistence)" || steps[2] != "ListRoles x2" {
		t.Errorf("steps %q", steps)
	}
	fs = d.Observe(g.add(s, at.Add(3*time.Minute), "iam.amazonaws.com", "AttachRolePolicy", "10.0.1.5", cli, "", map[string]any{"roleName": "admin", "policyArn": "arn:aws:iam::aws:policy/AdministratorAccess"}))
	if len(fs) != 1 || fs[0].Type != TypeSequence || fs[0].Service.Count != 2 {
		t.Fatalf("second foothold: %+v", fs)
	}
	if steps := fs[0].Service.AdditionalInfo["steps"].([]string); steps[len(steps)-1] != "AttachRolePolicy (PrivilegeEscalation)" {
		t.Errorf("steps after the second foothold %q", steps)
	}

	// The foothold alone, by a principal of another peer group: a first-use finding. (A
	// session of another role under the same path is web's peer: no news.)
	if fs := d.Observe(g.add(nodeSession("api", "i-0bbbbbbbbbbbbbbb2", "ASIAAPI2"), at, "iam.amazonaws.com", "UpdateAssumeRolePolicy", "10.0.2.5", cli, "",
		map[string]any{"roleName": "admin", "policyDocument": trust})); len(fs) != 0 {
		t.Errorf("foothold by a peer: %v", types(fs))
	}
	fs = d.Observe(g.add(pathUser("/ops/", "opsy"), at, "iam.amazonaws.com", "UpdateAssumeRolePolicy", "198.51.100.5", cli, "", map[string]any{"roleName": "admin", "policyDocument": trust}))
	if len(fs) != 1 || fs[0].Type != "Persistence:IAMUser/AnomalousBehavior" || fs[0].Service.AdditionalInfo["target"] != "roleName=admin" {
		t.Errorf("foothold alone: %v", types(fs))
	}

	// Routine: a role that lists the same things every day, then writes something new.
	tf := nodeSession("terraform", "run", "ASIATF")
	for day := 0; day < 3; day++ {
		for i, name := range []string{"ListRoles", "ListPolicies", "ListUsers", "ListRoles", "ListPolicies", "ListUsers"} {
			d.Observe(g.add(tf, t0.Add(time.Duration(day)*24*time.Hour+time.Duration(i)*time.Second), "iam.amazonaws.com", name, "10.0.3.5", cli, "", nil))
		}
	}
	fs = d.Observe(g.add(tf, t0.Add(2*24*time.Hour+time.Minute), "iam.amazonaws.com", "CreateRole", "10.0.3.5", cli, "", map[string]any{"roleName": "x"}))
	for _, f := range fs {
		if f.Type == TypeSequence {
			t.Errorf("routine reads then a write made a sequence: %s", f.Description)
		}
	}
}

// TestSigmaRulesReload: the detector's Sigma rules are swapped whole: a reload reads the
// directory again, and one that cannot be read keeps the rules it had.
func TestSigmaRulesReload(t *testing.T) {
	dir := t.TempDir()
	write := func(name, eventName string) {
		os.WriteFile(filepath.Join(dir, "rule.yml"), []byte("title: "+name+"\nid: "+name+"\nauthor: tests\nlevel: low\n"+
			"logsource:\n  product: aws\n  service: cloudtrail\ndetection:\n  sel:\n    eventName: "+eventName+"\n  condition: sel\n"), 0o600)
	}
	write("rule-a", "ListBuckets")
	d, err := New(Config{SigmaRules: dir})
	if err != nil {
		t.Fatal(err)
	}
	g := new(gen)
	sigmaTypes := func(ev *audit.Event) []string {
		var out []string
		for _, f := range d.Observe(ev) {
			if ruleOf(f) == "sigma" {
				out = append(out, f.Type)
			}
		}
		return out
	}
	alice := user("alice", "AKIAALICE")
	if got := sigmaTypes(g.add(alice, t0, "s3.amazonaws.com", "ListBuckets", "198.51.100.1", cli, "", nil)); len(got) != 1 || got[0] != "Policy:IAMUser/Sigma!rule-a" {
		t.Fatalf("rule a: %v", got)
	}
	write("rule-b", "GetCallerIdentity")
	if err := d.Reload(); err != nil {
		t.Fatal(err)
	}
	if got := sigmaTypes(g.add(alice, t0.Add(time.Second), "s3.amazonaws.com", "ListBuckets", "198.51.100.1", cli, "", nil)); len(got) != 0 {
		t.Errorf("rule a after the reload: %v", got)
	}
	if got := sigmaTypes(g.add(alice, t0.Add(2*time.Second), "sts.amazonaws.com", "GetCallerIdentity", "198.51.100.1", cli, "", nil)); len(got) != 1 {
		t.Errorf("rule b: %v", got)
	}
	if _, err := d.SetSigmaRules(filepath.Join(dir, "absent")); err == nil {
		t.Fatal("an absent directory loaded")
	}
	if got := sigmaTypes(g.add(alice, t0.Add(3*time.Second), "sts.amazonaws.com", "GetCallerIdentity", "198.51.100.1", cli, "", nil)); len(got) != 1 {
		t.Errorf("rule b after a failed load: %v", got)
	}
}
