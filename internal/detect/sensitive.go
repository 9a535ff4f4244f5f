package detect

import (
	"encoding/json"
	"strings"

	"github.com/phantom-perimeter/phantom/internal/arn"
	"github.com/phantom-perimeter/phantom/internal/audit"
)

// sensitiveAPI is an API call that serves one ATT&CK tactic so directly that its first
// use by a principal whose peer group never made it is a finding on its own, from the
// first day (no learning period: the peers' and the account's history stand in for the
// principal's). Each entry names its source: the ATT&CK technique, and the Stratus Red
// Team technique that exercises it where there is one (the evaluation set).
type sensitiveAPI struct {
	source string // event source without .amazonaws.com
	name   string // eventName; a trailing * matches a prefix (Lambda's versioned names)
	tactic string
	// when narrows the entry to the dangerous form of the call (nil: every call).
	when func(ev *audit.Event) bool
	// severity before the rarity and refusal adjustments (GuardDuty: high >= 7).
	severity float64
	ref      string
	// bulk: one such call is routine (every workload reads its own secret at start);
	// the entry applies when one principal reads bulkDistinct different names within
	// the burst window, the dump the technique describes.
	bulk bool
}

// bulkDistinct is how many different secrets or parameters a principal must read
// within burstWindow for a bulk entry to apply: the Stratus detonations read 20
// secrets in 4 s and 50 parameters in 5 calls; an application reads its own few.
const bulkDistinct = 5

// The severities by tactic: what directly loses data, credentials or control is high,
// footholds medium-high, a login or a discovery call medium.
const (
	sevSensHigh  = 7.0
	sevSensMid   = 6.0
	sevSensLogin = 5.0
	sevSensLow   = 4.0
)

