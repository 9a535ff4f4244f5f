package detect

import (
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/phantom-perimeter/phantom/internal/audit"
)

// A benign soak: two weeks of one account's CloudTrail, generated with the rhythms of
// real ones. People work weekdays in their own time zones (a few on weekends), log in to
// the console with MFA and browse before they change anything; workloads run around the
// clock with a daily peak, each process (instance, task, Lambda sandbox) a session of
// its role; CI deploys after looking around; infrastructure-as-code reads everything and
// sometimes writes; monitoring polls. And new-but-normal things happen: a developer
// joins (their user created by an admin), a service is deployed (a new role), people
// work from home, an admin rotates their own key, sessions expire mid-call.

type soakPrincipal struct {
	id      audit.UserIdentity
	ua      string
	office  string // the /24 it usually calls from (people), or a VPC address (workloads)
	tz      int    // hours east of UTC (people)
	weekend bool   // works weekends too
	kind    string
	joined  int // the day it appears
}

type soakGen struct {
	r      *rand.Rand
	evs    []*audit.Event
	n      int
	start  time.Time
	people []*soakPrincipal
}

const soakAccount = "210987654321"

func (g *soakGen) emit(p *soakPrincipal, at time.Time, source, name string, params map[string]any) *audit.Event {
	g.n++
	ip := p.office
	if strings.Count(ip, ".") == 2 {
		ip = fmt.Sprintf("%s.%d", p.office, 10+g.r.IntN(40))
	}
	ev := &audit.Event{EventVersion: "1.09", UserIdentity: p.id, EventTime: at, EventSource: source + ".amazonaws.com", EventName: name,
		AWSRegion: "eu-west-1", SourceIPAddress: ip, UserAgent: p.ua, RequestParameters: params,
		EventID: fmt.Sprintf("soak-%07d", g.n), RequestID: fmt.Sprintf("req-%07d", g.n), EventType: "AwsApiCall",
		ReadOnly:        strings.HasPrefix(name, "Get") || strings.HasPrefix(name, "List") || strings.HasPrefix(name, "Describe"),
		ManagementEvent: true, RecipientAccountID: soakAccount, EventCategory: "Management"}
	g.evs = append(g.evs, ev)
	return ev
}

func soakUser(name, path string) audit.UserIdentity {
	return audit.UserIdentity{Type: "IAMUser", PrincipalID: "AIDA" + strings.ToUpper(name), ARN: "arn:aws:iam::" + soakAccount + ":user" + path + name,
		AccountID: soakAccount, AccessKeyID: "ASIA" + strings.ToUpper(name), UserName: name,
		SessionContext: &audit.SessionContext{Attributes: map[string]string{"mfaAuthenticated": "true"}}}
}

func soakSession(role, path, session string) audit.UserIdentity {
	return audit.UserIdentity{Type: "AssumedRole", PrincipalID: "AROA" + strings.ToUpper(role) + ":" + session,
		ARN: "arn:aws:sts::" + soakAccount + ":assumed-role/" + role + "/" + session, AccountID: soakAccount,
		AccessKeyID: "ASIA" + strings.ToUpper(session),
		SessionContext: &audit.SessionContext{Attributes: map[string]string{"mfaAuthenticated": "false"},
			SessionIssuer: &audit.SessionIssuer{Type: "Role", ARN: "arn:aws:iam::" + soakAccount + ":role" + path + role, UserName: role, AccountID: soakAccount}}}
}

const (
	soakCLI     = "aws-cli/2.17.20 md/awscrt#0.20.11 ua/2.0 os/linux#6.5.0 md/arch#x86_64 lang/python#3.11.9"
	soakMacCLI  = "aws-cli/2.17.20 md/awscrt#0.20.11 ua/2.0 os/macos#23.5.0 md/arch#arm64 lang/python#3.11.9"
	soakConsole = "console.amazonaws.com"
	soakBoto    = "Boto3/1.34.131 md/Botocore#1.34.131 ua/2.0 os/linux#5.10.219 md/arch#x86_64 lang/python#3.12.4 exec-env/AWS_ECS_FARGATE"
	soakGoSDK   = "aws-sdk-go-v2/1.30.3 ua/2.0 os/linux lang/go#1.22.5 md/GOOS#linux md/GOARCH#amd64"
	soakTF      = "APN/1.0 HashiCorp/1.0 Terraform/1.9.2 (+https://www.terraform.io) terraform-provider-aws/5.58.0 aws-sdk-go-v2/1.30.1"
)

