package policy

import (
	"regexp"
	"strings"
	"testing"
	"unicode/utf8"
)

// TestGlob follows the wildcard rules of "IAM JSON policy elements: Resource" and the
// StringLike row of "IAM JSON policy elements: Condition operators": '*' matches any
// run of characters (including none), '?' exactly one character.
func TestGlob(t *testing.T) {
	cases := []struct {
		pat, s string
		want   bool
	}{
		{"*", "", true},
		{"*", "anything", true},
		{"abc", "abc", true},
		{"abc", "abcd", false},
		{"a*", "a", true},
		{"a*", "ba", false},
		{"*c", "abc", true},
		{"*c", "abcd", false},
		{"a*c", "ac", true},
		{"a*c", "abbbc", true},
		{"a*c", "abbbcd", false},
		{"a?c", "abc", true},
		{"a?c", "ac", false},
		{"a?c", "aéc", true}, // ? is one character, not one byte
		{"*a*b*c*", "xxaxxbxxcxx", true},
		{"*a*b*c*", "xxaxxcxxbxx", false},
		{"a*b?c*d", "aXbYcZd", true},
		{"a*aab", "aaaaab", true},   // backtracking past a partial literal match
		{"*ab*ab", "abxabab", true}, // the last star must backtrack, not the first
		{"**", "x", true},
		{"?*", "", false},
		{"home/*/docs", "home/a/b/docs", true}, // '*' crosses '/' (IAM has no path semantics)
	}
	for _, tc := range cases {
		p, verr := compilePattern(tc.pat, true, false, false)
		if verr != "" {
			t.Fatalf("compile %q: %s", tc.pat, verr)
		}
		if got := p.match(tc.s, &evalState{}, foldNone); got != tc.want {
			t.Errorf("%q ~ %q = %v, want %v", tc.pat, tc.s, got, tc.want)
		}
	}
}

func TestActionMatching(t *testing.T) {
	cases := []struct {
		action, req string
		want        bool
	}{
		{"s3:GetObject", "s3:getobject", true}, // "IAM JSON policy elements: Action": not case-sensitive
		{"S3:Get*", "s3:GetObjectAcl", true},
		{"s3:Get*", "s3:PutObject", false},
		{"s3:*", "s3:GetObject", true},
		{"s3:*", "s3x:GetObject", false},
		{"*", "iam:CreateUser", true},
		{"ec2:*Instances", "ec2:RunInstances", true},
		{"ec2:?unInstances", "ec2:RunInstances", true},
		{"s3*:Get", "s3-outposts:Get", true},
		{"s3:GetObjectK", "s3:GetObject\u212a", false}, // the Kelvin sign is not 'k' in an action name
	}
	for _, tc := range cases {
		a, msg := compileAction(tc.action)
		if msg != "" {
			t.Fatalf("compileAction(%q): %s", tc.action, msg)
		}
		if got := a.pat.match(tc.req, &evalState{}, foldASCII); got != tc.want {
			t.Errorf("action %q vs %q = %v, want %v", tc.action, tc.req, got, tc.want)
		}
	}
}

