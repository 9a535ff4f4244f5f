package arn

import (
	"strings"
	"testing"
)

func TestValidAccount(t *testing.T) {
	for _, tc := range []struct {
		name string
		s    string
		want bool
	}{
		{"twelve digits", "123456789012", true},
		{"leading zeros are digits", "000000000001", true},
		{"eleven digits", "12345678901", false},
		{"thirteen digits", "1234567890123", false},
		{"a letter", "12345678901a", false},
		{"a sign", "-12345678901", false},
		{"full-width digit is not ASCII", "12345678901１", false},
		{"empty", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := ValidAccount(tc.s); got != tc.want {
				t.Errorf("ValidAccount(%q) = %v, want %v", tc.s, got, tc.want)
			}
		})
	}
}

func TestAccount(t *testing.T) {
	for _, tc := range []struct{ s, want string }{
		{"arn:aws:iam::123456789012:role/app", "123456789012"},
		{"arn:aws:sts::123456789012:assumed-role/app/s1", "123456789012"},
		{"arn:aws:s3:::bucket", ""}, // S3 bucket ARNs name no account
		{"arn:aws:iam::123456789012", ""},
		{"", ""},
	} {
		if got := Account(tc.s); got != tc.want {
			t.Errorf("Account(%q) = %q, want %q", tc.s, got, tc.want)
		}
	}
}

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		name string
		s    string
		want Principal
		ok   bool
	}{
		{"assumed-role session", "arn:aws:sts::123456789012:assumed-role/app/s1", Principal{"123456789012", "assumed-role", "app"}, true},
		{"role", "arn:aws:iam::123456789012:role/app", Principal{"123456789012", "role", "app"}, true},
		// Role and user names are unique in an account whatever their path ("IAM
		// identifiers": friendly names and paths), so the name is the last segment.
		{"role with a path", "arn:aws:iam::123456789012:role/service/team/app", Principal{"123456789012", "role", "app"}, true},
		{"user with a path", "arn:aws:iam::123456789012:user/dev/bob", Principal{"123456789012", "user", "bob"}, true},
		{"root", "arn:aws:iam::123456789012:root", Principal{"123456789012", "root", ""}, true},
		{"other partition", "arn:aws-us-gov:iam::123456789012:user/bob", Principal{"123456789012", "user", "bob"}, true},
		{"session without its name", "arn:aws:sts::123456789012:assumed-role/app", Principal{}, false},
		{"session name with a slash", "arn:aws:sts::123456789012:assumed-role/app/s1/x", Principal{}, false},
		{"assumed-role in iam", "arn:aws:iam::123456789012:assumed-role/app/s1", Principal{}, false},
		{"role in sts", "arn:aws:sts::123456789012:role/app", Principal{}, false},
		{"role without a name", "arn:aws:iam::123456789012:role/", Principal{}, false},
		{"a region", "arn:aws:iam:us-east-1:123456789012:role/app", Principal{}, false},
		{"no account", "arn:aws:iam:::role/app", Principal{}, false},
		{"another service", "arn:aws:s3:::bucket", Principal{}, false},
		{"group", "arn:aws:iam::123456789012:group/ops", Principal{}, false},
		{"not an ARN", "no-slash", Principal{}, false},
		{"empty", "", Principal{}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := Parse(tc.s)
			if got != tc.want || ok != tc.ok {
				t.Errorf("Parse(%q) = %+v, %v; want %+v, %v", tc.s, got, ok, tc.want, tc.ok)
			}
		})
	}
}

func TestParseDoesNotAllocate(t *testing.T) {
	s := "arn:aws:sts::123456789012:assumed-role/app/s1"
	if n := testing.AllocsPerRun(100, func() { Parse(s) }); n != 0 {
		t.Errorf("Parse allocates %v times, want 0 (the gateway parses a principal per call)", n)
	}
}

func TestRoleName(t *testing.T) {
	for _, tc := range []struct{ s, want string }{
		{"arn:aws:iam::123456789012:role/app", "app"},
		{"arn:aws:iam::123456789012:role/service/team/app", "app"},
		// A user's ARN (GetSessionToken sessions carry it) names no role, so revoking a
		// role never touches a user who shares its name.
		{"arn:aws:iam::123456789012:user/app", ""},
		{"arn:aws:sts::123456789012:assumed-role/app/s1", ""},
		{"no-slash", ""},
	} {
		if got := RoleName(tc.s); got != tc.want {
			t.Errorf("RoleName(%q) = %q, want %q", tc.s, got, tc.want)
		}
	}
}

func TestAssumedRole(t *testing.T) {
	got := AssumedRole("123456789012", "app", "s1")
	if want := "arn:aws:sts::123456789012:assumed-role/app/s1"; got != want {
		t.Fatalf("AssumedRole = %q, want %q", got, want)
	}
	if p, ok := Parse(got); !ok || p != (Principal{"123456789012", "assumed-role", "app"}) {
		t.Errorf("Parse(AssumedRole(...)) = %+v, %v", p, ok)
	}
}

// The ids appear in audit events and in aws:userid conditions, so they must not change
// between versions: the values are fixed here.
func TestUniqueIDs(t *testing.T) {
	if got, want := UserID("arn:aws:iam::123456789012:user/alice"), "AIDAW7LR2OB3SVL2TOWUY"; got != want {
		t.Errorf("UserID = %q, want %q", got, want)
	}
	if got, want := RoleID("arn:aws:iam::123456789012:role/app"), "AROALS77IFHHSFRSZ7CZ2"; got != want {
		t.Errorf("RoleID = %q, want %q", got, want)
	}
	if UserID("arn:aws:iam::123456789012:user/a") == UserID("arn:aws:iam::123456789012:user/b") {
		t.Error("two users share a unique id")
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"arn:aws:sts::123456789012:assumed-role/app/s1", "arn:aws:iam::123456789012:role/a/b/app",
		"arn:aws:iam::123456789012:user/bob", "arn:aws:iam::123456789012:root", "arn:aws:s3:::bucket", "",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, ok := Parse(s)
		if !ok {
			if p != (Principal{}) {
				t.Fatalf("Parse(%q) refused but returned %+v", s, p)
			}
			return
		}
		// What Parse returns is a part of its input, and an account field of it.
		if p.Account == "" || Account(s) != p.Account || !strings.Contains(s, p.Name) {
			t.Fatalf("Parse(%q) = %+v", s, p)
		}
		if p.Kind == "role" && RoleName(s) != p.Name {
			t.Fatalf("RoleName(%q) = %q, Parse says %q", s, RoleName(s), p.Name)
		}
		if p.Kind == "assumed-role" && strings.ContainsRune(p.Name, '/') {
			t.Fatalf("Parse(%q): role %q has a slash", s, p.Name)
		}
	})
}