var consoleBrowse = []struct{ src, name string }{
	{"ec2", "DescribeInstances"}, {"ec2", "DescribeSecurityGroups"}, {"ec2", "DescribeVpcs"}, {"ec2", "DescribeSubnets"},
	{"s3", "ListBuckets"}, {"s3", "GetBucketLocation"}, {"lambda", "ListFunctions20150331"}, {"lambda", "GetFunction20150331v2"},
	{"logs", "DescribeLogGroups"}, {"logs", "FilterLogEvents"}, {"cloudwatch", "GetMetricData"}, {"cloudwatch", "DescribeAlarms"},
	{"iam", "ListRoles"}, {"iam", "GetRole"}, {"dynamodb", "DescribeTable"}, {"dynamodb", "ListTables"}, {"ecs", "ListClusters"},
	{"ecs", "DescribeServices"}, {"rds", "DescribeDBInstances"}, {"sqs", "ListQueues"}, {"cloudformation", "DescribeStacks"},
}

// soak generates days of benign events; it returns them in time order.
func soak(days int) []*audit.Event { return soakSeed(days, 21) }

// soakSeed is soak with another random seed.
func soakSeed(days int, seed uint64) []*audit.Event {
	g := &soakGen{r: rand.New(rand.NewPCG(seed, 2026)), start: time.Date(2026, 10, 5, 0, 0, 0, 0, time.UTC)}
	var devs, admins []*soakPrincipal
	for i := 0; i < 24; i++ {
		name := fmt.Sprintf("dev%02d", i)
		tz := []int{1, 1, 1, 0, -5, 2, 1, 5}[i%8]
		p := &soakPrincipal{id: soakUser(name, "/engineering/"), ua: soakCLI, office: fmt.Sprintf("198.51.%d", 100+i%3), tz: tz, weekend: i%7 == 3, kind: "dev"}
		if i%4 == 1 {
			p.ua = soakMacCLI
		}
		devs = append(devs, p)
	}
	for i := 0; i < 10; i++ {
		s := fmt.Sprintf("person%02d@example.com", i)
		devs = append(devs, &soakPrincipal{id: soakSession("AWSReservedSSO_Developer_0a1b2c3d4e5f", "/aws-reserved/sso.amazonaws.com/", s),
			ua: soakConsole, office: fmt.Sprintf("203.0.%d", 113+i%2), tz: 1, kind: "dev"})
	}
	for i := 0; i < 3; i++ {
		admins = append(admins, &soakPrincipal{id: soakUser(fmt.Sprintf("admin%d", i), "/admins/"), ua: soakCLI, office: "198.51.100", tz: 1, kind: "admin"})
	}
	// The developer who joins on day 9, created by an admin that morning.
	newDev := &soakPrincipal{id: soakUser("dev99", "/engineering/"), ua: soakMacCLI, office: "198.51.101", tz: 1, kind: "dev", joined: 9}
	devs = append(devs, newDev)
	g.people = append(devs, admins...)

	type workload struct {
		role, path string
		ua         string
		rate       int // calls an hour at the daily peak
		calls      []struct{ src, name string }
		secret     string
		joined     int
		sessions   int // processes: sessions per hour
	}
	data := []struct{ src, name string }{{"s3", "GetObject"}, {"s3", "PutObject"}, {"dynamodb", "GetItem"}, {"dynamodb", "PutItem"},
		{"dynamodb", "Query"}, {"sqs", "ReceiveMessage"}, {"sqs", "DeleteMessage"}, {"sqs", "SendMessage"}, {"kms", "Decrypt"}, {"kms", "GenerateDataKey"}}
	var workloads []*workload
	for i := 0; i < 16; i++ {
		w := &workload{role: fmt.Sprintf("svc-%02d", i), path: "/workloads/", ua: soakGoSDK, rate: 16 + 4*(i%5), secret: fmt.Sprintf("prod/svc-%02d/db", i), sessions: 2 + i%3}
		if i%3 == 0 {
			w.ua = soakBoto
		}
		for k := 0; k < 4; k++ {
			w.calls = append(w.calls, data[(i+k*3)%len(data)])
		}
		workloads = append(workloads, w)
	}
	// A service deployed on day 7: a new role doing what its peers do.
	workloads = append(workloads, &workload{role: "svc-new-reports", path: "/workloads/", ua: soakGoSDK, rate: 16, calls: data[:3], secret: "prod/reports/db", joined: 7, sessions: 2})

	ci := &soakPrincipal{id: soakSession("github-actions-deploy", "/ci/", "GitHubActions"), ua: soakCLI, office: "20.42.0", kind: "ci"}
	tf := &soakPrincipal{id: soakSession("terraform", "/ci/", "terraform-run"), ua: soakTF, office: "20.42.1", kind: "tf"}
	mon := &soakPrincipal{id: soakSession("DatadogIntegration", "/integrations/", "datadog"), ua: "Datadog/1.0 aws-sdk-go/1.44", office: "3.233.144", kind: "mon"}
	scan := &soakPrincipal{id: soakSession("SecurityAudit", "/integrations/", "prowler"), ua: soakBoto, office: "20.42.2", kind: "scan"}

	for day := 0; day < days; day++ {
		d0 := g.start.Add(time.Duration(day) * 24 * time.Hour)
		weekday := d0.Weekday() != time.Saturday && d0.Weekday() != time.Sunday
		// People.
		for _, p := range g.people {
			if day < p.joined || (!weekday && !p.weekend) || g.r.IntN(10) == 0 {
				continue // not working today (leave, sick)
			}
			g.workday(p, d0, day)
			if p == admins[0] && day == 9 {
				at := d0.Add(time.Duration(9-p.tz)*time.Hour + 5*time.Minute)
				for i, c := range []struct{ src, name string }{{"iam", "ListUsers"}, {"iam", "ListGroups"}, {"iam", "GetGroup"}} {
					g.emit(p, at.Add(time.Duration(i)*20*time.Second), c.src, c.name, nil)
				}
				g.emit(p, at.Add(2*time.Minute), "iam", "CreateUser", map[string]any{"userName": "dev99", "path": "/engineering/"})
				g.emit(p, at.Add(3*time.Minute), "iam", "AddUserToGroup", map[string]any{"userName": "dev99", "groupName": "engineering"})
				g.emit(p, at.Add(4*time.Minute), "iam", "CreateLoginProfile", map[string]any{"userName": "dev99", "passwordResetRequired": true})
			}
		}
		// Workloads: around the clock, a peak at 14:00 UTC, a new session per process an hour.
		for _, w := range workloads {
			if day < w.joined {
				continue
			}
			for h := 0; h < 24; h++ {
				load := 0.25 + 0.75*peak(h)
				calls := int(float64(w.rate) * load)
				for s := 0; s < w.sessions; s++ {
					sess := fmt.Sprintf("i-%08x%09x", day*24+h, s+len(w.role)*97)
					p := &soakPrincipal{id: soakSession(w.role, w.path, sess), ua: w.ua, office: fmt.Sprintf("10.%d.%d.%d", 1+len(w.role)%3, s, 10+h%50)}
					at := d0.Add(time.Duration(h)*time.Hour + time.Duration(g.r.IntN(600))*time.Second)
					g.emit(p, at, "secretsmanager", "GetSecretValue", map[string]any{"secretId": w.secret})
					g.emit(p, at.Add(time.Second), "ssm", "GetParameter", map[string]any{"name": "/" + w.role + "/config", "withDecryption": true})
					for k := 0; k < calls/w.sessions; k++ {
						c := w.calls[g.r.IntN(len(w.calls))]
						g.emit(p, at.Add(time.Duration(2+g.r.IntN(3500))*time.Second), c.src, c.name, map[string]any{"resource": fmt.Sprintf("%s-%d", w.role, g.r.IntN(20))})
					}
					if g.r.IntN(400) == 0 { // a call just after the session expired: the SDK refreshes and retries
						e := g.emit(p, at.Add(3599*time.Second), w.calls[0].src, w.calls[0].name, nil)
						e.ErrorCode = "ExpiredToken"
					}
				}
			}
		}
		// Monitoring polls every 10 minutes.
		for m := 0; m < 24*6; m++ {
			at := d0.Add(time.Duration(m) * 10 * time.Minute)
			for _, c := range []struct{ src, name string }{{"ec2", "DescribeInstances"}, {"cloudwatch", "GetMetricData"}, {"rds", "DescribeDBInstances"}, {"lambda", "ListFunctions20150331"}} {
				g.emit(mon, at.Add(time.Duration(g.r.IntN(30))*time.Second), c.src, c.name, nil)
			}
		}
		if weekday {
			g.deploys(ci, d0)
			g.terraform(tf, d0, day)
		}
		if d0.Weekday() == time.Monday { // the weekly audit
			at := d0.Add(3 * time.Hour)
			for i, c := range []struct{ src, name string }{{"iam", "GetAccountAuthorizationDetails"}, {"iam", "GetAccountPasswordPolicy"}, {"iam", "ListUsers"},
				{"iam", "ListAccessKeys"}, {"s3", "ListBuckets"}, {"s3", "GetBucketPolicy"}, {"cloudtrail", "DescribeTrails"}, {"guardduty", "ListDetectors"},
				{"ec2", "DescribeSecurityGroups"}, {"config", "DescribeConfigurationRecorders"}, {"kms", "ListKeys"}, {"ec2", "DescribeFlowLogs"}} {
				for k := 0; k < 5; k++ {
					g.emit(scan, at.Add(time.Duration(i*60+k*7)*time.Second), c.src, c.name, nil)
				}
			}
		}
		// EC2 delivering instance credentials (a service's own event).
		for h := 0; h < 24; h++ {
			e := g.emit(&soakPrincipal{id: audit.UserIdentity{Type: "AWSService", PrincipalID: "ec2.amazonaws.com"}, office: "ec2.amazonaws.com"},
				d0.Add(time.Duration(h)*time.Hour), "sts", "AssumeRole", map[string]any{"roleSessionName": "i-0"})
			e.EventType, e.UserAgent = "AwsServiceEvent", "ec2.amazonaws.com"
		}
	}
	sort.SliceStable(g.evs, func(i, j int) bool { return g.evs[i].EventTime.Before(g.evs[j].EventTime) })
	return g.evs
}

