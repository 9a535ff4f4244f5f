package events

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/phantom-perimeter/phantom/internal/audit"
)

// SubjectPrefix is the first tokens of every audit record's subject.
const SubjectPrefix = "phantom.audit"

// Headers of a published record: its place in its chain. Consumers compare them with the
// record itself (ParseMessage), so they are a routing aid, never believed on their own.
const (
	HeaderChain = "Phantom-Chain"
	HeaderSeq   = "Phantom-Seq"
	HeaderPrev  = "Phantom-Prev"
	HeaderHash  = "Phantom-Hash"
	// HeaderMsgID is JetStream's deduplication header ("JetStream model deep dive:
	// message deduplication").
	HeaderMsgID = "Nats-Msg-Id"
)

// MaxMessageBytes bounds a message a consumer parses: an audit record is a few KiB
// (NATS's own default max_payload is 1 MiB).
const MaxMessageBytes = 1 << 20

// Message is one audit record as published: the chain, the account and event source its
// subject names, and the record.
type Message struct {
	Account string
	Chain   string
	Source  string // the subject token of the event's source, see SourceToken
	Record  audit.Record
}

// Subject is the record's subject: phantom.audit.<account>.<chain>.<source>.
func Subject(account, chain, source string) string {
	return SubjectPrefix + "." + account + "." + chain + "." + source
}

// AccountSubjects is the subject filter of every record of account.
func AccountSubjects(account string) string { return SubjectPrefix + "." + account + ".>" }

// ChainSubjects is the subject filter of every record of one chain of account.
func ChainSubjects(account, chain string) string {
	return SubjectPrefix + "." + account + "." + chain + ".*"
}

// SourceToken is an event source as one subject token: CloudTrail's eventSource
// ("s3.amazonaws.com") with its dots, which separate NATS subject tokens, as
// underscores; anything but [a-z0-9_-] makes it "other", as does an empty source.
func SourceToken(source string) string {
	if source == "" || len(source) > 128 {
		return "other"
	}
	b := []byte(source)
	for i, c := range b {
		switch {
		case c == '.':
			b[i] = '_'
		case 'a' <= c && c <= 'z', '0' <= c && c <= '9', c == '_', c == '-':
		default:
			return "other"
		}
	}
	return string(b)
}

// MsgID is the record's JetStream deduplication id: the chain, seq and hash, so a chain
// numbered again after damage (the same seq, another record) is not taken for a repeat.
func MsgID(account, chain string, r audit.Record) string {
	return account + "." + chain + "." + strconv.FormatUint(r.Seq, 10) + "." + r.Hash
}

// eventSource reads only the event's source.
type eventSource struct {
	EventSource string `json:"eventSource"`
}

// Source is the subject token of the record's event source.
func Source(r audit.Record) string {
	var es eventSource
	if json.Unmarshal(r.Event, &es) != nil {
		return "other"
	}
	return SourceToken(es.EventSource)
}

// Header is what a message carries besides its subject and body: a subset of
// nats.Header, which satisfies it.
type Header interface {
	Get(key string) string
}

// ParseMessage checks one message of the stream and returns the record it carries. The
// subject must name an account, a valid chain and the record's own event source; the
// body must be a record line of that chain whose stated hash is its content's
// (audit.ParseRecord); the headers must agree with the record. It says nothing of the
// record's place among the others: that is the consumer's continuity check.
func ParseMessage(subject string, h Header, data []byte) (Message, error) {
	var m Message
	if len(data) > MaxMessageBytes {
		return m, fmt.Errorf("audit message of %d bytes, above %d", len(data), MaxMessageBytes)
	}
	rest, ok := strings.CutPrefix(subject, SubjectPrefix+".")
	if !ok {
		return m, fmt.Errorf("subject %q is not an audit record's", truncate(subject))
	}
	parts := strings.Split(rest, ".")
	if len(parts) != 3 {
		return m, fmt.Errorf("subject %q: want %s.<account>.<chain>.<source>", truncate(subject), SubjectPrefix)
	}
	m.Account, m.Chain, m.Source = parts[0], parts[1], parts[2]
	if !validAccount(m.Account) {
		return m, fmt.Errorf("subject %q: account is not 12 digits", truncate(subject))
	}
	if !audit.ValidChain(m.Chain) {
		return m, fmt.Errorf("subject %q: %q is not a chain name", truncate(subject), truncate(m.Chain))
	}
	if h == nil || h.Get(HeaderChain) != m.Chain {
		return m, fmt.Errorf("chain %s: the %s header does not name the subject's chain", m.Chain, HeaderChain)
	}
	r, err := audit.ParseRecord(m.Chain, data)
	if err != nil {
		return m, fmt.Errorf("chain %s: the message is not a record of the chain: %w", m.Chain, err)
	}
	m.Record = r
	if h.Get(HeaderSeq) != strconv.FormatUint(r.Seq, 10) || h.Get(HeaderPrev) != r.Prev || h.Get(HeaderHash) != r.Hash {
		return m, fmt.Errorf("chain %s seq %d: the headers do not name the record's place in the chain", m.Chain, r.Seq)
	}
	if got := Source(r); got != m.Source {
		return m, fmt.Errorf("chain %s seq %d: subject names source %q, the event %q", m.Chain, r.Seq, truncate(m.Source), got)
	}
	if id := h.Get(HeaderMsgID); id != "" && id != MsgID(m.Account, m.Chain, r) {
		return m, fmt.Errorf("chain %s seq %d: %s does not name the record", m.Chain, r.Seq, HeaderMsgID)
	}
	return m, nil
}

func validAccount(a string) bool {
	if len(a) != 12 {
		return false
	}
	for i := 0; i < len(a); i++ {
		if a[i] < '0' || a[i] > '9' {
			return false
		}
	}
	return true
}

func truncate(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}

// ErrNoBroker is returned when no --events URL is configured.
var ErrNoBroker = errors.New("events: no broker URL")
