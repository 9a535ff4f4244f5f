package audit

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
)

// Damage is evidence found missing or altered in a chain: a chain deleted, a segment cut
// short, emptied, removed or rewritten. The reader returns it (errors.As) when a chain
// stops making sense, the writer records it (EventChainDamaged) when it finds its own
// chain damaged and continues in a new segment, and the detector turns it into a
// finding.
type Damage struct {
	Chain string `json:"chain"`
	// Segment is the segment the damage was found in (0: the whole chain is missing).
	Segment uint64 `json:"segment,omitempty"`
	Kind    Kind   `json:"kind"` // Removed, Truncated or Modified
	// From and To are the records (seq) missing or altered, when known (From 0: unknown).
	From uint64 `json:"from,omitempty"`
	To   uint64 `json:"to,omitempty"`
	// Detail says what was found, in a sentence.
	Detail string `json:"detail"`
	// Next, when a reader found records missing before a record it could read, is where
	// reading can go on: after record Next.Seq, whose hash is NextHash (that record's
	// prev). Nil when the chain cannot be read on from where the damage was found.
	Next     *Position `json:"-"`
	NextHash string    `json:"-"`
}

func (d *Damage) Error() string {
	return fmt.Sprintf("audit chain %q damaged: %s", d.Chain, d.Describe())
}

// Describe is the damage in a line: what, where, which records.
func (d *Damage) Describe() string {
	var b bytes.Buffer
	b.WriteString(d.Detail)
	if r := d.Range(); r != "" {
		b.WriteString(" (" + r + ")")
	}
	return b.String()
}

// Range names the records concerned: "records 173 to 279", "record 5", or "".
func (d *Damage) Range() string {
	switch {
	case d.From == 0:
		return ""
	case d.To <= d.From:
		return "record " + strconv.FormatUint(d.From, 10)
	}
	return fmt.Sprintf("records %d to %d", d.From, d.To)
}

// asDamage returns err's Damage, if it is one.
func asDamage(err error) (*Damage, bool) {
	var d *Damage
	ok := errors.As(err, &d)
	return d, ok
}

// Audit events a writer records about its own chain (eventSource EventSourceAudit).
const (
	EventSourceAudit = "audit.phantom.internal"
	// EventChainDamaged opens the segment a writer continues in after finding its chain
	// damaged; additionalEventData holds the Damage (chain, segment, kind, from, to,
	// detail) and resumedAt, the seq the chain continues with.
	EventChainDamaged = "AuditChainDamaged"
)

// DamageEvent is the event recording d; next is the seq the chain continues with (0:
// not known, as when a reader rather than the writer found the damage).
func DamageEvent(d *Damage, next uint64) *Event {
	info := map[string]any{
		"chain":  d.Chain,
		"kind":   string(d.Kind),
		"detail": d.Detail,
	}
	if next > 0 {
		info["resumedAt"] = next
	}
	if d.Segment > 0 {
		info["segment"] = d.Segment
	}
	if d.From > 0 {
		info["from"], info["to"] = d.From, max(d.To, d.From)
	}
	return &Event{
		EventSource:         EventSourceAudit,
		EventName:           EventChainDamaged,
		EventType:           "AwsServiceEvent",
		AdditionalEventData: info,
		EventCategory:       "Management",
	}
}

// DamageOf reads the Damage an EventChainDamaged event records, or false.
func DamageOf(ev *Event) (*Damage, bool) {
	if ev == nil || ev.EventSource != EventSourceAudit || ev.EventName != EventChainDamaged {
		return nil, false
	}
	info := ev.AdditionalEventData
	d := &Damage{}
	d.Chain, _ = info["chain"].(string)
	k, _ := info["kind"].(string)
	d.Kind = Kind(k)
	d.Detail, _ = info["detail"].(string)
	d.Segment = uintOf(info["segment"])
	d.From, d.To = uintOf(info["from"]), uintOf(info["to"])
	if !ValidChain(d.Chain) {
		return nil, false
	}
	return d, true
}

// uintOf reads a JSON number decoded as float64 (or json.Number, or a Go integer).
func uintOf(v any) uint64 {
	switch n := v.(type) {
	case float64:
		if n > 0 && n < 1<<53 {
			return uint64(n)
		}
	case uint64:
		return n
	case int:
		if n > 0 {
			return uint64(n)
		}
	case interface{ Int64() (int64, error) }:
		if i, err := n.Int64(); err == nil && i > 0 {
			return uint64(i)
		}
	}
	return 0
}