// sensitiveAPIs is the table. CloudTrail's own logging changes are not here: the
// CloudTrailLoggingDisabled rule reports every one of them.
var sensitiveAPIs = []sensitiveAPI{
	// Credential access.
	{"secretsmanager", "BatchGetSecretValue", "CredentialAccess", nil, sevSensHigh, "ATT&CK T1555.006; Stratus aws.credential-access.secretsmanager-batch-retrieve-secrets", false},
	{"secretsmanager", "GetSecretValue", "CredentialAccess", nil, sevSensHigh, "ATT&CK T1555.006; Stratus aws.credential-access.secretsmanager-retrieve-secrets", true},
	{"ssm", "GetParameters", "CredentialAccess", decrypted, sevSensHigh, "ATT&CK T1555.006; Stratus aws.credential-access.ssm-retrieve-securestring-parameters", true},
	{"ssm", "GetParameter", "CredentialAccess", decrypted, sevSensHigh, "ATT&CK T1555.006; Stratus aws.credential-access.ssm-retrieve-securestring-parameters", true},
	{"ssm", "GetParametersByPath", "CredentialAccess", decrypted, sevSensHigh, "ATT&CK T1555.006; Stratus aws.credential-access.ssm-retrieve-securestring-parameters", true},
	{"ec2", "GetPasswordData", "CredentialAccess", nil, sevSensHigh, "ATT&CK T1552; Stratus aws.credential-access.ec2-get-password-data", false},
	// Defense evasion: monitoring and logging other than CloudTrail's switched off.
	{"ec2", "DeleteFlowLogs", "DefenseEvasion", nil, sevSensHigh, "ATT&CK T1562.008; Stratus aws.defense-evasion.vpc-remove-flow-logs", false},
	{"route53resolver", "DeleteResolverQueryLogConfig", "DefenseEvasion", nil, sevSensHigh, "ATT&CK T1562.008; Stratus aws.defense-evasion.dns-delete-logs", false},
	{"route53resolver", "DisassociateResolverQueryLogConfig", "DefenseEvasion", nil, sevSensHigh, "ATT&CK T1562.008; Stratus aws.defense-evasion.dns-delete-logs", false},
	{"organizations", "LeaveOrganization", "DefenseEvasion", nil, sevSensHigh, "ATT&CK T1562; Stratus aws.defense-evasion.organizations-leave", false},
	{"guardduty", "DeleteDetector", "DefenseEvasion", nil, sevSensHigh, "ATT&CK T1562.001; GuardDuty Stealth:IAMUser/... findings", false},
	{"guardduty", "UpdateDetector", "DefenseEvasion", param("enable", "false"), sevSensHigh, "ATT&CK T1562.001", false},
	{"guardduty", "DisassociateFromMasterAccount", "DefenseEvasion", nil, sevSensHigh, "ATT&CK T1562.001", false},
	{"guardduty", "DisassociateFromAdministratorAccount", "DefenseEvasion", nil, sevSensHigh, "ATT&CK T1562.001", false},
	{"config", "StopConfigurationRecorder", "DefenseEvasion", nil, sevSensHigh, "ATT&CK T1562.008", false},
	{"config", "DeleteConfigurationRecorder", "DefenseEvasion", nil, sevSensHigh, "ATT&CK T1562.008", false},
	{"config", "DeleteDeliveryChannel", "DefenseEvasion", nil, sevSensHigh, "ATT&CK T1562.008", false},
	{"securityhub", "DisableSecurityHub", "DefenseEvasion", nil, sevSensHigh, "ATT&CK T1562.001", false},
	{"logs", "DeleteLogGroup", "DefenseEvasion", nil, sevSensMid, "ATT&CK T1562.008", false},
	// Privilege escalation: policies attached or written, group membership, passwords.
	{"iam", "AttachUserPolicy", "PrivilegeEscalation", nil, sevSensHigh, "ATT&CK T1098.003; Stratus aws.persistence.iam-create-admin-user", false},
	{"iam", "AttachRolePolicy", "PrivilegeEscalation", nil, sevSensHigh, "ATT&CK T1098.003; Stratus aws.persistence.iam-create-backdoor-role", false},
	{"iam", "AttachGroupPolicy", "PrivilegeEscalation", nil, sevSensHigh, "ATT&CK T1098.003", false},
	{"iam", "PutUserPolicy", "PrivilegeEscalation", nil, sevSensHigh, "ATT&CK T1098.003", false},
	{"iam", "PutRolePolicy", "PrivilegeEscalation", nil, sevSensHigh, "ATT&CK T1098.003", false},
	{"iam", "PutGroupPolicy", "PrivilegeEscalation", nil, sevSensHigh, "ATT&CK T1098.003", false},
	{"iam", "CreatePolicyVersion", "PrivilegeEscalation", nil, sevSensHigh, "ATT&CK T1098.003 (Rhino Security's IAM privilege escalation methods)", false},
	{"iam", "SetDefaultPolicyVersion", "PrivilegeEscalation", nil, sevSensHigh, "ATT&CK T1098.003 (Rhino Security's IAM privilege escalation methods)", false},
	{"iam", "AddUserToGroup", "PrivilegeEscalation", nil, sevSensMid, "ATT&CK T1098.003", false},
	{"iam", "UpdateLoginProfile", "PrivilegeEscalation", otherUser, sevSensHigh, "ATT&CK T1098; Stratus aws.privilege-escalation.iam-update-user-login-profile", false},
	// Persistence: new identities, credentials, trust and code.
	{"iam", "CreateUser", "Persistence", nil, sevSensMid, "ATT&CK T1136.003; Stratus aws.persistence.iam-create-admin-user", false},
	{"iam", "CreateAccessKey", "Persistence", otherUser, sevSensHigh, "ATT&CK T1098.001; Stratus aws.persistence.iam-backdoor-user", false},
	{"iam", "CreateLoginProfile", "Persistence", otherUser, sevSensHigh, "ATT&CK T1098.001; Stratus aws.persistence.iam-create-user-login-profile", false},
	{"iam", "UpdateAssumeRolePolicy", "Persistence", trustsOutside, sevSensHigh, "ATT&CK T1098.003; Stratus aws.persistence.iam-backdoor-role", false},
	{"iam", "CreateRole", "Persistence", nil, sevSensMid, "ATT&CK T1136.003; Stratus aws.persistence.iam-create-backdoor-role", false},
	{"iam", "UploadSSHPublicKey", "Persistence", nil, sevSensMid, "ATT&CK T1098.004", false},
	{"lambda", "AddPermission*", "Persistence", nil, sevSensMid, "ATT&CK T1546; Stratus aws.persistence.lambda-backdoor-function", false},
	{"lambda", "UpdateFunctionCode*", "Persistence", nil, sevSensMid, "ATT&CK T1525; Stratus aws.persistence.lambda-overwrite-code", false},
	{"lambda", "UpdateFunctionConfiguration*", "Persistence", hasParam("layers"), sevSensMid, "ATT&CK T1546; Stratus aws.persistence.lambda-layer-extension", false},
	{"rolesanywhere", "CreateTrustAnchor", "Persistence", nil, sevSensHigh, "ATT&CK T1098.001; Stratus aws.persistence.rolesanywhere-create-trust-anchor", false},
	{"rolesanywhere", "CreateProfile", "Persistence", nil, sevSensMid, "ATT&CK T1098.001; Stratus aws.persistence.rolesanywhere-create-trust-anchor", false},
	{"sts", "GetFederationToken", "Persistence", nil, sevSensMid, "ATT&CK T1550.001; Stratus aws.persistence.sts-federation-token", false},
	{"ec2", "ImportKeyPair", "Persistence", nil, sevSensMid, "ATT&CK T1098.004", false},
	// Exfiltration: data shared with another account or opened to the world.
	{"ec2", "ModifySnapshotAttribute", "Exfiltration", addsPermission, sevSensHigh, "ATT&CK T1537; Stratus aws.exfiltration.ec2-share-ebs-snapshot", false},
	{"ec2", "ModifyImageAttribute", "Exfiltration", addsPermission, sevSensHigh, "ATT&CK T1537; Stratus aws.exfiltration.ec2-share-ami", false},
	{"rds", "ModifyDBSnapshotAttribute", "Exfiltration", addsPermission, sevSensHigh, "ATT&CK T1537; Stratus aws.exfiltration.rds-share-snapshot", false},
	{"rds", "ModifyDBClusterSnapshotAttribute", "Exfiltration", addsPermission, sevSensHigh, "ATT&CK T1537", false},
	{"ec2", "AuthorizeSecurityGroupIngress", "Exfiltration", openToWorld, sevSensHigh, "ATT&CK T1048; Stratus aws.exfiltration.ec2-security-group-open-port-22-ingress", false},
	{"s3", "PutBucketPolicy", "Exfiltration", nil, sevSensMid, "ATT&CK T1537", false},
	{"s3", "PutBucketReplication", "Exfiltration", nil, sevSensMid, "ATT&CK T1537", false},
	// Execution on instances.
	{"ssm", "SendCommand", "Execution", nil, sevSensMid, "ATT&CK T1651; Stratus aws.execution.ssm-send-command", false},
	{"ssm", "StartSession", "Execution", nil, sevSensMid, "ATT&CK T1651; Stratus aws.execution.ssm-start-session", false},
	{"ec2", "ModifyInstanceAttribute", "Execution", hasParam("userData"), sevSensMid, "ATT&CK T1059; Stratus aws.execution.ec2-user-data", false},
	{"ec2", "RunInstances", "Execution", nil, sevSensLow, "ATT&CK T1578.002; Stratus aws.execution.ec2-launch-unusual-instances", false},
	// Lateral movement onto instances.
	{"ec2-instance-connect", "SendSSHPublicKey", "LateralMovement", nil, sevSensMid, "ATT&CK T1021.004; Stratus aws.lateral-movement.ec2-instance-connect", false},
	{"ec2-instance-connect", "SendSerialConsoleSSHPublicKey", "LateralMovement", nil, sevSensMid, "ATT&CK T1021; Stratus aws.lateral-movement.ec2-serial-console-send-ssh-public-key", false},
	{"ec2", "EnableSerialConsoleAccess", "LateralMovement", nil, sevSensMid, "ATT&CK T1021; Stratus aws.lateral-movement.ec2-serial-console-send-ssh-public-key", false},
	// Impact: paid resources hijacked (LLMjacking), data destroyed.
	{"bedrock", "InvokeModel*", "Impact", nil, sevSensMid, "ATT&CK T1496.004; Stratus aws.impact.bedrock-invoke-model", false},
	{"bedrock", "Converse*", "Impact", nil, sevSensMid, "ATT&CK T1496.004", false},
	{"bedrock", "PutFoundationModelEntitlement", "Impact", nil, sevSensMid, "ATT&CK T1496.004; Stratus aws.impact.bedrock-invoke-model", false},
	{"bedrock", "CreateFoundationModelAgreement", "Impact", nil, sevSensMid, "ATT&CK T1496.004; Stratus aws.impact.bedrock-invoke-model", false},
	{"kms", "ScheduleKeyDeletion", "Impact", nil, sevSensHigh, "ATT&CK T1485", false},
	{"kms", "DisableKey", "Impact", nil, sevSensHigh, "ATT&CK T1485 (data encrypted under a disabled key is unreadable)", false},
	{"s3", "DeleteBucket", "Impact", nil, sevSensMid, "ATT&CK T1485", false},
	{"rds", "DeleteDBInstance", "Impact", nil, sevSensMid, "ATT&CK T1485", false},
	{"rds", "DeleteDBCluster", "Impact", nil, sevSensMid, "ATT&CK T1485", false},
	// Initial access: a console session without a second factor (root's every use is
	// RootCredentialUsage already).
	{"signin", "ConsoleLogin", "InitialAccess", loginWithoutMFA, sevSensLogin, "ATT&CK T1078.004; Stratus aws.initial-access.console-login-without-mfa", false},
	// Discovery of secrets in instance user data.
	{"ec2", "DescribeInstanceAttribute", "Discovery", param("attribute", "userData"), sevSensLow, "ATT&CK T1580; Stratus aws.discovery.ec2-download-user-data", false},
}

