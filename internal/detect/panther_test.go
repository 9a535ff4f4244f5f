package detect

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"testing"
	"time"
)

// pantherIntents maps the Panther CloudTrail rules whose intent one of Phantom's rules
// shares onto the finding that rule raises for the event: kind is a finding type, or
// "api" for a first-use or anomaly finding naming the event's API. Panther rules with
// another intent are left out: AWS.Root.Activity (Panther: root's non-read calls;
// Phantom: every root call, GuardDuty's RootCredentialUsage), ReconAccessDenied (one
// refusal; Phantom's sweep needs ten), the ones that trust every role session
// (Lambda.UpdateFunctionCode/Configuration: "normal CI/CD"; Phantom: first use by the
// role), admin-policy-only AttachAdmin*Policy (Phantom: any attachment's first use),
// GetSessionToken.Misuse (not a Phantom rule), and every test that needs Panther's
// mocks (lookup tables). "attempt": the rule is about the attempt, refused or not.
// pantherIntent is the Phantom finding a Panther rule's intent corresponds to: a
// finding type, or ("api", "attempt") a first-use, anomaly or sequence finding on one of
// the intent's APIs; "root-own-key" is root's CreateAccessKey for itself.
type pantherIntent struct {
	kind string
	apis []string
}

var pantherIntents = map[string]pantherIntent{
	"AWS.CloudTrail.Stopped":                       {kind: TypeLoggingOff},
	"AWS.CloudTrail.EventSelectorsDisabled":        {kind: TypeLoggingOff},
	"AWS.CloudTrail.IMDSCredentialExfiltration":    {kind: "exfil"},
	"AWS.IAM.Backdoor.User.Keys":                   {kind: "api", apis: []string{"CreateAccessKey"}},
	"AWS.VPCFlow.LogsDeleted":                      {kind: "api", apis: []string{"DeleteFlowLogs"}},
	"AWS.CloudTrail.DNSLogsDeleted":                {kind: "api", apis: []string{"DeleteResolverQueryLogConfig", "DisassociateResolverQueryLogConfig"}},
	"AWS.CloudTrail.AttemptToLeaveOrg":             {kind: "attempt", apis: []string{"LeaveOrganization"}},
	"AWS.User.Login.Profile.Modified":              {kind: "api", apis: []string{"UpdateLoginProfile", "CreateLoginProfile"}},
	"AWS.CloudTrail.LoginProfileCreatedOrModified": {kind: "api", apis: []string{"UpdateLoginProfile", "CreateLoginProfile"}},
	"AWS.CloudTrail.SnapshotMadePublic":            {kind: "api", apis: []string{"ModifySnapshotAttribute"}},
	"AWS.CloudTrail.AMIModifiedForPublicAccess":    {kind: "api", apis: []string{"ModifyImageAttribute"}},
	"AWS.RDS.SnapshotShared":                       {kind: "api", apis: []string{"ModifyDBSnapshotAttribute", "ModifyDBClusterSnapshotAttribute"}},
	"AWS.SecretsManager.BatchRetrieveSecrets":      {kind: "api", apis: []string{"BatchGetSecretValue"}},
	"AWS.Potential.Backdoor.Lambda":                {kind: "api", apis: []string{"AddPermission20150331", "AddPermission20150331v2"}},
	"AWS.IAM.BackdoorRole":                         {kind: "api", apis: []string{"UpdateAssumeRolePolicy"}},
	"AWS.CloudTrail.RootAccessKeyCreated":          {kind: "root-own-key", apis: []string{"CreateAccessKey"}},
	"AWS.ConfigService.DisabledDeleted":            {kind: "api", apis: []string{"StopConfigurationRecorder", "DeleteConfigurationRecorder", "DeleteDeliveryChannel"}},
	"AWS.KMS.CustomerManagedKeyLoss":               {kind: "api", apis: []string{"ScheduleKeyDeletion", "DisableKey"}},
	"AWS.RDS.InstanceDeletion":                     {kind: "api", apis: []string{"DeleteDBInstance", "DeleteDBCluster"}},
	"AWS.CloudTrail.SecurityConfigurationChange":   {kind: TypeLoggingOff},
	"AWS.IAM.CreateUser":                           {kind: "api", apis: []string{"CreateUser"}},
	"AWS.IAM.CreateRole":                           {kind: "api", apis: []string{"CreateRole"}},
	"AWS.EC2.Startup.Script.Change":                {kind: "api", apis: []string{"ModifyInstanceAttribute"}},
	"AWS.EC2.MultiInstanceConnect":                 {kind: "api", apis: []string{"SendSSHPublicKey"}},
	"AWS.EC2.DownloadInstanceUserData":             {kind: "attempt", apis: []string{"DescribeInstanceAttribute"}},
	"AWS.EC2.ManyPasswordReadAttempts":             {kind: "attempt", apis: []string{"GetPasswordData"}},
	"AWS.S3.BucketDeleted":                         {kind: "api", apis: []string{"DeleteBucket"}},
	"AWS.Console.LoginWithoutMFA":                  {kind: "api", apis: []string{"ConsoleLogin"}},
}

