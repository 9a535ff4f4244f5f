package cfn_test

import (
	"bytes"
	"encoding/json"
	"net/netip"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/phantom-perimeter/phantom/internal/cfn"
	"github.com/phantom-perimeter/phantom/internal/config"
	"github.com/phantom-perimeter/phantom/internal/demo"
)

// perimeter is testdata/perimeter.yaml: every translation rule has a case in it.
const perimeter = "testdata/perimeter.yaml"

func load(t *testing.T, file string) *config.Spec {
	t.Helper()
	s, err := config.Load(file)
	if err != nil {
		t.Fatalf("load %s: %v", file, err)
	}
	return s
}

// render translates s and returns the template bytes and their generic JSON form, the
// way CloudFormation reads them.
func render(t *testing.T, s *config.Spec) ([]byte, map[string]any) {
	t.Helper()
	tm, err := cfn.Translate(s)
	if err != nil {
		t.Fatalf("translate: %v", err)
	}
	b, err := cfn.Marshal(tm)
	if err != nil {
		t.Fatal(err)
	}
	var v map[string]any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("the template is not JSON: %v", err)
	}
	return b, v
}

// at follows keys (object keys, or list indexes as ints) into v.
func at(t *testing.T, v any, path ...any) any {
	t.Helper()
	for i, p := range path {
		switch k := p.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				t.Fatalf("%v: not an object at %v", path, path[:i])
			}
			if v, ok = m[k]; !ok {
				t.Fatalf("%v: no %q at %v (have %v)", path, k, path[:i], keys(m))
			}
		case int:
			l, ok := v.([]any)
			if !ok || k >= len(l) {
				t.Fatalf("%v: no item %d at %v", path, k, path[:i])
			}
			v = l[k]
		}
	}
	return v
}

func keys(m map[string]any) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func js(v any) string { b, _ := json.Marshal(v); return string(b) }

// statement returns the statement with this Sid of a policy document, or nil.
func statement(t *testing.T, doc any, sid string) map[string]any {
	t.Helper()
	for _, s := range at(t, doc, "Statement").([]any) {
		if m := s.(map[string]any); m["Sid"] == sid {
			return m
		}
	}
	return nil
}