// peak is the daily load curve of workloads: 0 at 02:00 UTC, 1 at 14:00.
func peak(h int) float64 {
	d := h - 14
	if d < 0 {
		d = -d
	}
	return 1 - float64(d)/12
}

// workday is one person's day: a login, browsing, their usual changes.
func (g *soakGen) workday(p *soakPrincipal, d0 time.Time, day int) {
	startHour := 8 + g.r.IntN(3) - p.tz
	at := d0.Add(time.Duration(startHour)*time.Hour + time.Duration(g.r.IntN(3600))*time.Second)
	office := p.office
	if g.r.IntN(5) == 0 && p.kind != "admin" { // working from home: another network
		p.office = fmt.Sprintf("100.%d.%d", 64+g.r.IntN(60), g.r.IntN(250))
	}
	defer func() { p.office = office }()
	if p.id.Type == "IAMUser" {
		e := g.emit(p, at, "signin", "ConsoleLogin", nil)
		e.AdditionalEventData = map[string]any{"MFAUsed": "Yes", "LoginTo": "https://console.aws.amazon.com/console/home"}
		e.ResponseElements = map[string]any{"ConsoleLogin": "Success"}
		e.UserAgent = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/128.0 Safari/537.36"
		e.EventSource = "signin.amazonaws.com"
	}
	sessions := 2 + g.r.IntN(4)
	for s := 0; s < sessions; s++ {
		at = at.Add(time.Duration(20+g.r.IntN(90)) * time.Minute)
		n := 5 + g.r.IntN(25)
		for k := 0; k < n; k++ {
			c := consoleBrowse[g.r.IntN(len(consoleBrowse))]
			g.emit(p, at.Add(time.Duration(k*(5+g.r.IntN(40)))*time.Second), c.src, c.name, nil)
		}
		end := at.Add(time.Duration(n*25) * time.Second)
		switch {
		case p.kind == "dev" && g.r.IntN(6) == 0:
			g.emit(p, end, "ssm", "StartSession", map[string]any{"target": fmt.Sprintf("i-%017x", g.r.IntN(40))})
		case p.kind == "dev" && g.r.IntN(5) == 0:
			g.emit(p, end, "secretsmanager", "GetSecretValue", map[string]any{"secretId": fmt.Sprintf("dev/svc-%02d/db", g.r.IntN(16))})
		case p.kind == "dev" && g.r.IntN(4) == 0:
			g.emit(p, end, "lambda", "UpdateFunctionCode20150331v2", map[string]any{"functionName": fmt.Sprintf("dev-fn-%d", g.r.IntN(30))})
		case p.kind == "dev" && g.r.IntN(3) == 0:
			g.emit(p, end, "s3", "PutObject", map[string]any{"bucketName": "dev-scratch", "key": fmt.Sprintf("tmp/%d", g.r.IntN(1000))})
		case p.kind == "admin" && g.r.IntN(3) == 0:
			g.emit(p, end, "iam", "CreateAccessKey", map[string]any{"userName": fmt.Sprintf("svc-user-%d", g.r.IntN(8))})
		case p.kind == "admin" && g.r.IntN(3) == 0:
			g.emit(p, end, "iam", "AttachRolePolicy", map[string]any{"roleName": fmt.Sprintf("svc-%02d", g.r.IntN(16)), "policyArn": "arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess"})
		case p.kind == "admin" && g.r.IntN(3) == 0:
			g.emit(p, end, "iam", "CreateAccessKey", nil) // rotating their own key
		}
	}
	if day == 10 && p.kind == "dev" && g.r.IntN(4) == 0 { // trying a service for the first time
		g.emit(p, at.Add(30*time.Minute), "athena", "StartQueryExecution", map[string]any{"queryString": "SELECT 1"})
		g.emit(p, at.Add(31*time.Minute), "athena", "GetQueryResults", nil)
	}
}