// lastGoodRecord is the seq and hash of the last record of the unbroken run of records
// at the start of segment data, which must start at seq first after hash prev; seq is
// first-1 when there is none.
func lastGoodRecord(chain string, data []byte, first uint64, prev string) (seq uint64, hash string, end int64) {
	seq, hash = first-1, prev
	for _, ln := range splitLines(data) {
		if ln.Partial {
			break
		}
		r, err := ParseRecord(chain, ln.Text)
		if err != nil || r.Seq != seq+1 || r.Prev != hash {
			break
		}
		seq, hash, end = r.Seq, r.Hash, ln.End
	}
	return seq, hash, end
}

// segmentStart is where segment n of the chain in dir starts — its first record's seq
// and the hash before it — from its opening digest, else its first record.
func segmentStart(dir, chain string, n uint64) (first uint64, prev string, ok bool) {
	if ds, _, _, err := readDigests(filepath.Join(dir, digestName(n))); err == nil && len(ds) > 0 {
		return ds[0].FirstSeq, ds[0].PrevHash, true
	}
	r, ok := firstRecord(dir, chain, n)
	return r.Seq, r.Prev, ok
}

// truncation describes segment n of the chain in dir, found shorter or other than a
// reader or writer knew it (holding records up to seq upTo): the records of the unbroken
// run at its start are still there, the ones after it up to upTo are missing.
func truncation(dir, chain string, n, upTo uint64, detail string) *Damage {
	d := &Damage{Chain: chain, Segment: n, Kind: Truncated, Detail: detail}
	data, err := os.ReadFile(filepath.Join(dir, segmentName(n)))
	if errors.Is(err, fs.ErrNotExist) {
		d.Kind = Removed
	}
	first, prev, ok := segmentStart(dir, chain, n)
	if !ok {
		return d
	}
	seq, _, _ := lastGoodRecord(chain, data, first, prev)
	if seq < upTo {
		d.From, d.To = seq+1, upTo
	}
	return d
}

// ResumePoint is where a consumer reads a damaged chain on from: after record Seq,
// whose hash is Hash (the first record of Segment names it as prev).
type ResumePoint struct {
	Segment uint64
	Seq     uint64
	Hash    string
}

// Resume finds where reading chain in dir can go on after damage found in segment seg.
// A writer continues a damaged chain in a new segment, so that is the start of the
// first segment after seg; when none follows, seg itself if it opens with the writer's
// AuditChainDamaged record (a reader that started there, after the writer had already
// continued). ok is false when there is nothing to read on from yet.
func Resume(dir, chain string, seg uint64) (ResumePoint, bool) {
	cdir := filepath.Join(dir, chain)
	// Only segments whose file exists: a reader opens the segment file (the writer makes
	// it just after the segment's opening digest).
	segs, _, _, err := chainFiles(os.DirFS(cdir), ".")
	if err != nil {
		return ResumePoint{}, false
	}
	for _, n := range segs {
		if n <= seg {
			continue
		}
		if first, prev, ok := segmentStart(cdir, chain, n); ok {
			return ResumePoint{Segment: n, Seq: first - 1, Hash: prev}, true
		}
	}
	if r, ok := firstRecord(cdir, chain, seg); ok {
		var ev struct{ EventSource, EventName string }
		if json.Unmarshal(r.Event, &ev) == nil && ev.EventSource == EventSourceAudit && ev.EventName == EventChainDamaged {
			return ResumePoint{Segment: seg, Seq: r.Seq - 1, Hash: r.Prev}, true
		}
	}
	return ResumePoint{}, false
}

// firstRecord reads the first record of segment n.
func firstRecord(cdir, chain string, n uint64) (Record, bool) {
	f, err := os.Open(filepath.Join(cdir, segmentName(n)))
	if err != nil {
		return Record{}, false
	}
	defer f.Close()
	b := make([]byte, 64<<10)
	k, _ := io.ReadFull(f, b)
	i := bytes.IndexByte(b[:k], '\n')
	if i < 0 {
		return Record{}, false
	}
	r, err := ParseRecord(chain, b[:i])
	return r, err == nil
}
