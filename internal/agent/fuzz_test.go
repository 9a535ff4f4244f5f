package agent

import (
	"bytes"
	"strconv"
	"strings"
	"testing"
	"time"
)

// FuzzIMDSToken: any X-aws-ec2-metadata-token value is checked without panicking, and
// only tokens this agent made validate.
func FuzzIMDSToken(f *testing.F) {
	now := time.Unix(1_800_000_000, 0)
	a := &Agent{now: func() time.Time { return now }, rand: strings.NewReader(strings.Repeat("n", 1<<10)), imdsKey: []byte("0123456789abcdef0123456789abcdef")}
	good, err := a.newIMDSToken(time.Hour)
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range []string{good, "", "AQAEAB", good[:len(good)-1], good + "A", strings.ToUpper(good), strings.Repeat("A", len(good))} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, tok string) {
		if a.validIMDSToken(tok) && tok != good {
			t.Fatalf("accepted a token the agent did not make: %q", tok)
		}
	})
}

// FuzzParseTTL: X-aws-ec2-metadata-token-ttl-seconds is accepted exactly when it is the
// decimal spelling (at most 10 digits, leading zeros allowed) of 1..21600, without sign or
// spaces.
func FuzzParseTTL(f *testing.F) {
	for _, s := range []string{"1", "21600", "21601", "0", "-1", "+5", " 5", "05", "1e3", "999999999999", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, ok := parseTTL(s)
		n, err := strconv.Atoi(s)
		want := err == nil && n >= 1 && n <= maxTokenTTL && !strings.ContainsAny(s, "+- _") && len(s) <= 10
		if ok != want {
			t.Fatalf("parseTTL(%q) = %v, want %v", s, ok, want)
		}
		if ok && d != time.Duration(n)*time.Second {
			t.Fatalf("parseTTL(%q) = %s", s, d)
		}
	})
}

// FuzzReadWatch: whatever STS's watch stream holds, readWatch returns one of the events
// that end a stream, or an error, never both or neither, and never reads a line longer
// than its bound into an event.
func FuzzReadWatch(f *testing.F) {
	for _, s := range []string{
		"{\"event\":\"heartbeat\"}\n{\"event\":\"refresh\",\"reason\":\"SessionRevoked\"}\n",
		"{\"event\":\"revoked\"}\n", "{\"event\":\"reconnect\"}", "", "\n", "not json\n",
		"{\"event\":\"heartbeat\"}\n{\"event\":\"unknown\"}\n", strings.Repeat("x", 5000) + "\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		lines := 0
		ev, err := readWatch(bytes.NewReader(in), func() { lines++ })
		switch ev.Event {
		case "refresh", "revoked", "reconnect":
			if err != nil {
				t.Fatalf("event %q with error %v", ev.Event, err)
			}
		case "":
			if err == nil {
				t.Fatal("neither an event nor an error")
			}
		default:
			t.Fatalf("returned the non-final event %q", ev.Event)
		}
		if lines > bytes.Count(in, []byte("\n"))+1 {
			t.Fatalf("%d lines from %d newlines", lines, bytes.Count(in, []byte("\n")))
		}
	})
}