func TestTranslateResourceTypes(t *testing.T) {
	_, tm := render(t, load(t, perimeter))
	for _, c := range []struct{ id, typ string }{
		{"ManagedPolicyGuard", "AWS::IAM::ManagedPolicy"},
		{"UserCarol", "AWS::IAM::User"},
		{"GroupAuditors", "AWS::IAM::Group"},
		{"RoleWorker", "AWS::IAM::Role"},
		{"InstanceProfileWorker", "AWS::IAM::InstanceProfile"},
		{"RestApiPay0000001", "AWS::ApiGateway::RestApi"},
		{"ApiResourcePay0000001Users", "AWS::ApiGateway::Resource"},
		{"MethodPay0000001UsersUserGET", "AWS::ApiGateway::Method"},
		{"StagePay0000001Prod", "AWS::ApiGateway::Stage"},
		{"StagePay0000001Beta", "AWS::ApiGateway::Stage"},
		{"VpcEndpointVpce0aaaaaaaaaaaaaaaa", "AWS::EC2::VPCEndpoint"},
		{"EndpointSecurityGroupVpce0aaaaaaaaaaaaaaaa", "AWS::EC2::SecurityGroup"},
		{"WorkloadSecurityGroupWorkerVpc0a1b2c3d4e5f60718", "AWS::EC2::SecurityGroup"},
		{"GuardDutyDetector", "AWS::GuardDuty::Detector"},
	} {
		if got := at(t, tm, "Resources", c.id, "Type"); got != c.typ {
			t.Errorf("%s is %v, want %s", c.id, got, c.typ)
		}
	}
	if got := at(t, tm, "Resources", "GuardDutyDetector", "Properties", "Enable"); got != true {
		t.Errorf("GuardDuty detector Enable = %v", got)
	}
	// Users get no access keys: their secrets would sit in the stack.
	for id, r := range at(t, tm, "Resources").(map[string]any) {
		if r.(map[string]any)["Type"] == "AWS::IAM::AccessKey" {
			t.Errorf("%s: the template creates an access key", id)
		}
	}
	// Groups keep their policies and members: a group's Deny must not be lost on AWS.
	group := at(t, tm, "Resources", "GroupAuditors", "Properties")
	if got := js(group); got != `{"GroupName":"auditors","ManagedPolicyArns":[{"Ref":"ManagedPolicyGuard"}],"Path":"/audit/","Policies":[{"PolicyDocument":{"Statement":[{"Action":"execute-api:Invoke","Effect":"Allow","Resource":{"Fn::Sub":"arn:${AWS::Partition}:execute-api:${AWS::Region}:${AWS::AccountId}:${RestApiPay0000001}/*/GET/users/*"}}],"Version":"2012-10-17"},"PolicyName":"read-users"}]}` {
		t.Errorf("group auditors = %s", got)
	}
	if got := js(at(t, tm, "Resources", "UserCarol", "Properties", "Groups")); got != `[{"Ref":"GroupAuditors"}]` {
		t.Errorf("carol's Groups = %s", got)
	}
	role := at(t, tm, "Resources", "RoleWorker", "Properties")
	if got := js(at(t, role, "MaxSessionDuration")); got != "7200" {
		t.Errorf("MaxSessionDuration = %s, want 7200 (2h)", got)
	}
	if got := js(at(t, role, "Tags")); got != `[{"Key":"owner","Value":"payments"},{"Key":"tier","Value":"batch"}]` {
		t.Errorf("Tags = %s, want sorted IAM tags", got)
	}
	if got := js(at(t, role, "PermissionsBoundary")); got != `{"Ref":"ManagedPolicyGuard"}` {
		t.Errorf("PermissionsBoundary = %s", got)
	}
	// A node role's trust lets EC2 deliver its credentials through the instance profile.
	if statement(t, at(t, role, "AssumeRolePolicyDocument"), "PhantomNodesInstanceProfile") == nil {
		t.Error("node role worker does not trust ec2.amazonaws.com")
	}
	if got := js(at(t, tm, "Resources", "InstanceProfileWorker", "Properties", "Roles")); got != `[{"Ref":"RoleWorker"}]` {
		t.Errorf("instance profile roles = %s", got)
	}
	for _, p := range []string{"VpcIdVpc0a1b2c3d4e5f60718", "VpcIdVpc0ffffffffffffffff", "SubnetIdsVpc0a1b2c3d4e5f60718"} {
		at(t, tm, "Parameters", p, "Type")
	}
}

