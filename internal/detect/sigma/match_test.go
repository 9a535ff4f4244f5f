package sigma

import (
	"strings"
	"testing"

	"github.com/phantom-perimeter/phantom/internal/audit"
)

func rule(detection string) string {
	return "title: t\nid: 00000000-0000-4000-8000-000000000001\nauthor: a\nlevel: high\ntags: [attack.persistence, attack.t1098]\n" +
		"logsource:\n  product: aws\n  service: cloudtrail\ndetection:\n" + detection
}

func ev(name string, params map[string]any) *audit.Event {
	return &audit.Event{EventSource: "iam.amazonaws.com", EventName: name, EventType: "AwsApiCall",
		SourceIPAddress: "198.51.100.7", UserAgent: "aws-cli/2.17.20 Python/3.11",
		UserIdentity:      audit.UserIdentity{Type: "IAMUser", ARN: "arn:aws:iam::123456789012:user/alice", UserName: "alice"},
		RequestParameters: params}
}

// TestMatching: each row is a Sigma specification rule (modifiers, wildcards, null,
// lists, whole objects) and an event it must, or must not, match.
func TestMatching(t *testing.T) {
	for _, c := range []struct {
		name, detection string
		ev              *audit.Event
		want            bool
	}{
		{"exact is case-insensitive", "  sel:\n    eventName: createuser\n  condition: sel\n", ev("CreateUser", nil), true},
		{"exact is whole", "  sel:\n    eventName: CreateUse\n  condition: sel\n", ev("CreateUser", nil), false},
		{"cased exact", "  sel:\n    eventName|cased: createuser\n  condition: sel\n", ev("CreateUser", nil), false},
		{"list is any", "  sel:\n    eventName: [DeleteUser, CreateUser]\n  condition: sel\n", ev("CreateUser", nil), true},
		{"wildcard star", "  sel:\n    eventName: Create*\n  condition: sel\n", ev("CreateUser", nil), true},
		{"wildcard question", "  sel:\n    eventName: CreateUse?\n  condition: sel\n", ev("CreateUser", nil), true},
		{"escaped star is literal", "  sel:\n    eventName: 'Create\\*'\n  condition: sel\n", ev("CreateUser", nil), false},
		{"escaped star matches a star", "  sel:\n    eventName: 'Create\\*'\n  condition: sel\n", ev("Create*", nil), true},
		{"contains", "  sel:\n    userAgent|contains: CLI/2\n  condition: sel\n", ev("CreateUser", nil), true},
		{"startswith", "  sel:\n    userAgent|startswith: aws-cli\n  condition: sel\n", ev("CreateUser", nil), true},
		{"endswith", "  sel:\n    userAgent|endswith: aws-cli\n  condition: sel\n", ev("CreateUser", nil), false},
		{"contains all", "  sel:\n    userAgent|contains|all: [aws-cli, Python]\n  condition: sel\n", ev("CreateUser", nil), true},
		{"contains all, one missing", "  sel:\n    userAgent|contains|all: [aws-cli, Ruby]\n  condition: sel\n", ev("CreateUser", nil), false},
		{"null matches an absent field", "  sel:\n    errorCode: null\n  condition: sel\n", ev("CreateUser", nil), true},
		{"null does not match a present field", "  sel:\n    sourceIPAddress: null\n  condition: sel\n", ev("CreateUser", nil), false},
		{"nested parameter", "  sel:\n    requestParameters.userName: bob\n  condition: sel\n", ev("CreateUser", map[string]any{"userName": "bob"}), true},
		{"number parameter", "  sel:\n    requestParameters.port: 22\n  condition: sel\n", ev("X", map[string]any{"port": 22.0}), true},
		{"boolean parameter", "  sel:\n    requestParameters.enable: 'false'\n  condition: sel\n", ev("X", map[string]any{"enable": false}), true},
		{"list elements", "  sel:\n    requestParameters.layers|contains: layer:evil\n  condition: sel\n", ev("X", map[string]any{"layers": []any{"arn:1:layer:ok", "arn:2:layer:evil:1"}}), true},
		{"through a list of objects", "  sel:\n    requestParameters.items.cidr: 0.0.0.0/0\n  condition: sel\n", ev("X", map[string]any{"items": []any{map[string]any{"cidr": "10.0.0.0/8"}, map[string]any{"cidr": "0.0.0.0/0"}}}), true},
		{"whole object is its JSON", "  sel:\n    requestParameters|contains: '\"status\":\"Suspended\"'\n  condition: sel\n", ev("X", map[string]any{"versioningConfiguration": map[string]any{"status": "Suspended"}}), true},
		{"wildcard alone needs a value", "  sel:\n    errorMessage|contains: '*'\n  condition: sel\n", ev("X", nil), false},
		{"regex is case-sensitive", "  sel:\n    userIdentity.arn|re: ':USER/'\n  condition: sel\n", ev("X", nil), false},
		{"regex i flag", "  sel:\n    userIdentity.arn|re|i: ':USER/'\n  condition: sel\n", ev("X", nil), true},
		{"cidr", "  sel:\n    sourceIPAddress|cidr: 198.51.100.0/24\n  condition: sel\n", ev("X", nil), true},
		{"cidr outside", "  sel:\n    sourceIPAddress|cidr: 10.0.0.0/8\n  condition: sel\n", ev("X", nil), false},
		{"fieldref equal", "  sel:\n    userIdentity.userName|fieldref: requestParameters.userName\n  condition: sel\n", ev("X", map[string]any{"userName": "alice"}), true},
		{"fieldref different", "  sel:\n    userIdentity.userName|fieldref: requestParameters.userName\n  condition: sel\n", ev("X", map[string]any{"userName": "bob"}), false},
		{"exists", "  sel:\n    requestParameters.userName|exists: true\n  condition: sel\n", ev("X", map[string]any{"userName": "bob"}), true},
		{"base64offset", "  sel:\n    requestParameters.userData|base64offset|contains: 'curl '\n  condition: sel\n", ev("X", map[string]any{"userData": "IyEvYmluL2Jhc2gKY3VybCBodHRwOi8vZXZpbA=="}), true},
		{"gt", "  sel:\n    requestParameters.count|gt: 10\n  condition: sel\n", ev("X", map[string]any{"count": 11.0}), true},
		{"and not", "  sel:\n    eventName: CreateUser\n  filter:\n    userIdentity.type: Root\n  condition: sel and not filter\n", ev("CreateUser", nil), true},
		{"1 of pattern", "  sel_a:\n    eventName: A\n  sel_b:\n    eventName: CreateUser\n  condition: 1 of sel_*\n", ev("CreateUser", nil), true},
		{"all of pattern", "  sel_a:\n    eventName: A\n  sel_b:\n    eventName: CreateUser\n  condition: all of sel_*\n", ev("CreateUser", nil), false},
		{"1 of them skips underscore", "  _sel:\n    eventName: CreateUser\n  other:\n    eventName: A\n  condition: 1 of them\n", ev("CreateUser", nil), false},
		{"list of maps is any", "  sel:\n    - eventName: A\n    - userIdentity.type: IAMUser\n  condition: sel\n", ev("CreateUser", nil), true},
	} {
		t.Run(c.name, func(t *testing.T) {
			r, err := Parse([]byte(rule(c.detection)))
			if err != nil {
				t.Fatal(err)
			}
			if got := r.Matches(c.ev); got != c.want {
				t.Errorf("match = %v, want %v", got, c.want)
			}
			s := NewSet("", []*Rule{r}, nil)
			if got := fires(s, c.ev, r); got != c.want {
				t.Errorf("through the index: %v, want %v", got, c.want)
			}
		})
	}
}

