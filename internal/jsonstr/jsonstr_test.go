package jsonstr

import (
	"encoding/json"
	"testing"
)

func check(t *testing.T, s string) {
	t.Helper()
	want, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	if got := Append([]byte("x"), s); string(got) != "x"+string(want) {
		t.Fatalf("Append(%q) = %s, want %s", s, got[1:], want)
	}
}

func TestAppend(t *testing.T) {
	for _, s := range []string{
		"", "plain", `quote " backslash \ slash /`, "<script>&amp;</script>", "ctl \x00\x01\b\f\n\r\t\x1f\x7f",
		"unicode é ✓ \U0001F600", "line sep \u2028 para \u2029", "bad utf-8 \xff\xfe \xc3", "\xed\xa0\x80 surrogate",
	} {
		check(t, s)
	}
}

// TestAppendEveryByteEveryLane puts each byte value at each position of strings that
// Append reads eight bytes at a time, so that no lane of the word check misses a byte.
func TestAppendEveryByteEveryLane(t *testing.T) {
	for c := range 256 {
		for at := range 17 {
			s := []byte("abcdefghijklmnopq")
			s[at] = byte(c)
			check(t, string(s))
		}
	}
}

func FuzzAppend(f *testing.F) {
	f.Add("arn:aws:sts::123456789012:assumed-role/r/s")
	f.Add("<\u2028\xff\"\\")
	f.Fuzz(check)
}

// BenchmarkAppend is a typical assertion member: an ARN, nothing to escape.
func BenchmarkAppend(b *testing.B) {
	s := "arn:aws:sts::123456789012:assumed-role/service-a/i-0abc123def456"
	buf := make([]byte, 0, 256)
	b.SetBytes(int64(len(s)))
	for b.Loop() {
		buf = Append(buf[:0], s)
	}
}