func TestPolicyRewriting(t *testing.T) {
	_, tm := render(t, load(t, perimeter))
	res := at(t, tm, "Resources")
	guard := at(t, res, "ManagedPolicyGuard", "Properties", "PolicyDocument")
	rest := at(t, res, "RestApiPay0000001", "Properties", "Policy")
	epA := at(t, res, "VpcEndpointVpce0aaaaaaaaaaaaaaaa", "Properties", "PolicyDocument")
	for _, c := range []struct {
		name string
		got  any
		want string
	}{
		{"an API's own ARNs in its resource policy use API Gateway's execute-api:/ shorthand",
			statement(t, rest, "ThroughEndpointA")["Resource"], `"execute-api:/*"`},
		{"aws:SourceVpce names the endpoints CloudFormation creates",
			statement(t, rest, "ThroughEndpointA")["Condition"],
			`{"StringNotEquals":{"aws:SourceVpce":[{"Ref":"VpcEndpointVpce0aaaaaaaaaaaaaaaa"},{"Ref":"VpcEndpointVpce0bbbbbbbbbbbbbbbb"}]}}`},
		{"identity policies name the real API id; IAM policy variables stay literal inside Fn::Sub",
			statement(t, guard, "PerUser")["Resource"],
			`{"Fn::Sub":"arn:${AWS::Partition}:execute-api:${AWS::Region}:${AWS::AccountId}:${RestApiPay0000001}/*/GET/users/${!aws:username}"}`},
		{"ARNs of no spec account or Region stay as written",
			statement(t, guard, "OtherAccount")["Resource"], `"arn:aws:s3:::shared-bucket/*"`},
		{"a spec VPC id in a condition is the VPC parameter",
			statement(t, guard, "StopHighRiskOutsideVpc")["Condition"],
			`{"StringNotEquals":{"aws:SourceVpc":{"Ref":"VpcIdVpc0a1b2c3d4e5f60718"}}}`},
		{"an endpoint policy names an API whose resource policy names the endpoint by * (no cycle), other APIs by id",
			at(t, epA, "Statement", 0, "Resource"),
			`[{"Fn::Sub":"arn:${AWS::Partition}:execute-api:${AWS::Region}:${AWS::AccountId}:*/*"},{"Fn::Sub":"arn:${AWS::Partition}:execute-api:${AWS::Region}:${AWS::AccountId}:${RestApiRep0000002}/*"}]`},
		{"a trust policy names a spec user by GetAtt (IAM needs it to exist first)",
			at(t, res, "RoleWorker", "Properties", "AssumeRolePolicyDocument", "Statement", 0, "Principal"),
			`{"AWS":{"Fn::GetAtt":["UserCarol","Arn"]}}`},
		{"a trust policy names a spec role by ARN and an account id as its root",
			at(t, res, "RoleAuditor", "Properties", "AssumeRolePolicyDocument", "Statement", 0, "Principal"),
			`{"AWS":[{"Fn::Sub":"arn:${AWS::Partition}:iam::${AWS::AccountId}:role/worker"},{"Fn::Sub":"arn:${AWS::Partition}:iam::${AWS::AccountId}:root"}]}`},
		{"a trusted spec role is created first",
			at(t, res, "RoleAuditor", "DependsOn"), `["RoleWorker"]`},
		{"identity policies name roles by ARN without a dependency (users and roles would form cycles)",
			at(t, res, "UserCarol", "Properties", "Policies", 0, "PolicyDocument", "Statement", 0, "Resource"),
			`{"Fn::Sub":"arn:${AWS::Partition}:iam::${AWS::AccountId}:role/*"}`},
		{"an API without a resource policy delegates to the account's identity policies",
			at(t, res, "RestApiRep0000002", "Properties", "Policy", "Statement"),
			`[{"Action":"execute-api:Invoke","Effect":"Allow","Principal":{"AWS":{"Fn::Sub":"arn:${AWS::Partition}:iam::${AWS::AccountId}:root"}},"Resource":"execute-api:/*","Sid":"PhantomAccountPrincipals"}]`},
	} {
		if got := js(c.got); got != c.want {
			t.Errorf("%s:\n got %s\nwant %s", c.name, got, c.want)
		}
	}
}