// TestUnloadable: what this matcher cannot do is a load error naming the reason.
func TestUnloadable(t *testing.T) {
	for _, c := range []struct{ name, text, reason string }{
		{"unknown field", rule("  sel:\n    userIdentity.invokedBy: x\n  condition: sel\n"), "not a CloudTrail record field"},
		{"unknown modifier", rule("  sel:\n    eventName|windash: x\n  condition: sel\n"), `modifier "windash" is not supported`},
		{"keywords", rule("  keywords:\n    - evil\n  condition: keywords\n"), "keyword searches"},
		{"aggregation", rule("  sel:\n    eventName: x\n  condition: sel | count() > 5\n"), "aggregations"},
		{"undefined search", rule("  sel:\n    eventName: x\n  condition: other\n"), `"other"`},
		{"bad regex", rule("  sel:\n    eventName|re: '(?<=x)'\n  condition: sel\n"), "regular expression"},
		{"other log source", strings.Replace(rule("  sel:\n    eventName: x\n  condition: sel\n"), "product: aws", "product: windows", 1), "not AWS CloudTrail"},
		{"collection", rule("  sel:\n    eventName: x\n  condition: sel\n") + "---\ntitle: b\n", "multi-document"},
		{"correlation", "title: c\ncorrelation:\n  type: event_count\n", "correlation rules"},
		{"not yaml", ": : :\n\t", "not YAML"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse([]byte(c.text))
			if err == nil || !strings.Contains(err.Error(), c.reason) {
				t.Errorf("err = %v, want one saying %q", err, c.reason)
			}
		})
	}
}

// FuzzParse: no rule text panics the loader, and a rule that loads matches any event
// without panicking.
func FuzzParse(f *testing.F) {
	f.Add([]byte(rule("  sel:\n    eventName: CreateUser\n  condition: sel\n")))
	f.Add([]byte(rule("  sel:\n    - requestParameters|contains|all: ['\"a\"', '*b?']\n  f:\n    userIdentity.arn|re: '.+'\n  condition: sel and not 1 of f*\n")))
	f.Add([]byte(rule("  sel:\n    errorCode: null\n    requestParameters.x|base64offset|contains: abc\n  condition: all of them\n")))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := Parse(data)
		if err != nil {
			return
		}
		r.Matches(ev("CreateUser", map[string]any{"userName": "bob", "l": []any{1.0, map[string]any{"a": "b"}}}))
		NewSet("", []*Rule{r}, nil).Match(ev("X", nil), func(*Rule) {})
	})
}

func TestIndexFold(t *testing.T) {
	for _, c := range []struct {
		hay, needle string
		want        bool
	}{
		{"Boto3/1.34 TruffleHog", "trufflehog", true},
		{"boto3/1.34 TRUFFLEHOG/3", "TruffleHog", true},
		{"aws-cli/2.17", "trufflehog", false},
		{"xTruffleHo", "trufflehog", false},
		{"anything", "", true},
		{"ÄRGER und mehr", "ärger", true}, // non-ASCII: lower-cased whole
		{"K", "\u212a", true},             // the Kelvin sign folds to K
	} {
		if got := indexFold(c.hay, c.needle); got != c.want {
			t.Errorf("indexFold(%q, %q) = %v, want %v", c.hay, c.needle, got, c.want)
		}
	}
}
