package sts

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
)

func tagsClaim(tags map[string]any, transitive ...any) func(map[string]any) {
	return func(c map[string]any) {
		v := map[string]any{"principal_tags": tags}
		if transitive != nil {
			v["transitive_tag_keys"] = transitive
		}
		c[TagsClaim] = v
	}
}

// TestWebIdentitySessionTags: the token's https://aws.amazon.com/tags claim becomes the
// session's tags (aws:PrincipalTag/...), decided by the trust policy's sts:TagSession with
// aws:RequestTag keys, as AWS's web identity federation does.
func TestWebIdentitySessionTags(t *testing.T) {
	w := newWebEnv(t)
	sub := "repo:example/orders:ref:refs/heads/main"
	call := func(role string, edit func(map[string]any)) (int, []byte) {
		return w.unsigned(t, "RoleArn", w.roleARN(role), "RoleSessionName", "alice", "WebIdentityToken", w.token(t, sub, edit))
	}
	code, body := call("tagged", tagsClaim(map[string]any{"team": []any{"payments"}, "cost-center": []any{"cc-42"}}, "team"))
	if code != http.StatusOK {
		t.Fatalf("tags the trust policy admits: %d %s", code, body)
	}
	s := w.issuer.last()
	if len(s.Tags) != 2 || s.Tags[0] != (Tag{"cost-center", "cc-42"}) || s.Tags[1] != (Tag{"team", "payments"}) ||
		len(s.TransitiveTagKeys) != 1 || s.TransitiveTagKeys[0] != "team" {
		t.Errorf("session tags %v transitive %v", s.Tags, s.TransitiveTagKeys)
	}
	evs := w.audit.all()
	if pt, _ := evs[len(evs)-1].RequestParameters["principalTags"].(map[string]string); pt["team"] != "payments" {
		t.Errorf("audit requestParameters %v", evs[len(evs)-1].RequestParameters)
	}

	for _, tc := range []struct {
		name, role string
		edit       func(map[string]any)
		status     int
		code, msg  string
	}{
		{"a tag value the trust policy does not admit", "tagged", tagsClaim(map[string]any{"team": []any{"other"}}), 403, "AccessDenied", "sts:TagSession"},
		{"tags on a role whose trust policy has no sts:TagSession", "ci", tagsClaim(map[string]any{"team": []any{"payments"}}), 403, "AccessDenied", "sts:TagSession"},
		{"a value that is not a list", "tagged", tagsClaim(map[string]any{"team": "payments"}), 400, "InvalidParameterValue", "malformed"},
		{"two values", "tagged", tagsClaim(map[string]any{"team": []any{"payments", "ops"}}), 400, "InvalidParameterValue", "malformed"},
		{"the reserved prefix", "tagged", tagsClaim(map[string]any{"aws:team": []any{"payments"}}), 400, "InvalidParameterValue", "reserved"},
		{"keys equal but for case", "tagged", tagsClaim(map[string]any{"team": []any{"payments"}, "Team": []any{"payments"}}), 400, "InvalidParameterValue", "Duplicate"},
		{"a transitive key that is not a tag", "tagged", tagsClaim(map[string]any{"team": []any{"payments"}}, "env"), 400, "InvalidParameterValue", "malformed"},
		{"a claim that is not an object", "tagged", func(c map[string]any) { c[TagsClaim] = "team=payments" }, 400, "InvalidParameterValue", "malformed"},
		{"an unknown member", "tagged", func(c map[string]any) {
			c[TagsClaim] = map[string]any{"principal_tags": map[string]any{}, "session_tags": map[string]any{}}
		}, 400, "InvalidParameterValue", "malformed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, body := call(tc.role, tc.edit)
			if code != tc.status {
				t.Fatalf("status %d, want %d: %s", code, tc.status, body)
			}
			if e := parseError(t, body); e.Code != tc.code || !strings.Contains(e.Message, tc.msg) {
				t.Fatalf("error %s %q, want %s with %q", e.Code, e.Message, tc.code, tc.msg)
			}
		})
	}
}

// FuzzTokenTags: whatever a provider puts in the tags claim, accepted tags are valid
// session tags (unique keys case-insensitively, no aws: prefix, STS's characters and
// lengths) and every transitive key is one of them.
func FuzzTokenTags(f *testing.F) {
	f.Add(`{"principal_tags":{"team":["payments"],"cc":["42"]},"transitive_tag_keys":["team"]}`)
	f.Add(`{"principal_tags":{"team":"payments"}}`)
	f.Add(`{"principal_tags":{"aws:x":["y"]}}`)
	f.Add(`{"principal_tags":{"A":["1"],"a":["2"]}}`)
	f.Fuzz(func(t *testing.T, claim string) {
		var v any
		if err := json.Unmarshal([]byte(claim), &v); err != nil {
			return
		}
		tags, transitive, e := tokenTags(map[string]any{TagsClaim: v})
		if e != nil {
			return
		}
		seen := map[string]bool{}
		for _, tg := range tags {
			if err := checkTag(tg.Key, true, tg.Value, true, seen); err != nil {
				t.Fatalf("accepted tag %q=%q: %v", tg.Key, tg.Value, err)
			}
		}
		for _, k := range transitive {
			if !seen[strings.ToLower(k)] {
				t.Fatalf("transitive key %q is not a tag", k)
			}
		}
	})
}