// TestPhantomKeys holds the fail-closed translation of phantom:* keys: an Allow that
// depends on one is dropped, a Deny keeps only its AWS conditions, and a policy left
// empty allows nothing (an endpoint policy never falls back to AWS's full access).
func TestPhantomKeys(t *testing.T) {
	_, tm := render(t, load(t, perimeter))
	res := at(t, tm, "Resources")
	nothing := `{"Effect":"Deny","NotAction":"*","Resource":"*","Sid":"PhantomNothingExpressible"}`
	for _, c := range []struct {
		name string
		got  any
		want string
	}{
		{"an Allow conditioned on phantom:RiskLevel is dropped; the policy then matches nothing",
			at(t, res, "ManagedPolicyLowRiskOnly", "Properties", "PolicyDocument", "Statement"), "[" + nothing + "]"},
		{"a Deny conditioned only on a phantom key (any case) becomes unconditional",
			statement(t, at(t, res, "ManagedPolicyGuard", "Properties", "PolicyDocument"), "StopWhenHighRisk"),
			`{"Action":"execute-api:Invoke","Effect":"Deny","Resource":"*","Sid":"StopWhenHighRisk"}`},
		{"an Allow with a ${phantom:...} variable is dropped",
			statement(t, at(t, res, "ManagedPolicyGuard", "Properties", "PolicyDocument"), "PerRisk"), `null`},
		{"an inline policy with nothing left is omitted",
			at(t, res, "UserCarol", "Properties", "Policies"),
			`[{"PolicyDocument":{"Statement":[{"Action":"sts:AssumeRole","Effect":"Allow","Resource":{"Fn::Sub":"arn:${AWS::Partition}:iam::${AWS::AccountId}:role/*"}}],"Version":"2012-10-17"},"PolicyName":"assume"}]`},
		{"a trust policy with nothing left lets no one assume the role",
			at(t, res, "RoleRisky", "Properties", "AssumeRolePolicyDocument", "Statement"),
			`[{"Action":"sts:*","Effect":"Deny","Principal":"*","Sid":"PhantomNothingExpressible"}]`},
		{"a resource policy Allow on a phantom key is dropped, the Deny and NONE routes stay",
			at(t, res, "RestApiPay0000001", "Properties", "Policy", "Statement", 1, "Sid"), `"PhantomUnauthenticatedRoutes"`},
		{"an endpoint policy with nothing left admits nothing instead of falling back to full access",
			at(t, res, "VpcEndpointVpce0bbbbbbbbbbbbbbbb", "Properties", "PolicyDocument", "Statement"),
			`[{"Effect":"Deny","NotAction":"*","Principal":"*","Resource":"*","Sid":"PhantomNothingExpressible"}]`},
	} {
		if got := js(c.got); got != c.want {
			t.Errorf("%s:\n got %s\nwant %s", c.name, got, c.want)
		}
	}
	deny := statement(t, at(t, res, "ManagedPolicyGuard", "Properties", "PolicyDocument"), "StopHighRiskOutsideVpc")
	if got := js(deny["Condition"]); strings.Contains(strings.ToLower(got), "phantom") || !strings.Contains(got, "aws:SourceVpc") {
		t.Errorf("a Deny with AWS and phantom conditions must keep exactly the AWS ones: %s", got)
	}
	// No phantom key reaches AWS anywhere.
	b, _ := json.Marshal(res)
	if bytes.Contains(bytes.ToLower(b), []byte("phantom:")) {
		t.Errorf("a phantom: key or variable is left in the resources")
	}
	log := at(t, tm, "Metadata", "Phantom", "PhantomConditionTranslations").([]any)
	if len(log) != 8 {
		t.Errorf("Metadata records %d phantom-key translations, want 8:\n%s", len(log), js(log))
	}
	for _, want := range []string{"StopWhenHighRisk: Deny kept", "it is now unconditional", "InvokeWhenLowRisk: Allow dropped"} {
		if !strings.Contains(js(log), want) {
			t.Errorf("Metadata does not say %q:\n%s", want, js(log))
		}
	}
}

func TestRoutes(t *testing.T) {
	_, tm := render(t, load(t, perimeter))
	res := at(t, tm, "Resources")
	method := func(id string) map[string]any { return at(t, res, id, "Properties").(map[string]any) }
	for _, c := range []struct {
		id, auth, uri string
	}{
		{"MethodPay0000001RootGET", "AWS_IAM", "https://pay.example.com/v1"},
		{"MethodPay0000001UsersUserPUT", "AWS_IAM", "https://pay.example.com/v1/users/{user}"},
		// /users/{name}/cards shares /users/{user}: API Gateway allows one parameter child.
		{"MethodPay0000001UsersNameCardsGET", "AWS_IAM", "https://pay.example.com/v1/users/{user}/cards"},
		{"MethodPay0000001FilesProxyANY", "AWS_IAM", "https://pay.example.com/v1/files/{proxy}"},
		{"MethodPay0000001PingGET", "NONE", "https://pay.example.com/v1/ping"},
		{"MethodPay0000001PingHEAD", "NONE", "https://pay.example.com/v1/ping"},
	} {
		m := method(c.id)
		if m["AuthorizationType"] != c.auth {
			t.Errorf("%s: AuthorizationType %v, want %s", c.id, m["AuthorizationType"], c.auth)
		}
		if got := at(t, m, "Integration", "Uri"); got != c.uri {
			t.Errorf("%s: Uri %v, want %s", c.id, got, c.uri)
		}
		if got := at(t, m, "Integration", "Type"); got != "HTTP_PROXY" {
			t.Errorf("%s: integration %v", c.id, got)
		}
		// The spec's 2m timeout is over API Gateway's 29 s.
		if got := js(at(t, m, "Integration", "TimeoutInMillis")); got != "29000" {
			t.Errorf("%s: timeout %s, want 29000", c.id, got)
		}
	}
	if got := js(at(t, method("MethodPay0000001FilesProxyANY"), "Integration", "RequestParameters")); got != `{"integration.request.path.proxy":"method.request.path.proxy"}` {
		t.Errorf("greedy path parameter mapping = %s", got)
	}
	if got := at(t, res, "ApiResourcePay0000001FilesProxy", "Properties", "PathPart"); got != "{proxy+}" {
		t.Errorf("greedy PathPart = %v", got)
	}
	if got := js(at(t, res, "ApiResourcePay0000001UsersNameCards", "Properties", "ParentId")); got != `{"Ref":"ApiResourcePay0000001UsersUser"}` {
		t.Errorf("/users/{name}/cards hangs under %s, want the shared {user} resource", got)
	}
	none := statement(t, at(t, res, "RestApiPay0000001", "Properties", "Policy"), "PhantomUnauthenticatedRoutes")
	if got := js(none["Resource"]); got != `["execute-api:/*/GET/ping","execute-api:/*/HEAD/ping"]` || none["Principal"] != "*" {
		t.Errorf("NONE routes in the resource policy: %s", js(none))
	}
	if got := js(at(t, res, "RestApiPay0000001", "Properties", "EndpointConfiguration")); got != `{"Types":["PRIVATE"]}` {
		t.Errorf("EndpointConfiguration = %s", got)
	}
	// One deployment per stage, after every method; the stage uses it.
	var methods []string
	for id := range res.(map[string]any) {
		if strings.HasPrefix(id, "MethodPay0000001") {
			methods = append(methods, id)
		}
	}
	slices.Sort(methods)
	for _, stage := range []string{"Prod", "Beta"} {
		dep := at(t, res, "StagePay0000001"+stage, "Properties", "DeploymentId", "Ref").(string)
		if !strings.HasPrefix(dep, "DeploymentPay0000001"+stage) {
			t.Errorf("stage %s uses %s", stage, dep)
		}
		if got := js(at(t, res, dep, "DependsOn")); got != js(methods) {
			t.Errorf("%s depends on %s, want every method %s", dep, got, js(methods))
		}
	}
}

