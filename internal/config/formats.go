package config

import "regexp"

// Formats of identifiers, from the AWS API references where AWS defines them. The JSON
// Schema in schema/phantom.schema.json carries the same patterns; TestSchemaAgrees keeps
// the two in step.
var (
	// Account ids are 12 digits (IAM identifiers: "AWS account ID").
	accountRe = regexp.MustCompile(`^[0-9]{12}$`)
	// Region names: us-east-1, eu-central-2, us-gov-west-1, ap-southeast-5.
	regionRe = regexp.MustCompile(`^[a-z]{2}(-[a-z]+)+-[0-9]{1,2}$`)
	// IAM user and role names (IAM API Reference, CreateUser/CreateRole: [\w+=,.@-]+, 1-64).
	principalNameRe = regexp.MustCompile(`^[A-Za-z0-9_+=,.@-]{1,64}$`)
	// IAM policy names (PutRolePolicy PolicyName: [\w+=,.@-]+, 1-128).
	policyNameRe = regexp.MustCompile(`^[A-Za-z0-9_+=,.@-]{1,128}$`)
	// IAM group names (CreateGroup GroupName: [\w+=,.@-]+, 1-128).
	groupNameRe = regexp.MustCompile(`^[A-Za-z0-9_+=,.@-]{1,128}$`)
	// IAM paths (CreateRole Path: (\u002F)|(\u002F[\u0021-\u007E]+\u002F), up to 512).
	iamPathRe = regexp.MustCompile(`^/([\x21-\x7E]{0,510}/)?$`)
	// IAM tags (Tag: keys 1-128, values 0-256, [\p{L}\p{Z}\p{N}_.:/=+\-@]).
	tagKeyRe   = regexp.MustCompile(`^[\p{L}\p{Z}\p{N}_.:/=+\-@]{1,128}$`)
	tagValueRe = regexp.MustCompile(`^[\p{L}\p{Z}\p{N}_.:/=+\-@]{0,256}$`)
	// API Gateway REST API ids are 10 lower-case letters and digits.
	apiIDRe = regexp.MustCompile(`^[a-z0-9]{10}$`)
	// API Gateway stage names: letters, digits, hyphens and underscores, up to 128.
	stageRe = regexp.MustCompile(`^[A-Za-z0-9_-]{1,128}$`)
	// Backend names are Phantom's own: short identifiers referenced by routes.
	backendRe = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)
	// VPC endpoint and VPC ids: the prefix and 8 (older) or 17 hex digits.
	vpceRe = regexp.MustCompile(`^vpce-([0-9a-f]{8}|[0-9a-f]{17})$`)
	vpcRe  = regexp.MustCompile(`^vpc-([0-9a-f]{8}|[0-9a-f]{17})$`)
	// Node and gateway names appear in certificate URIs and host names: one DNS label
	// (RFC 1123 §2.1), lower case.
	labelRe = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
	// A literal path segment: what API Gateway allows in a resource path part.
	literalSegmentRe = regexp.MustCompile(`^[A-Za-z0-9._~:@-]+$`)
	paramRe          = regexp.MustCompile(`^\{([A-Za-z_][A-Za-z0-9_]{0,63})(\+?)\}$`)
	// A finding type pattern: GuardDuty's ThreatPurpose:ResourceType/ThreatFamily.Detail
	// characters, with * as a wildcard.
	findingTypeRe = regexp.MustCompile(`^[A-Za-z0-9:/._!*-]{1,128}$`)
	// Threat list names.
	listNameRe = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,64}$`)
	// A protected principal: an IAM or STS ARN, * matching any run of characters.
	protectedRe = regexp.MustCompile(`^arn:aws:(iam|sts)::[0-9]{12}:[A-Za-z0-9+=,.@_/*-]{1,512}$`)
	// An OAuth 2.0 scope token (RFC 6749 §3.3: %x21 / %x23-5B / %x5D-7E).
	scopeRe = regexp.MustCompile(`^[\x21\x23-\x5b\x5d-\x7e]{1,256}$`)
)

const (
	accountWhat     = "a 12-digit account id"
	regionWhat      = "a region name like us-east-1"
	principalWhat   = "a name of 1 to 64 letters, digits and _+=,.@- (IAM's rule)"
	policyNameWhat  = "a name of 1 to 128 letters, digits and _+=,.@- (IAM's rule)"
	groupWhat       = "a group name of 1 to 128 letters, digits and _+=,.@- (IAM's rule)"
	iamPathWhat     = "/ or a path that starts and ends with / (IAM's rule)"
	apiIDWhat       = "an API id of 10 lower-case letters and digits, like a1b2c3d4e5"
	stageWhat       = "a stage name of letters, digits, - and _"
	backendWhat     = "a backend name of letters, digits, - and _"
	vpceWhat        = "an endpoint id like vpce-0123456789abcdef0"
	vpcWhat         = "a VPC id like vpc-0123456789abcdef0"
	labelWhat       = "a lower-case DNS label like service-a-1"
	findingTypeWhat = "a GuardDuty finding type, * for any run of characters"
	listNameWhat    = "a name of letters, digits, _ . and -"
	protectedWhat   = "a user or role ARN, * for any run of characters"
)

// examples show a valid value of each format in "what to do".
var examples = map[string]string{
	accountWhat:     `write the 12 digits in quotes, e.g. "123456789012"`,
	regionWhat:      "write e.g. us-east-1 or eu-central-1",
	principalWhat:   "rename it, e.g. alice or app-role",
	policyNameWhat:  "rename it, e.g. read-orders",
	groupWhat:       "rename it, e.g. developers",
	iamPathWhat:     "write e.g. / or /engineering/",
	apiIDWhat:       "write 10 characters from a-z and 0-9, e.g. a1b2c3d4e5",
	stageWhat:       "write e.g. prod",
	backendWhat:     "rename it, e.g. orders",
	vpceWhat:        "write vpce- and 17 hex digits, e.g. vpce-0123456789abcdef0",
	vpcWhat:         "write vpc- and 17 (or 8) hex digits, e.g. vpc-0a1b2c3d4e5f60718",
	labelWhat:       "use a-z, 0-9 and inner hyphens, e.g. service-a-1",
	findingTypeWhat: "write e.g. Recon:IAMUser/* or UnauthorizedAccess:IAMUser/InstanceCredentialExfiltration.*",
	listNameWhat:    "rename it, e.g. tor-exits",
	protectedWhat:   "write e.g. arn:aws:iam::123456789012:role/break-glass or arn:aws:iam::123456789012:user/admin-*",
}

func fixFor(what string) string {
	if ex, ok := examples[what]; ok {
		return ex
	}
	return "write " + what
}