// TestARNMatching: resources match part by part as ArnLike does, so a '*' never spans a
// ':' in partition, service, region or account, while the resource part keeps its own
// colons; "*" alone matches anything ("IAM JSON policy elements: Resource").
func TestARNMatching(t *testing.T) {
	cases := []struct {
		pat, arn string
		want     bool
	}{
		{"*", "arn:aws:s3:::b", true},
		{"*", "not-an-arn", true},
		{"arn:aws:s3:::b/*", "arn:aws:s3:::b/k", true},
		{"arn:aws:s3:::b/*", "arn:aws:s3:::c/k", false},
		{"arn:aws:s3:::b*", "arn:aws:s3:::bucket/any/key", true},
		{"arn:aws:iam::*:role/x", "arn:aws:iam::111122223333:role/x", true},
		{"arn:aws:iam::*:role/x", "arn:aws:iam::1:2:role/x", false},
		{"arn:aws:*:*:*:*", "arn:aws:logs:us-east-1:1:log-group:a:*", true},
		{"arn:aws:logs:*:*:log-group:a:*", "arn:aws:logs:us-east-1:1:log-group:a:log-stream:s", true},
		{"arn:aws:logs:*:*:log-group:a:*", "arn:aws:logs:us-east-1:1:log-group:b:log-stream:s", false},
		{"arn:*:s3:::b", "arn:aws-cn:s3:::b", true},
		{"arn:aws:s3:::b", "arn:aws:s3:::B", false}, // case-sensitive
		{"arn:aws:s3:::b", "arn:aws:s3::b", false},  // request with five parts is not an ARN
		{"arn:aws:ec2:us-east-?:*:instance/*", "arn:aws:ec2:us-east-1:1:instance/i-1", true},
		{"arn:aws:ec2:us-east-?:*:instance/*", "arn:aws:ec2:us-east-10:1:instance/i-1", false},
	}
	for _, tc := range cases {
		ap, ok, verr := compileARN(tc.pat, false)
		if !ok || verr != "" {
			t.Fatalf("compileARN(%q) failed: %s", tc.pat, verr)
		}
		if got := ap.match(tc.arn, &evalState{}); got != tc.want {
			t.Errorf("%q vs %q = %v, want %v", tc.pat, tc.arn, got, tc.want)
		}
	}
}

// TestVariableTokenizing: ':' inside ${...} does not split ARN parts, and a variable
// may sit in any part.
func TestVariableTokenizing(t *testing.T) {
	st := &evalState{ctx: ctx("aws:username", "alice", "aws:PrincipalAccount", "111122223333")}
	ap, ok, verr := compileARN("arn:aws:iam::${aws:PrincipalAccount}:user/${aws:username, 'x:y'}", true)
	if !ok || verr != "" {
		t.Fatalf("compile: ok=%v %s", ok, verr)
	}
	if !ap.match("arn:aws:iam::111122223333:user/alice", st) {
		t.Error("variables in account and resource parts did not resolve")
	}
	if ap.match("arn:aws:iam::444455556666:user/alice", st) {
		t.Error("matched another account")
	}
	st2 := &evalState{ctx: ctx("aws:PrincipalAccount", "111122223333")}
	if !ap.match("arn:aws:iam::111122223333:user/x:y", st2) {
		t.Error("default value with ':' did not apply")
	}
}

// FuzzGlob holds the glob matcher to a regular expression of the same pattern ('*' any
// run of characters, '?' one character, the rest literal), anchored at both ends.
func FuzzGlob(f *testing.F) {
	for _, s := range [][2]string{{"a*aab", "aaaaab"}, {"*ab*ab", "abxabab"}, {"*a*b*c*", "xxaxxcxxbxx"}, {"a?c", "aéc"},
		{"arn:aws:execute-api:*:*/prod/GET/orders*", "arn:aws:execute-api:us-east-1:1/prod/GET/orders/42"}, {"*é*", "x\xffé"}, {"*?x", "ééx"}} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, pat, s string) {
		if strings.Contains(pat, "$") || !utf8.ValidString(pat) {
			return // policy variables and invalid patterns are compilePattern's to refuse
		}
		p, verr := compilePattern(pat, true, false, false)
		if verr != "" {
			return
		}
		var re strings.Builder
		re.WriteString(`(?s)\A`)
		for _, r := range pat {
			switch r {
			case '*':
				re.WriteString(".*")
			case '?':
				re.WriteString(".")
			default:
				re.WriteString(regexp.QuoteMeta(string(r)))
			}
		}
		re.WriteString(`\z`)
		want := regexp.MustCompile(re.String()).MatchString(s)
		if got := p.match(s, &evalState{}, foldNone); got != want {
			t.Fatalf("%q ~ %q = %v, the regular expression says %v", pat, s, got, want)
		}
	})
}