// TestDeploymentFollowsContent: a changed API gets a new deployment logical id, so a stack
// update deploys it; an unchanged one keeps its id.
func TestDeploymentFollowsContent(t *testing.T) {
	data, err := os.ReadFile(perimeter)
	if err != nil {
		t.Fatal(err)
	}
	dep := func(src []byte) string {
		s, err := config.Parse(perimeter, src)
		if err != nil {
			t.Fatal(err)
		}
		_, tm := render(t, s)
		return at(t, tm, "Resources", "StagePay0000001Prod", "Properties", "DeploymentId", "Ref").(string)
	}
	before := dep(data)
	if again := dep(data); again != before {
		t.Fatalf("deployment id changed without a change: %s, %s", before, again)
	}
	changed := dep(bytes.Replace(data, []byte("methods: [GET, PUT]"), []byte("methods: [GET, PUT, DELETE]"), 1))
	if changed == before {
		t.Fatalf("adding a method kept deployment %s", before)
	}
}

func TestNetwork(t *testing.T) {
	_, tm := render(t, load(t, perimeter))
	res := at(t, tm, "Resources")
	sgA := at(t, res, "EndpointSecurityGroupVpce0aaaaaaaaaaaaaaaa", "Properties")
	for _, r := range at(t, sgA, "SecurityGroupIngress").([]any) {
		m := r.(map[string]any)
		if js(m["FromPort"]) != "443" || js(m["ToPort"]) != "443" || m["IpProtocol"] != "tcp" {
			t.Errorf("endpoint ingress rule %s is not TCP 443 only", js(m))
		}
	}
	var cidrs []string
	for _, r := range at(t, sgA, "SecurityGroupIngress").([]any) {
		m := r.(map[string]any)
		if c, ok := m["CidrIp"].(string); ok {
			cidrs = append(cidrs, c)
		}
		if c, ok := m["CidrIpv6"].(string); ok {
			cidrs = append(cidrs, c)
		}
	}
	if js(cidrs) != `["10.0.0.0/16","2001:db8::/32"]` {
		t.Errorf("endpoint ingress CIDRs %v, want the spec's, each once", cidrs)
	}
	// Loopback has no meaning on AWS: endpoint b admits nothing.
	if _, ok := at(t, res, "EndpointSecurityGroupVpce0bbbbbbbbbbbbbbbb", "Properties").(map[string]any)["SecurityGroupIngress"]; ok {
		t.Error("loopback ingress became an AWS rule")
	}
	epA := at(t, res, "VpcEndpointVpce0aaaaaaaaaaaaaaaa", "Properties")
	for k, want := range map[string]string{
		"VpcEndpointType":   `"Interface"`,
		"ServiceName":       `{"Fn::Sub":"com.amazonaws.${AWS::Region}.execute-api"}`,
		"PrivateDnsEnabled": `true`,
		"VpcId":             `{"Ref":"VpcIdVpc0a1b2c3d4e5f60718"}`,
		"SubnetIds":         `{"Ref":"SubnetIdsVpc0a1b2c3d4e5f60718"}`,
		"SecurityGroupIds":  `[{"Fn::GetAtt":["EndpointSecurityGroupVpce0aaaaaaaaaaaaaaaa","GroupId"]}]`,
	} {
		if got := js(at(t, epA, k)); got != want {
			t.Errorf("endpoint %s = %s, want %s", k, got, want)
		}
	}
	// AWS allows execute-api private DNS on one endpoint per VPC.
	if got := at(t, res, "VpcEndpointVpce0bbbbbbbbbbbbbbbb", "Properties", "PrivateDnsEnabled"); got != false {
		t.Errorf("second endpoint in the VPC has PrivateDnsEnabled %v", got)
	}
	egress := js(at(t, res, "WorkloadSecurityGroupWorkerVpc0a1b2c3d4e5f60718", "Properties", "SecurityGroupEgress"))
	want := `[{"Description":"API pay0000001 through endpoint vpce-0aaaaaaaaaaaaaaaa","DestinationSecurityGroupId":{"Fn::GetAtt":["EndpointSecurityGroupVpce0aaaaaaaaaaaaaaaa","GroupId"]},"FromPort":443,"IpProtocol":"tcp","ToPort":443},` +
		`{"Description":"API pay0000001 through endpoint vpce-0bbbbbbbbbbbbbbbb","DestinationSecurityGroupId":{"Fn::GetAtt":["EndpointSecurityGroupVpce0bbbbbbbbbbbbbbbb","GroupId"]},"FromPort":443,"IpProtocol":"tcp","ToPort":443},` +
		`{"CidrIp":"10.0.50.0/24","Description":"CIDR 10.0.50.0/24 on port 5432","FromPort":5432,"IpProtocol":"tcp","ToPort":5432},` +
		`{"CidrIp":"10.0.50.0/24","Description":"CIDR 10.0.50.0/24 on ports 8000-8100","FromPort":8000,"IpProtocol":"tcp","ToPort":8100},` +
		`{"CidrIp":"10.0.60.7/32","Description":"host 10.0.60.7 on port 443","FromPort":443,"IpProtocol":"tcp","ToPort":443}]`
	if egress != want {
		t.Errorf("worker egress:\n got %s\nwant %s", egress, want)
	}
	// A role without egress rules may send nowhere: the default allow-all is replaced.
	if got := js(at(t, res, "WorkloadSecurityGroupAuditorVpc0ffffffffffffffff", "Properties", "SecurityGroupEgress")); got != `[{"CidrIp":"127.0.0.1/32","Description":"No egress: replaces the default allow-all rule","IpProtocol":"-1"}]` {
		t.Errorf("auditor egress = %s", got)
	}
	notes := js(at(t, tm, "Metadata", "Phantom", "NotExpressed"))
	for _, want := range []string{"egress to host *.amazonaws.com", "ingress from loopback 127.0.0.1/32", "private DNS for execute-api is on endpoint vpce-0aaaaaaaaaaaaaaaa"} {
		if !strings.Contains(notes, want) {
			t.Errorf("Metadata NotExpressed does not mention %q", want)
		}
	}
	if !strings.Contains(js(at(t, tm, "Metadata", "Phantom", "Ports")), "443") {
		t.Error("Metadata does not explain the port difference")
	}
}

