package identity

import (
	"context"
	"maps"
	"slices"
	"testing"
	"time"
)

// TestAddConditionKeys checks the principal keys against "AWS global condition context keys".
func TestAddConditionKeys(t *testing.T) {
	ctx := context.Background()
	c := newClock(t0)
	s := newTestService(t, newFakeStore(), c)
	user, _ := s.CreateAccessKey(ctx, "alice")
	full := *fullClaims(t0)
	sess, tok, err := s.NewSession(full, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name      string
		id, token string
		want      map[string][]string
	}{
		{
			// Long-term keys: no aws:TokenIssueTime, no aws:MultiFactorAuthPresent.
			name: "user's long-term key", id: user.ID,
			want: map[string][]string{
				"aws:PrincipalAccount": {"123456789012"},
				"aws:PrincipalArn":     {"arn:aws:iam::123456789012:user/alice"},
				"aws:PrincipalType":    {"User"},
				"aws:username":         {"alice"},
			},
		},
		{
			// Role sessions: aws:PrincipalArn is the role ARN, not the assumed-role session ARN.
			name: "role session from a node", id: sess.AccessKeyID, token: tok,
			want: map[string][]string{
				"aws:PrincipalAccount":             {"123456789012"},
				"aws:PrincipalArn":                 {"arn:aws:iam::123456789012:role/service/app-writer"},
				"aws:PrincipalType":                {"AssumedRole"},
				"aws:TokenIssueTime":               {"2026-11-29T01:30:00Z"},
				"aws:MultiFactorAuthPresent":       {"true"},
				"aws:PrincipalTag/team":            {"payments"},
				"aws:PrincipalTag/env":             {"prod"},
				"aws:PrincipalTag/cost-center":     {"cc-4411"},
				"aws:SourceIdentity":               {"alice@example.com"},
				"aws:EC2InstanceSourceVPC":         {"vpc-0a1b2c3d4e5f60718"},
				"aws:EC2InstanceSourcePrivateIPv4": {"10.0.12.34"},
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := s.Resolve(ctx, tc.id, tc.token)
			if err != nil {
				t.Fatal(err)
			}
			got := map[string][]string{}
			r.AddConditionKeys(got)
			if !maps.EqualFunc(got, tc.want, slices.Equal) {
				t.Errorf("keys\n got %v\nwant %v", got, tc.want)
			}
		})
	}
}

func TestMFAAge(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, tc := range []struct {
		at   time.Time
		want string
	}{
		{now, "0"}, {now.Add(-90 * time.Second), "90"}, {now.Add(-1500 * time.Millisecond), "1"}, {now.Add(10 * time.Second), "0"},
	} {
		if got := MFAAge(now, tc.at); got != tc.want {
			t.Errorf("MFAAge(%v) = %s, want %s", now.Sub(tc.at), got, tc.want)
		}
	}
	if _, ok := (&Claims{MFA: false, MFAAt: now}).MFAAge(now); ok {
		t.Error("a session without MFA has an MFA age")
	}
	if _, ok := (&Claims{MFA: true}).MFAAge(now); ok {
		t.Error("an MFA session without an MFA time has an MFA age")
	}
	if got, ok := (&Claims{MFA: true, MFAAt: now.Add(-time.Minute)}).MFAAge(now); !ok || got != "60" {
		t.Errorf("MFA age = %s, %v", got, ok)
	}
}
