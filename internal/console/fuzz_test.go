package console

import (
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzParseFilter: any query string either is refused or yields a bounded filter whose
// own query parses back to it.
func FuzzParseFilter(f *testing.F) {
	for _, s := range []string{
		"",
		"principal=alice&api=a1b2c3d4e5&decision=denied&errorCode=AccessDenied&endpoint=vpce-0123456789abcdef0",
		"source=execute-api.amazonaws.com&from=2026-11-29T03:00&to=2026-11-29T04:00:00Z&limit=500",
		"eventId=00000000-0000-4000-8000-000000000001&limit=1",
		"decision=maybe", "from=2026-11-29T03:00:00.123456789%2B02:00", "principal=%C3%28", "limit=-1",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		q, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		flt, err := ParseFilter(q)
		if err != nil {
			return
		}
		for _, s := range []string{flt.Principal, flt.API, flt.Decision, flt.ErrorCode, flt.Endpoint, flt.Source, flt.EventID} {
			if len(s) > maxFilterField || !utf8.ValidString(s) {
				t.Fatalf("unbounded field %q", s)
			}
		}
		if flt.Limit < 1 || flt.Limit > maxDecisionLimit {
			t.Fatalf("limit %d", flt.Limit)
		}
		q2, err := url.ParseQuery(flt.Query())
		if err != nil {
			t.Fatal(err)
		}
		back, err := ParseFilter(q2)
		if err != nil {
			t.Fatalf("the filter's own query %q is refused: %v", flt.Query(), err)
		}
		if !back.From.Equal(flt.From) || !back.To.Equal(flt.To) {
			t.Fatalf("times do not round-trip: %+v -> %+v", flt, back)
		}
		back.From, back.To, flt.From, flt.To = flt.From, flt.To, back.From, back.To
		if back != flt {
			t.Fatalf("round trip: %+v -> %+v", flt, back)
		}
	})
}

// FuzzParseSimulation: any simulator form is refused or yields bounded, well-formed keys
// taken from what was typed (trimmed), and an accepted form written back in its own
// syntax parses to the same simulation and the same decision.
func FuzzParseSimulation(f *testing.F) {
	f.Add(aliceARN, "execute-api:Invoke", apiARN+"/prod/GET/orders", endpoint, "aws:SourceIp=10.0.1.5\n")
	f.Add(appARN, "sts:AssumeRole", "", "", "# c\naws:PrincipalTag/cost center = 42\r\naws:sourceip=1.2.3.4")
	f.Add("x", "s3:*", "*", "", "=\n=x\naws:k")
	f.Fuzz(func(t *testing.T, principal, action, resource, ep, ctx string) {
		sim, err := ParseSimulation(url.Values{"principal": {principal}, "action": {action}, "resource": {resource},
			"endpoint": {ep}, "context": {ctx}})
		if err != nil {
			return
		}
		if !actionRe.MatchString(sim.Action) || sim.Resource == "" || len(sim.Context) > maxContextLines {
			t.Fatalf("accepted %+v", sim)
		}
		for k, vs := range sim.Context {
			if !contextKeyRe.MatchString(k) || strings.ContainsAny(k, "=\n") {
				t.Fatalf("key %q", k)
			}
			for _, v := range vs {
				if len(v) > maxContextValue || strings.ContainsAny(v, "\r\n") {
					t.Fatalf("value %q", v)
				}
			}
		}
		if sim.Principal != strings.TrimSpace(principal) || sim.Action != strings.TrimSpace(action) || sim.Endpoint != strings.TrimSpace(ep) ||
			(sim.Resource != strings.TrimSpace(resource) && (sim.Resource != "*" || strings.TrimSpace(resource) != "")) {
			t.Fatalf("accepted %+v from principal %q action %q resource %q endpoint %q", sim, principal, action, resource, ep)
		}
		var text strings.Builder
		for k, vs := range sim.Context {
			for _, v := range vs {
				text.WriteString(k + "=" + v + "\n")
			}
		}
		again, err := ParseSimulation(url.Values{"principal": {sim.Principal}, "action": {sim.Action}, "resource": {sim.Resource},
			"endpoint": {sim.Endpoint}, "context": {text.String()}})
		if err != nil {
			t.Fatalf("the accepted form written back is refused: %v\n%s", err, text.String())
		}
		if again.Principal != sim.Principal || again.Action != sim.Action || again.Resource != sim.Resource || again.Endpoint != sim.Endpoint ||
			!maps.EqualFunc(again.Context, sim.Context, func(a, b []string) bool { return slices.Equal(a, b) }) {
			t.Fatalf("written back and parsed again: %+v, was %+v", again, sim)
		}
		// Evaluation of an accepted form never panics, whatever it names, and decides
		// the same simulation the same way.
		spec := loadSpec(t)
		r1, err1 := evaluate(spec, sim, t0)
		r2, err2 := evaluate(spec, again, t0)
		if (err1 == nil) != (err2 == nil) || r1.Effect != r2.Effect || !slices.Equal(r1.Matched, r2.Matched) {
			t.Fatalf("the same simulation decided twice: %+v %v; %+v %v", r1, err1, r2, err2)
		}
	})
}

// FuzzCallbackURL: the redirect URI built from a request's Host is https, on that host
// only, with the callback path: no path, query, fragment or credentials smuggled in.
func FuzzCallbackURL(f *testing.F) {
	for _, h := range []string{"127.0.0.1:8452", "console.example", "[::1]:443", "a@b", "x/y", "h?q", "h#f", ""} {
		f.Add(h)
	}
	f.Fuzz(func(t *testing.T, host string) {
		got, ok := callbackURL(&http.Request{Host: host})
		if !ok {
			return
		}
		u, err := url.Parse(got)
		if err != nil || u.Scheme != "https" || u.Host != host || u.Path != "/sso/callback" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
			t.Fatalf("callbackURL(%q) = %q", host, got)
		}
	})
}