// deploys: CI looks at the stacks and functions, then updates code, a few times a day.
func (g *soakGen) deploys(p *soakPrincipal, d0 time.Time) {
	for k := 0; k < 2+g.r.IntN(5); k++ {
		at := d0.Add(time.Duration(7+g.r.IntN(10))*time.Hour + time.Duration(g.r.IntN(3600))*time.Second)
		for i, c := range []struct{ src, name string }{{"sts", "GetCallerIdentity"}, {"cloudformation", "DescribeStacks"}, {"lambda", "GetFunction20150331v2"},
			{"ecr", "DescribeRepositories"}, {"ecr", "GetAuthorizationToken"}, {"ecr", "PutImage"}, {"s3", "PutObject"}} {
			g.emit(p, at.Add(time.Duration(i*5)*time.Second), c.src, c.name, nil)
		}
		fn := fmt.Sprintf("svc-%02d", g.r.IntN(16))
		g.emit(p, at.Add(time.Minute), "lambda", "UpdateFunctionCode20150331v2", map[string]any{"functionName": fn})
		g.emit(p, at.Add(70*time.Second), "lambda", "GetFunctionConfiguration20150331v2", map[string]any{"functionName": fn})
	}
}

// terraform: a plan reads everything every weekday morning; some days it applies.
func (g *soakGen) terraform(p *soakPrincipal, d0 time.Time, day int) {
	at := d0.Add(6 * time.Hour)
	reads := []struct{ src, name string }{{"iam", "GetRole"}, {"iam", "ListRolePolicies"}, {"iam", "ListAttachedRolePolicies"}, {"iam", "GetPolicy"},
		{"iam", "GetPolicyVersion"}, {"s3", "GetBucketPolicy"}, {"s3", "GetBucketAcl"}, {"s3", "GetBucketVersioning"}, {"ec2", "DescribeSecurityGroups"},
		{"ec2", "DescribeVpcs"}, {"ec2", "DescribeSubnets"}, {"lambda", "GetFunction20150331v2"}, {"dynamodb", "DescribeTable"}, {"sqs", "GetQueueAttributes"}}
	for k := 0; k < 120; k++ {
		c := reads[g.r.IntN(len(reads))]
		g.emit(p, at.Add(time.Duration(k)*2*time.Second), c.src, c.name, nil)
	}
	if day%3 != 0 {
		return
	}
	at = at.Add(10 * time.Minute)
	writes := []struct {
		src, name string
		params    map[string]any
	}{
		{"iam", "PutRolePolicy", map[string]any{"roleName": "svc-03", "policyName": "inline"}},
		{"iam", "CreateRole", map[string]any{"roleName": fmt.Sprintf("svc-tmp-%d", day), "path": "/workloads/"}},
		{"iam", "AttachRolePolicy", map[string]any{"roleName": "svc-04", "policyArn": "arn:aws:iam::210987654321:policy/svc-04"}},
		{"s3", "PutBucketPolicy", map[string]any{"bucketName": "svc-assets"}},
		{"ec2", "AuthorizeSecurityGroupIngress", map[string]any{"groupId": "sg-0a1b", "ipPermissions": map[string]any{"items": []any{map[string]any{"ipRanges": map[string]any{"items": []any{map[string]any{"cidrIp": "10.0.0.0/16"}}}}}}}},
		{"ec2", "RunInstances", map[string]any{"instanceType": "m7g.large"}},
	}
	for i, w := range writes[:2+g.r.IntN(len(writes)-1)] {
		g.emit(p, at.Add(time.Duration(i)*10*time.Second), w.src, w.name, w.params)
	}
}

