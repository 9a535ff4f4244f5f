package audit

import (
	"crypto/tls"
	"encoding/json"
	"testing"
	"time"
)

// checkEventJSON: appendEvent writes what json.Marshal writes of ev, or gives up.
func checkEventJSON(t *testing.T, ev *Event, wantOK bool) {
	t.Helper()
	want, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	var w eventWriter
	got, ok := appendEvent(&w, []byte("x"), ev)
	if ok != wantOK {
		t.Fatalf("ok %v, want %v for %+v", ok, wantOK, ev)
	}
	if ok && string(got[1:]) != string(want) {
		t.Fatalf("appendEvent:\n%s\njson.Marshal:\n%s", got[1:], want)
	}
	if len(w.anys) != 0 || len(w.strs) != 0 {
		t.Fatalf("members left on the stacks: %q %q", w.anys, w.strs)
	}
}

// TestEventJSON: the events the gateway, STS and the endpoint write, every optional member
// present and absent, nested maps and lists, nil and empty maps: byte for byte what
// encoding/json writes (the record hash and every reader depend on the bytes). Values it
// does not spell make it give up, never write something else.
func TestEventJSON(t *testing.T) {
	full := gatewayEvent(7)
	full.ErrorCode, full.ErrorMessage, full.EventID = "AccessDenied", `User: <x> & "y"`, "e1"
	full.UserIdentity.UserName, full.UserIdentity.IdentityProvider = "alice", "idp"
	full.UserIdentity.SessionContext.SourceIdentity, full.UserIdentity.SessionContext.EC2RoleDelivery = "si", "2.0"
	full.AdditionalEventData = map[string]any{
		"decision": "Allow", "signatureVerified": false, "n": 3, "n64": int64(-4), "u": uint64(5), "nil": nil,
		"sessionBinding": map[string]any{"node": "n1", "vpc": "vpc-1", "nested": map[string]any{"z": 1, "a": []any{"x", 2, true, nil}}},
		"list":           []string{"b", "a"}, "nilList": []string(nil), "attrs": map[string]string{"k": "v", "a": "\u2028"},
		"\xffodd key <&>": "\xfe value",
	}
	minimal := &Event{EventTime: time.Unix(0, 0).UTC()}
	noIssuer := gatewayEvent(1)
	noIssuer.UserIdentity.SessionContext = &SessionContext{Attributes: map[string]string{"mfaAuthenticated": "true"}}
	nilAttrs := gatewayEvent(2)
	nilAttrs.UserIdentity.SessionContext.Attributes = nil
	empty := gatewayEvent(3)
	empty.AdditionalEventData, empty.RequestParameters, empty.ResponseElements = map[string]any{}, map[string]any{}, nil
	for name, ev := range map[string]*Event{"gateway": gatewayEvent(1), "every member": full, "minimal": minimal, "no session issuer": noIssuer,
		"nil attributes": nilAttrs, "empty maps": empty} {
		t.Run(name, func(t *testing.T) { checkEventJSON(t, ev, true) })
	}
	for name, v := range map[string]any{"float": 1.5, "struct": struct{ A int }{1}, "int8": int8(1), "named map": Event{}, "raw": json.RawMessage(`{}`)} {
		t.Run("gives up on "+name, func(t *testing.T) {
			ev := gatewayEvent(1)
			ev.AdditionalEventData = map[string]any{"a": map[string]any{"b": []any{v}}}
			checkEventJSON(t, ev, false)
		})
	}
	t.Run("gives up on a time not in UTC", func(t *testing.T) {
		ev := gatewayEvent(1)
		ev.EventTime = ev.EventTime.In(time.FixedZone("x", 3600))
		checkEventJSON(t, ev, false)
	})
}

func FuzzEventJSON(f *testing.F) {
	f.Add("arn:aws:iam::123456789012:user/alice", "/orders/1", "reason <&> \u2028", "k", int64(1764385200), 200, true)
	f.Add("", "\xff", "\x00", "", int64(0), -1, false)
	f.Fuzz(func(t *testing.T, arn, path, reason, key string, unix int64, status int, b bool) {
		ev := gatewayEvent(1)
		ev.UserIdentity.ARN, ev.UserAgent, ev.ErrorMessage = arn, reason, reason
		ev.RequestParameters["path"] = path
		ev.RequestParameters[key] = reason
		ev.ResponseElements = map[string]any{"status": status}
		ev.AdditionalEventData = map[string]any{key: b, "reason": reason, "m": map[string]any{path: status, key: []string{arn}}}
		ev.EventTime = time.Unix(unix%(253402300800), int64(status)&0x3fffffff).UTC()
		checkEventJSON(t, ev, ev.EventTime.Year() >= 0)
	})
}

// TestCipherSuiteName: every suite, and ids Go does not know, are named as
// tls.CipherSuiteName names them, and the suites Go negotiates cost no allocation.
func TestCipherSuiteName(t *testing.T) {
	for _, s := range append(tls.CipherSuites(), tls.InsecureCipherSuites()...) {
		if got, want := CipherSuiteName(s.ID), tls.CipherSuiteName(s.ID); got != want {
			t.Errorf("CipherSuiteName(%#04x) = %q, want %q", s.ID, got, want)
		}
	}
	for _, id := range []uint16{0, 0x00ff, 0xfafa} {
		if got, want := CipherSuiteName(id), tls.CipherSuiteName(id); got != want {
			t.Errorf("CipherSuiteName(%#04x) = %q, want %q", id, got, want)
		}
	}
	if n := testing.AllocsPerRun(100, func() { _ = CipherSuiteName(tls.TLS_AES_128_GCM_SHA256) }); n != 0 {
		t.Errorf("CipherSuiteName allocates %v times", n)
	}
}
