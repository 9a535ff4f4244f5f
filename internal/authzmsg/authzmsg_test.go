package authzmsg

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func testSealer(t testing.TB, seed byte) *Sealer {
	t.Helper()
	s, err := NewSealer(bytes.Repeat([]byte{seed}, KeySize), nil)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func sample() *Message {
	return &Message{
		Allowed:      false,
		ExplicitDeny: true,
		MatchedStatements: Statements{Items: []Statement{
			{StatementID: "DenyDelete", Effect: "DENY", Policy: "arn:aws:iam::123456789012:policy/guard"},
		}},
		Failures: Failures{Items: []string{}},
		Context: Context{
			Principal: Principal{ID: "AIDAEXAMPLE", Name: "alice", ARN: "arn:aws:iam::123456789012:user/alice"},
			Action:    "execute-api:Invoke",
			Resource:  "arn:aws:execute-api:us-east-1:123456789012:a1b2c3d4e5/prod/DELETE/items",
			Conditions: Conditions{Items: []Condition{
				{Key: "aws:SourceIp", Values: Values{Items: []Value{{Value: "10.0.0.7"}}}},
			}},
		},
	}
}

func TestSealOpen(t *testing.T) {
	s := testSealer(t, 1)
	enc, err := s.Seal(sample())
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(enc, "alice") || strings.ContainsAny(enc, "+/=") {
		t.Fatalf("encoded message is not opaque base64url: %q", enc)
	}
	raw, m, err := s.Open(enc)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := json.Marshal(sample())
	if !bytes.Equal(raw, want) {
		t.Fatalf("decoded JSON\n%s\nwant\n%s", raw, want)
	}
	if !m.ExplicitDeny || m.Context.Principal.ARN != "arn:aws:iam::123456789012:user/alice" || m.MatchedStatements.Items[0].StatementID != "DenyDelete" {
		t.Fatalf("decoded message = %+v", m)
	}
	// AWS's DecodedMessage keys, with lists as {"items": [...]}.
	for _, k := range []string{`"allowed":false`, `"explicitDeny":true`, `"matchedStatements":{"items":[`, `"failures":{"items":[]}`, `"context":{"principal":{`, `"conditions":{"items":[{"key":"aws:SourceIp","values":{"items":[{"value":"10.0.0.7"}]}}]}`} {
		if !bytes.Contains(raw, []byte(k)) {
			t.Errorf("decoded JSON lacks %s: %s", k, raw)
		}
	}
	enc2, _ := s.Seal(sample())
	if enc2 == enc {
		t.Fatal("two seals of one message are identical: the nonce is not random")
	}
}

func TestOpenRefuses(t *testing.T) {
	s := testSealer(t, 1)
	enc, err := s.Seal(sample())
	if err != nil {
		t.Fatal(err)
	}
	b, _ := base64.RawURLEncoding.DecodeString(enc)
	reenc := func(f func([]byte) []byte) string {
		c := f(append([]byte(nil), b...))
		return base64.RawURLEncoding.EncodeToString(c)
	}
	other, _ := testSealer(t, 2).Seal(sample())
	tests := []struct {
		name, enc string
	}{
		{"empty", ""},
		{"not base64", "not a message!"},
		{"padded base64", enc + "=="},
		{"truncated", enc[:len(enc)-3]},
		{"header only", reenc(func(c []byte) []byte { return c[:13] })},
		{"unknown version", reenc(func(c []byte) []byte { c[0] = 2; return c })},
		{"nonce flipped", reenc(func(c []byte) []byte { c[5] ^= 1; return c })},
		{"ciphertext flipped", reenc(func(c []byte) []byte { c[20] ^= 0x80; return c })},
		{"tag flipped", reenc(func(c []byte) []byte { c[len(c)-1] ^= 1; return c })},
		{"appended byte", reenc(func(c []byte) []byte { return append(c, 0) })},
		{"sealed under another key", other},
		{"over AWS's 10240 limit", strings.Repeat("A", MaxEncodedLen+1)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, _, err := s.Open(tt.enc); !errors.Is(err, ErrInvalid) {
				t.Fatalf("Open = %v, want ErrInvalid", err)
			}
		})
	}
}

func TestSealRefusesOversize(t *testing.T) {
	m := sample()
	m.Context.Resource = strings.Repeat("r", MaxEncodedLen)
	if _, err := testSealer(t, 1).Seal(m); err == nil {
		t.Fatal("Seal produced a message over MaxEncodedLen")
	}
}

func TestKeys(t *testing.T) {
	if _, err := NewSealer(make([]byte, 16), nil); err == nil {
		t.Error("NewSealer accepted a 16-byte key")
	}
}

func FuzzOpen(f *testing.F) {
	s := testSealer(f, 1)
	enc, _ := s.Seal(sample())
	f.Add(enc)
	f.Add("")
	f.Add("AQ")
	f.Fuzz(func(t *testing.T, in string) {
		raw, m, err := s.Open(in)
		if err != nil {
			if !errors.Is(err, ErrInvalid) || raw != nil || m != nil {
				t.Fatalf("Open(%q) = %v, %v, %v", in, raw, m, err)
			}
			return
		}
		// Only sample() is ever sealed under this key (in this process or, for the seed,
		// the one that generated the corpus): anything else accepted is a forgery.
		if want, _ := json.Marshal(sample()); !bytes.Equal(raw, want) {
			t.Fatalf("Open accepted %q as %s", in, raw)
		}
	})
}