// TestPantherRuleTests: on Panther's labelled single-event tests of the rules whose
// intent Phantom implements, a fresh detector's verdict (the finding that rule's
// counterpart raises, or none) agrees with the label on at least 95% of them.
func TestPantherRuleTests(t *testing.T) {
	path := filepath.Join(evalDir(t), "panther-analysis/rule-tests/aws_cloudtrail_rule_tests.jsonl")
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	type result struct{ agree, total int }
	per := map[string]*result{}
	agree, total := 0, 0
	for sc.Scan() {
		var tc struct {
			RuleID   string          `json:"rule_id"`
			Name     string          `json:"test_name"`
			Expected bool            `json:"expected_match"`
			Mocks    bool            `json:"uses_mocks"`
			Event    json.RawMessage `json:"event"`
		}
		if err := json.Unmarshal(sc.Bytes(), &tc); err != nil {
			t.Fatal(err)
		}
		intent, ok := pantherIntents[tc.RuleID]
		if !ok || tc.Mocks {
			continue
		}
		evs, bad, err := ParseEvents(tc.Event) // Panther's time layout too (TestPantherTime)
		if err != nil || len(bad) > 0 || len(evs) != 1 {
			t.Fatalf("%s %s: %v %v", tc.RuleID, tc.Name, err, bad)
		}
		ev := evs[0]
		if ev.EventTime.IsZero() {
			ev.EventTime = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
		}
		d, _ := New(Config{LearningPeriod: 7 * 24 * time.Hour})
		got := false
		for _, fd := range d.Observe(ev) {
			got = got || pantherMatch(intent, fd)
		}
		r := per[tc.RuleID]
		if r == nil {
			r = &result{}
			per[tc.RuleID] = r
		}
		r.total++
		total++
		if got == tc.Expected {
			r.agree++
			agree++
		} else {
			t.Logf("disagree: %s %q: Panther %v, Phantom %v", tc.RuleID, tc.Name, tc.Expected, got)
		}
	}
	var ids []string
	for id := range per {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		t.Logf("%-48s %d/%d", id, per[id].agree, per[id].total)
	}
	t.Logf("agreement %d/%d (%.1f%%)", agree, total, 100*float64(agree)/float64(total))
	if agree*100 < total*95 {
		t.Errorf("agreement %d/%d, below 95%%", agree, total)
	}
}

func pantherMatch(in pantherIntent, f Finding) bool {
	a := f.Service.Action.AWSAPICallAction
	switch in.kind {
	case "exfil":
		return f.Type == TypeExfilOutside || f.Type == TypeExfilInside
	case "api", "attempt", "root-own-key":
		// Panther's rules are about what happened (a snapshot made public): a refused
		// call, which Phantom reports as a refused attempt (errorCode in the finding),
		// is not that, except for the rules about attempts.
		if a == nil || !slices.Contains(in.apis, a.API) || Tactic(f) == "" || ruleOf(f) == "sigma" {
			return false
		}
		if in.kind == "root-own-key" {
			target, _ := f.Service.AdditionalInfo["target"].(string)
			return f.Resource.AccessKeyDetails.UserType == "Root" && target == ""
		}
		return in.kind == "attempt" || a.ErrorCode == ""
	}
	return f.Type == in.kind && f.Severity >= sevMedium
}