// sensitiveIndex maps eventName (without a * suffix) to its entries; prefixes keeps the
// prefix entries.
type sensitiveIndex struct {
	byName   map[string][]*sensitiveAPI
	prefixes []*sensitiveAPI
}

func newSensitiveIndex() *sensitiveIndex {
	x := &sensitiveIndex{byName: map[string][]*sensitiveAPI{}}
	for i := range sensitiveAPIs {
		e := &sensitiveAPIs[i]
		if p, ok := strings.CutSuffix(e.name, "*"); ok {
			e2 := *e
			e2.name = p
			x.prefixes = append(x.prefixes, &e2)
			continue
		}
		x.byName[e.name] = append(x.byName[e.name], e)
	}
	return x
}

// lookup returns the entry the event is, or nil.
func (x *sensitiveIndex) lookup(ev *audit.Event) *sensitiveAPI {
	svc := strings.TrimSuffix(ev.EventSource, ".amazonaws.com")
	for _, e := range x.byName[ev.EventName] {
		if e.source == svc && (e.when == nil || e.when(ev)) {
			return e
		}
	}
	for _, e := range x.prefixes {
		if e.source == svc && strings.HasPrefix(ev.EventName, e.name) && (e.when == nil || e.when(ev)) {
			return e
		}
	}
	return nil
}

