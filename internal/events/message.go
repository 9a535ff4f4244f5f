package events

import (
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"strconv"
	"strings"

	"github.com/phantom-perimeter/phantom/internal/audit"
	"github.com/phantom-perimeter/phantom/internal/detect"
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
	// HeaderPartPrev is "<seq> <hash>" of the chain's previous record in the same
	// partition ("0 " + zero hash: none), so a consumer of one partition checks that it
	// has every one of the chain's records there. HeaderGap says the chain itself lacks
	// records before this one (damage its writer found): the consumer raises it.
	HeaderPartPrev = "Phantom-Part-Prev"
	HeaderGap      = "Phantom-Gap"
	// HeaderMsgID is JetStream's deduplication header ("JetStream model deep dive:
	// message deduplication").
	HeaderMsgID = "Nats-Msg-Id"
)

// Partitions is how many partitions the records are split into, by the principal whose
// state the detector keeps (detect.PartitionKey): a detector replica takes whole
// partitions, so each principal's state is in one replica. Fixed: the detectors' cursors
// are per partition.
const Partitions = 16

// Partition is the partition of a principal key: FNV-1a, modulo Partitions.
func Partition(key string) int {
	h := fnv.New32a()
	h.Write([]byte(key))
	return int(h.Sum32() % Partitions)
}

// PartitionOf is the partition of a record: its event's principal's. A record whose
// event does not decode goes to partition 0 (its consumer raises it).
func PartitionOf(r audit.Record) int {
	_, part := Route(r)
	return part
}

// routing is what of an event routes its record: read alone, not the whole event.
type routing struct {
	EventSource  string             `json:"eventSource"`
	UserIdentity audit.UserIdentity `json:"userIdentity"`
}

// Route is a record's subject token of its event source (SourceToken) and its partition,
// from one decoding of the event.
func Route(r audit.Record) (source string, partition int) {
	var ev routing
	if json.Unmarshal(r.Event, &ev) != nil {
		return "other", 0
	}
	return SourceToken(ev.EventSource), Partition(detect.PartitionKey(&audit.Event{UserIdentity: ev.UserIdentity}))
}

// Link is a record's place: its seq and hash (seq 0: before the chain's first record).
type Link struct {
	Seq  uint64 `json:"seq"`
	Hash string `json:"hash"`
}

// String is the HeaderPartPrev form.
func (l Link) String() string { return strconv.FormatUint(l.Seq, 10) + " " + l.Hash }

func parseLink(s string) (Link, error) {
	seq, hash, ok := strings.Cut(s, " ")
	n, err := strconv.ParseUint(seq, 10, 64)
	if !ok || err != nil || strconv.FormatUint(n, 10) != seq || len(hash) != 64 || strings.Trim(hash, "0123456789abcdef") != "" {
		return Link{}, fmt.Errorf("%s %q is not <seq> <hash>", HeaderPartPrev, truncate(s))
	}
	return Link{Seq: n, Hash: hash}, nil
}

// MaxMessageBytes bounds a message a consumer parses: an audit record is a few KiB
// (NATS's own default max_payload is 1 MiB).
const MaxMessageBytes = 1 << 20

// Message is one audit record as published: the chain, the account and event source its
// subject names, and the record.
type Message struct {
	Account string
	Chain   string
	Source  string // the subject token of the event's source, see SourceToken
	// Partition is the record's partition; PartPrev the chain's previous record in it;
	// Gap whether the chain lacks records before this one.
	Partition int
	PartPrev  Link
	Gap       bool
	Record    audit.Record
}

// Subject is the record's subject: phantom.audit.<account>.<chain>.<source>.<partition>.
func Subject(account, chain, source string, partition int) string {
	return SubjectPrefix + "." + account + "." + chain + "." + source + "." + strconv.Itoa(partition)
}

// PartitionSubjects is the subject filter of one partition of account's records.
func PartitionSubjects(account string, partition int) string {
	return SubjectPrefix + "." + account + ".*.*." + strconv.Itoa(partition)
}

// AccountSubjects is the subject filter of every record of account.
func AccountSubjects(account string) string { return SubjectPrefix + "." + account + ".>" }

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

// Source is the subject token of the record's event source.
func Source(r audit.Record) string {
	source, _ := Route(r)
	return source
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
	if len(parts) != 4 {
		return m, fmt.Errorf("subject %q: want %s.<account>.<chain>.<source>.<partition>", truncate(subject), SubjectPrefix)
	}
	m.Account, m.Chain, m.Source = parts[0], parts[1], parts[2]
	var r audit.Record
	part, err := strconv.Atoi(parts[3])
	if err != nil || part < 0 || part >= Partitions || strconv.Itoa(part) != parts[3] {
		return m, fmt.Errorf("subject %q: partition is not 0 to %d", truncate(subject), Partitions-1)
	}
	m.Partition = part
	if !validAccount(m.Account) {
		return m, fmt.Errorf("subject %q: account is not 12 digits", truncate(subject))
	}
	if !audit.ValidChain(m.Chain) {
		return m, fmt.Errorf("subject %q: %q is not a chain name", truncate(subject), truncate(m.Chain))
	}
	if h == nil || h.Get(HeaderChain) != m.Chain {
		return m, fmt.Errorf("chain %s: the %s header does not name the subject's chain", m.Chain, HeaderChain)
	}
	r, err = audit.ParseRecord(m.Chain, data)
	if err != nil {
		return m, fmt.Errorf("chain %s: the message is not a record of the chain: %w", m.Chain, err)
	}
	m.Record = r
	if h.Get(HeaderSeq) != strconv.FormatUint(r.Seq, 10) || h.Get(HeaderPrev) != r.Prev || h.Get(HeaderHash) != r.Hash {
		return m, fmt.Errorf("chain %s seq %d: the headers do not name the record's place in the chain", m.Chain, r.Seq)
	}
	source, partition := Route(r)
	if source != m.Source {
		return m, fmt.Errorf("chain %s seq %d: subject names source %q, the event %q", m.Chain, r.Seq, truncate(m.Source), source)
	}
	if id := h.Get(HeaderMsgID); id != "" && id != MsgID(m.Account, m.Chain, r) {
		return m, fmt.Errorf("chain %s seq %d: %s does not name the record", m.Chain, r.Seq, HeaderMsgID)
	}
	if partition != m.Partition {
		return m, fmt.Errorf("chain %s seq %d: subject names partition %d, the event's principal is in %d", m.Chain, r.Seq, m.Partition, partition)
	}
	if m.PartPrev, err = parseLink(h.Get(HeaderPartPrev)); err != nil {
		return m, fmt.Errorf("chain %s seq %d: %w", m.Chain, r.Seq, err)
	}
	if m.PartPrev.Seq >= r.Seq {
		return m, fmt.Errorf("chain %s seq %d: %s names seq %d, not an earlier record", m.Chain, r.Seq, HeaderPartPrev, m.PartPrev.Seq)
	}
	switch h.Get(HeaderGap) {
	case "":
	case "1":
		m.Gap = true
	default:
		return m, fmt.Errorf("chain %s seq %d: %s is not 1", m.Chain, r.Seq, HeaderGap)
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