var logicalIDRe = regexp.MustCompile(`^[A-Za-z0-9]{1,255}$`)

// TestDeterministic: two translations of the same spec, parsed separately, are
// byte-identical, and every logical id is one CloudFormation accepts.
func TestDeterministic(t *testing.T) {
	for _, file := range []string{perimeter, "../../examples/demo.yaml"} {
		a, tm := render(t, load(t, file))
		for range 3 {
			if b, _ := render(t, load(t, file)); !bytes.Equal(a, b) {
				t.Fatalf("%s: two translations differ", file)
			}
		}
		for _, section := range []string{"Parameters", "Resources", "Outputs"} {
			for id := range at(t, tm, section).(map[string]any) {
				if !logicalIDRe.MatchString(id) {
					t.Errorf("%s: %s id %q is not alphanumeric", file, section, id)
				}
			}
		}
	}
}

// TestLogicalIDCollisions: names that reduce to the same id stay distinct.
func TestLogicalIDCollisions(t *testing.T) {
	spec := `version: 1
account: "123456789012"
region: us-east-1
roles:
  - name: service-a
    trustPolicy: {Version: "2012-10-17", Statement: [{Effect: Allow, Principal: {AWS: "123456789012"}, Action: sts:AssumeRole}]}
  - name: service_a
    trustPolicy: {Version: "2012-10-17", Statement: [{Effect: Allow, Principal: {AWS: "123456789012"}, Action: sts:AssumeRole}]}
`
	s, err := config.Parse("ids.yaml", []byte(spec))
	if err != nil {
		t.Fatal(err)
	}
	_, tm := render(t, s)
	names := map[string]bool{}
	for id, r := range at(t, tm, "Resources").(map[string]any) {
		if r.(map[string]any)["Type"] == "AWS::IAM::Role" {
			if !logicalIDRe.MatchString(id) {
				t.Errorf("bad id %q", id)
			}
			names[at(t, r, "Properties", "RoleName").(string)] = true
		}
	}
	if len(names) != 2 {
		t.Fatalf("roles %v, want both", names)
	}
}