func decrypted(ev *audit.Event) bool {
	v, _ := ev.RequestParameters["withDecryption"].(bool)
	return v
}

func param(name, value string) func(*audit.Event) bool {
	return func(ev *audit.Event) bool {
		v, ok := ev.RequestParameters[name]
		return ok && strings.EqualFold(text(v), value)
	}
}

func hasParam(name string) func(*audit.Event) bool {
	return func(ev *audit.Event) bool {
		v, ok := ev.RequestParameters[name]
		return ok && v != nil
	}
}

func text(v any) string {
	switch v := v.(type) {
	case string:
		return v
	case bool:
		if v {
			return "true"
		}
		return "false"
	}
	return ""
}

// otherUser: the call acts on another IAM user than the caller (an access key or
// password for someone else), or the caller is root or a role session (no user of its
// own), the persistence form of CreateAccessKey and the login profile calls.
func otherUser(ev *audit.Event) bool {
	target, _ := ev.RequestParameters["userName"].(string)
	u := &ev.UserIdentity
	switch {
	case u.Type == "Root":
		return true
	case target == "":
		return u.Type != "IAMUser" // a session creating "its own" key has none: the role's
	case u.Type == "AssumedRole":
		// An SSO or federated session is named after its person: their own user.
		i := strings.LastIndexByte(u.ARN, '/')
		return i < 0 || !strings.EqualFold(u.ARN[i+1:], target)
	}
	return target != u.UserName
}

