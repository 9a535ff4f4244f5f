// Package authzmsg defines Phantom's encoded authorization messages: the opaque string a
// denied call carries back to its caller ("Encoded authorization failure message: …"),
// which only the perimeter can read and which STS DecodeAuthorizationMessage turns back
// into the JSON explanation of the decision (AWS STS API Reference,
// DecodeAuthorizationMessage). The explanation can reveal policy details, so it is sealed
// (AES-256-GCM) rather than merely encoded, and decoding it is an authorized action.
//
// It owns the message's JSON shape and its sealed wire format. It does not decide
// anything (internal/policy does), serve the STS action (internal/sts) or store keys:
// the key is derived from the perimeter's master key (keys.AuthzMessages, held by gateways
// and STS), so every replica decodes every other's messages.
package authzmsg

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// Message is the decoded explanation, in the shape AWS's DecodedMessage has (lists wrapped
// in {"items": [...]} as AWS prints them).
type Message struct {
	Allowed           bool       `json:"allowed"`
	ExplicitDeny      bool       `json:"explicitDeny"`
	MatchedStatements Statements `json:"matchedStatements"`
	Failures          Failures   `json:"failures"`
	Context           Context    `json:"context"`
}

// Statements are the policy statements that decided the request.
type Statements struct {
	Items []Statement `json:"items"`
}

// Statement names one matched statement: the policy it is in and its Sid (or index).
type Statement struct {
	StatementID string `json:"statementId"`
	Effect      string `json:"effect"` // "ALLOW" or "DENY", as AWS spells it here
	Policy      string `json:"policy,omitempty"`
}

// Failures are reasons no statement could decide (a policy that did not load, …).
type Failures struct {
	Items []string `json:"items"`
}

// Context is the request the decision was about.
type Context struct {
	Principal  Principal  `json:"principal"`
	Action     string     `json:"action"`
	Resource   string     `json:"resource"`
	Conditions Conditions `json:"conditions"`
}

// Principal is the caller.
type Principal struct {
	ID   string `json:"id,omitempty"`
	Name string `json:"name,omitempty"`
	ARN  string `json:"arn"`
}

// Conditions are the request's condition keys and values.
type Conditions struct {
	Items []Condition `json:"items"`
}

// Condition is one condition key.
type Condition struct {
	Key    string `json:"key"`
	Values Values `json:"values"`
}

// Values wraps a key's values.
type Values struct {
	Items []Value `json:"items"`
}

// Value is one value.
type Value struct {
	Value string `json:"value"`
}

// KeySize is the sealing key's size (AES-256).
const KeySize = 32

// version is the wire format's first byte: version || nonce (12) || AES-GCM(JSON), the
// whole base64url-encoded without padding, sealed with aad as additional data.
const version = 1

const aad = "phantom authorization message v1"

// MaxEncodedLen bounds an encoded message Open accepts (AWS caps EncodedMessage at 10240).
const MaxEncodedLen = 10240

// ErrInvalid is returned for anything that is not a message sealed under the key:
// malformed, truncated, tampered, another key or version. It says nothing more, by design.
var ErrInvalid = errors.New("authzmsg: invalid encoded authorization message")

// Sealer seals and opens messages under one key. It is safe for concurrent use.
type Sealer struct {
	aead cipher.AEAD
	rand io.Reader
}

// NewSealer returns a sealer for key (KeySize bytes); rnd supplies nonces (nil: crypto/rand).
func NewSealer(key []byte, rnd io.Reader) (*Sealer, error) {
	if len(key) != KeySize {
		return nil, fmt.Errorf("authorization message key is %d bytes, want %d", len(key), KeySize)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("authorization message key: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("authorization message key: %w", err)
	}
	if rnd == nil {
		rnd = rand.Reader
	}
	return &Sealer{aead: aead, rand: rnd}, nil
}

// Seal encodes m. Random 96-bit nonces are safe for this key's volume of messages (NIST
// SP 800-38D §8.3: 2^32 messages per key).
func (s *Sealer) Seal(m *Message) (string, error) {
	plain, err := json.Marshal(m)
	if err != nil {
		return "", fmt.Errorf("seal authorization message: %w", err)
	}
	ns := s.aead.NonceSize()
	b := make([]byte, 1+ns, 1+ns+len(plain)+s.aead.Overhead())
	b[0] = version
	if _, err := io.ReadFull(s.rand, b[1:]); err != nil {
		return "", fmt.Errorf("seal authorization message: nonce: %w", err)
	}
	b = s.aead.Seal(b, b[1:1+ns], plain, []byte(aad))
	enc := base64.RawURLEncoding.EncodeToString(b)
	if len(enc) > MaxEncodedLen {
		// A message the STS would refuse to decode is useless: the caller trims it first
		// (fewer conditions or statements).
		return "", fmt.Errorf("seal authorization message: %d encoded bytes, over the limit of %d", len(enc), MaxEncodedLen)
	}
	return enc, nil
}

// Open authenticates and decodes an encoded message, returning its JSON (as sealed) and
// the parsed message. Every failure is ErrInvalid.
func (s *Sealer) Open(encoded string) ([]byte, *Message, error) {
	if len(encoded) > MaxEncodedLen {
		return nil, nil, ErrInvalid
	}
	b, err := base64.RawURLEncoding.Strict().DecodeString(encoded)
	ns := s.aead.NonceSize()
	if err != nil || len(b) < 1+ns+s.aead.Overhead() || b[0] != version {
		return nil, nil, ErrInvalid
	}
	plain, err := s.aead.Open(nil, b[1:1+ns], b[1+ns:], []byte(aad))
	if err != nil {
		return nil, nil, ErrInvalid
	}
	m := new(Message)
	if err := json.Unmarshal(plain, m); err != nil {
		return nil, nil, ErrInvalid
	}
	return plain, m, nil
}