// TestDemoPerimeter translates the perimeter phantom up runs.
func TestDemoPerimeter(t *testing.T) {
	s, err := config.Parse("demo.yaml", demoSpec(t))
	if err != nil {
		t.Fatal(err)
	}
	_, tm := render(t, s)
	res := at(t, tm, "Resources")
	if got := at(t, res, "MethodA1b2c3d4e5HealthGET", "Properties", "AuthorizationType"); got != "NONE" {
		t.Errorf("/health authorization %v", got)
	}
	if got := at(t, res, "MethodA1b2c3d4e5AdminProxyANY", "Properties", "AuthorizationType"); got != "AWS_IAM" {
		t.Errorf("/admin/{proxy+} authorization %v", got)
	}
	at(t, res, "InstanceProfileServiceA", "Type")
	// /reports refuses long-term keys: on AWS, a Deny where aws:TokenIssueTime is absent
	// (only temporary credentials have it).
	refuse := statement(t, at(t, res, "RestApiA1b2c3d4e5", "Properties", "Policy"), "PhantomRefuseLongTermKeys")
	if js(refuse["Resource"]) != `["execute-api:/*/GET/reports"]` || refuse["Effect"] != "Deny" || js(refuse["Condition"]) != `{"Null":{"aws:TokenIssueTime":"true"}}` {
		t.Errorf("longTermKeys: refuse on AWS: %s", js(refuse))
	}
	// The demo's ingress is loopback plus 10.0.0.0/16; on AWS only the VPC block remains.
	if got := js(at(t, res, "EndpointSecurityGroupVpce0123456789abcdef0", "Properties", "SecurityGroupIngress", 0, "CidrIp")); got != `"10.0.0.0/16"` {
		t.Errorf("demo ingress %s", got)
	}
}

// demoSpec renders the demo perimeter as phantom up does, on fixed addresses.
func demoSpec(t *testing.T) []byte {
	t.Helper()
	p := demo.Defaults()
	p.GatewayAddr = netip.MustParseAddrPort("127.0.0.1:18445")
	p.STSAddr = netip.MustParseAddrPort("127.0.0.1:18444")
	p.EndpointAddr = netip.MustParseAddrPort("127.0.0.1:18443")
	p.BackendURL = "http://127.0.0.1:18446"
	b, err := p.Spec()
	if err != nil {
		t.Fatal(err)
	}
	return b
}