// trustsOutside: a role trust policy (UpdateAssumeRolePolicy's policyDocument) lets in
// a principal outside the caller's account: "*", another account's id or ARN. A role
// opened to another account is the backdoor; trust inside the account is routine.
func trustsOutside(ev *audit.Event) bool {
	doc, _ := ev.RequestParameters["policyDocument"].(string)
	if doc == "" {
		return false
	}
	var p struct {
		Statement json.RawMessage
	}
	if json.Unmarshal([]byte(doc), &p) != nil {
		return true // unreadable: say so rather than miss it
	}
	var stmts []map[string]any
	if json.Unmarshal(p.Statement, &stmts) != nil {
		var one map[string]any
		if json.Unmarshal(p.Statement, &one) != nil {
			return true
		}
		stmts = []map[string]any{one}
	}
	own := ev.UserIdentity.AccountID
	if own == "" {
		own = ev.RecipientAccountID
	}
	for _, st := range stmts {
		if e, _ := st["Effect"].(string); e != "Allow" {
			continue
		}
		var principals []string
		collect(st["Principal"], &principals)
		for _, pr := range principals {
			if pr == "*" {
				return true
			}
			acct := pr
			if parts := strings.Split(pr, ":"); len(parts) >= 5 && strings.HasPrefix(pr, "arn:") {
				acct = parts[4]
				if acct == "" {
					continue // a service or a partition-wide name, not an account
				}
			}
			if arn.ValidAccount(acct) && acct != own {
				return true
			}
		}
	}
	return false
}

// collect gathers a policy's principal values: "*", {"AWS": ...}, lists of them.
func collect(v any, out *[]string) {
	switch v := v.(type) {
	case string:
		*out = append(*out, v)
	case []any:
		for _, x := range v {
			collect(x, out)
		}
	case map[string]any:
		for k, x := range v {
			if k == "AWS" { // Service and Federated principals are not accounts
				collect(x, out)
			}
		}
	}
}

// addsPermission: a sharing attribute adds an account or the public ("all"): EC2's
// createVolumePermission/launchPermission {"add": {"items": [...]}}, RDS's valuesToAdd.
func addsPermission(ev *audit.Event) bool {
	p := ev.RequestParameters
	if v, ok := p["valuesToAdd"].([]any); ok && len(v) > 0 {
		return true
	}
	for _, k := range []string{"createVolumePermission", "launchPermission"} {
		m, _ := p[k].(map[string]any)
		add, _ := m["add"].(map[string]any)
		items, _ := add["items"].([]any)
		for _, it := range items {
			it, _ := it.(map[string]any)
			if id, _ := it["userId"].(string); id != "" {
				return true
			}
			if g, _ := it["group"].(string); g == "all" {
				return true
			}
		}
	}
	return false
}

// openToWorld: an ingress rule from every address (a /0 range, however it is written).
func openToWorld(ev *audit.Event) bool {
	return anyString(ev.RequestParameters, func(s string) bool {
		return strings.HasSuffix(s, "/0") && strings.Count(s, "/") == 1
	})
}

func anyString(v any, f func(string) bool) bool {
	switch v := v.(type) {
	case string:
		return f(v)
	case map[string]any:
		for _, x := range v {
			if anyString(x, f) {
				return true
			}
		}
	case []any:
		for _, x := range v {
			if anyString(x, f) {
				return true
			}
		}
	}
	return false
}

func loginWithoutMFA(ev *audit.Event) bool {
	if ev.UserIdentity.Type == "Root" || ev.ErrorCode != "" {
		return false
	}
	mfa, _ := ev.AdditionalEventData["MFAUsed"].(string)
	ok, _ := ev.ResponseElements["ConsoleLogin"].(string)
	return strings.EqualFold(mfa, "No") && ok == "Success"
}
