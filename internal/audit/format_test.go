package audit

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

func TestParseRecord(t *testing.T) {
	// The event may hold anything the record's own fields look like.
	event := []byte(`{"requestParameters":{"a":1,"seq":2,"prev":"` + zeroHash + `","hash":"x"},"eventName":"Invoke"}`)
	good, h := appendRecord(nil, "gateway", 42, zeroHash, event)
	good = bytes.TrimSuffix(good, []byte("\n"))
	r, err := ParseRecord("gateway", good)
	if err != nil || r.Seq != 42 || r.Prev != zeroHash || r.Hash != h || !bytes.Equal(r.Event, event) {
		t.Fatalf("ParseRecord = %+v, %v", r, err)
	}
	s := string(good)
	for _, tc := range []struct {
		name     string
		line     string
		modified bool // well-formed, but the hash does not match
	}{
		{"another chain's record", "", true},
		{"seq changed", strings.Replace(s, `"seq":42`, `"seq":43`, 1), true},
		{"prev changed", strings.Replace(s, `"prev":"0000`, `"prev":"1000`, 1), true},
		{"event changed", strings.Replace(s, `Invoke`, `invoke`, 1), true},
		{"hash changed", s[:len(s)-4] + "00\"}", true},
		{"leading zero in seq", strings.Replace(s, `"seq":42`, `"seq":042`, 1), false},
		{"seq zero", strings.Replace(s, `"seq":42`, `"seq":0`, 1), false},
		{"upper-case hash", s[:len(s)-66] + strings.ToUpper(s[len(s)-66:len(s)-2]) + `"}`, false},
		{"space after colon", strings.Replace(s, `{"event":{`, `{"event": {`, 1), false},
		{"extra field", strings.Replace(s, `{"event":`, `{"x":1,"event":`, 1), false},
		{"event not an object", strings.Replace(s, `{"event":{`, `{"event":[{`, 1), false},
		{"event not JSON", strings.Replace(s, `"eventName":"Invoke"}`, `"eventName":"Invoke"`, 1), false},
		{"truncated", s[:len(s)-1], false},
		{"empty", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			chain := "gateway"
			line := tc.line
			if tc.name == "another chain's record" {
				chain, line = "sts", s
			}
			_, err := ParseRecord(chain, []byte(line))
			if err == nil {
				t.Fatal("accepted")
			}
			if errors.Is(err, ErrModified) != tc.modified {
				t.Fatalf("err %v, want modified=%v", err, tc.modified)
			}
		})
	}
}