// TestBenignSoak: two weeks of benign activity (over 100,000 events from over 50
// principals) give at most one finding per 10,000 events in all, and each rule stays
// within the false-positive budget it states (fpBudget).
func TestBenignSoak(t *testing.T) {
	evs := soak(14)
	principals := map[string]bool{}
	for _, ev := range evs {
		principals[soakPrincipalOf(ev)] = true
	}
	if len(evs) < 100_000 || len(principals) < 50 {
		t.Fatalf("soak too small: %d events, %d principals", len(evs), len(principals))
	}
	d, err := New(Config{LearningPeriod: 7 * 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	for _, ev := range evs {
		d.Observe(ev)
	}
	fs := d.Findings()
	byRule := map[string]int{}
	for _, f := range fs {
		byRule[ruleOf(f)]++
		t.Logf("benign finding: %s %.1f %s: %s", f.Type, f.Severity, f.Resource.AccessKeyDetails.PrincipalARN, f.Description)
	}
	per10k := func(n int) float64 { return float64(n) * 10_000 / float64(len(evs)) }
	t.Logf("soak: %d events, %d principals, %d findings (%.2f per 10,000 events)", len(evs), len(principals), len(fs), per10k(len(fs)))
	if per10k(len(fs)) > 1 {
		t.Errorf("%d findings in %d benign events: more than 1 per 10,000", len(fs), len(evs))
	}
	for rule, n := range byRule {
		budget, ok := fpBudget[rule]
		if !ok {
			t.Errorf("rule %s has no false-positive budget", rule)
			continue
		}
		if per10k(n) > budget {
			t.Errorf("rule %s: %d benign findings, %.2f per 10,000 events, over its budget %.2f", rule, n, per10k(n), budget)
		}
	}
}

// soakPrincipalOf is who a soak event is from: a person (an IAM user, or an SSO
// session named after the person), else the role whose session it is.
func soakPrincipalOf(ev *audit.Event) string {
	if strings.Contains(ev.UserIdentity.ARN, "@") {
		return ev.UserIdentity.ARN
	}
	c := newCall(ev)
	return c.baselineKey()
}
