package audit

// The on-disk format. A chain is a directory DIR/<chain>/ holding:
//
//	00000001.jsonl   segment 1: records, one JSON line each
//	00000001.digest  segment 1: signed digests, one JSON line each
//	00000002.jsonl   ...
//	signer.pub       the chain's Ed25519 public key(s), PEM "PUBLIC KEY" blocks
//	lock             flock(2) so one process at a time writes the chain
//
// A record line is exactly
//
//	{"event":{...CloudTrail event...},"seq":N,"prev":"<hex sha256>","hash":"<hex sha256>"}\n
//
// where hash = SHA-256("phantom/audit/v1 record\x00" || chain || "\x00" || the line up to
// and including the quote that closes prev). The event comes first so the writer hashes
// it before taking its lock; the line is parsed from its end. seq counts from 1 across the whole chain; prev is the
// previous record's hash (the previous segment's last one for a segment's first record,
// 64 zeros for the chain's first). The line is canonical: any other spelling of the same
// values (spaces, leading zeros, upper-case hex, extra fields) does not parse, so a line
// either verifies byte for byte or is reported.
//
// A digest line is {"digest":<body>,"sig":"<base64 Ed25519 signature>"} where the
// signature is over "phantom/audit/v1 digest\x00" || body, and body (digestBody) states
// what the segment held when it was signed: first and last seq, record count, byte
// length, the last record's hash, and the SHA-256 of the chain's previous digest line,
// so digests form their own chain across segments. The model is CloudTrail's log file
// integrity validation (digest files that name the log files they cover, their hashes,
// and the previous digest's signature), with the granularity of records rather than files.

import (
	"bytes"
	"crypto"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"strconv"
	"time"
)

const (
	recordDomain = "phantom/audit/v1 record\x00"
	digestDomain = "phantom/audit/v1 digest\x00"
	hashHexLen   = 2 * sha256.Size
	// zeroHash is prev of a chain's first record.
	zeroHash = "0000000000000000000000000000000000000000000000000000000000000000"
)

// Record is one parsed record line.
type Record struct {
	Seq   uint64
	Prev  string          // hex SHA-256 of the previous record
	Event json.RawMessage // the CloudTrail event exactly as written (and hashed)
	Hash  string          // hex SHA-256 stated by the line
}

var (
	recEvent   = []byte(`{"event":`)
	recSeq     = []byte(`,"seq":`)
	recPrev    = []byte(`,"prev":"`)
	recHashTag = []byte(`","hash":"`)
	recSuffix  = []byte(`"}`)
	// prevTail is the length of `,"prev":"<64 hex>","hash":"<64 hex>"}`.
	prevTail = len(recPrev) + hashHexLen + len(recHashTag) + hashHexLen + len(recSuffix)
	// hashTail is the length of `","hash":"<64 hex>"}`, the part the hash does not cover
	// but for its opening quote.
	hashTail = len(recHashTag) + hashHexLen + len(recSuffix)
)

// recordHasher hashes one record. The event comes first in the line so that its bytes,
// nearly all of the work, are hashed before the record's place in the chain is known:
// outside the writer's lock.
type recordHasher struct {
	h   hash.Hash
	sum *[sha256.Size]byte // the digest's scratch (a pooled recBuf's, off the heap per record)
}

// startRecord starts the line and hash of a record holding event: dst gets `{"event":...`.
func startRecord(dst []byte, chain string, event []byte) ([]byte, recordHasher) {
	start := len(dst)
	dst = append(dst, recEvent...)
	dst = append(dst, event...)
	return dst, beginRecord(sha256.New(), new([sha256.Size]byte), recordPrefix(chain), dst[start:])
}

// recordPrefix is what every record hash of chain begins with: the domain, the chain's
// name and a zero byte.
func recordPrefix(chain string) []byte {
	return append(append([]byte(recordDomain), chain...), 0)
}

// beginRecord hashes, with h, the chain's recordPrefix and the start of a record line:
// `{"event":<event>`. sum is the scratch finish takes the digest in.
func beginRecord(h hash.Hash, sum *[sha256.Size]byte, prefix, start []byte) recordHasher {
	h.Reset()
	h.Write(prefix)
	h.Write(start)
	return recordHasher{h, sum}
}

// finish appends the record's position, hash and newline to the line startRecord began,
// and returns the line and the record's hash (hex, in an array: the writer makes a string
// of it only when it needs one).
func (rh recordHasher) finish(dst []byte, seq uint64, prev []byte) ([]byte, [hashHexLen]byte) {
	start := len(dst)
	dst = append(dst, recSeq...)
	dst = strconv.AppendUint(dst, seq, 10)
	dst = append(dst, recPrev...)
	dst = append(dst, prev...)
	dst = append(dst, '"')
	rh.h.Write(dst[start:])
	sum := rh.h.Sum(rh.sum[:0])
	var hx [hashHexLen]byte
	hex.Encode(hx[:], sum)
	dst = append(dst, recHashTag[1:]...) // the quote closing prev is already there
	dst = append(dst, hx[:]...)
	dst = append(dst, recSuffix...)
	dst = append(dst, '\n')
	return dst, hx
}

// appendRecord appends the record line for (seq, prev, event) with its trailing newline
// to dst, and returns the new slice and the record's hash.
func appendRecord(dst []byte, chain string, seq uint64, prev string, event []byte) ([]byte, string) {
	dst, rh := startRecord(dst, chain, event)
	dst, hx := rh.finish(dst, seq, []byte(prev))
	return dst, string(hx[:])
}

// AppendLine appends the record's line, as its chain holds it but without the newline,
// to dst: what ParseRecord parses back. A copy of a record elsewhere (an event stream)
// carries these exact bytes, so its hash is checked as the chain's.
func (r Record) AppendLine(dst []byte) []byte {
	dst = append(dst, recEvent...)
	dst = append(dst, r.Event...)
	dst = append(dst, recSeq...)
	dst = strconv.AppendUint(dst, r.Seq, 10)
	dst = append(dst, recPrev...)
	dst = append(dst, r.Prev...)
	dst = append(dst, recHashTag...)
	dst = append(dst, r.Hash...)
	return append(dst, recSuffix...)
}

// ErrModified is returned by ParseRecord for a well-formed line whose stated hash is
// not the hash of its content: the record was modified.
var ErrModified = errors.New("hash does not match the record's content")

// ParseRecord parses one record line of chain (without its newline) and checks that its
// stated hash is the hash of its content. A line that is not in the canonical form is
// an error; so is one whose hash does not match (errors.Is(err, ErrModified)).
func ParseRecord(chain string, line []byte) (Record, error) {
	var r Record
	// The line is parsed from its end: the event may hold any JSON, the rest is fixed.
	if !bytes.HasPrefix(line, recEvent) || len(line) < len(recEvent)+2+len(recSeq)+1+prevTail {
		return r, errors.New("not a record line")
	}
	tail := line[len(line)-prevTail:]
	if !bytes.HasPrefix(tail, recPrev) || !bytes.HasSuffix(tail, recSuffix) ||
		!bytes.Equal(tail[len(recPrev)+hashHexLen:len(recPrev)+hashHexLen+len(recHashTag)], recHashTag) {
		return r, errors.New("no prev and hash")
	}
	prev := tail[len(recPrev) : len(recPrev)+hashHexLen]
	stated := tail[len(tail)-len(recSuffix)-hashHexLen : len(tail)-len(recSuffix)]
	if !isLowerHex(prev) || !isLowerHex(stated) {
		return r, errors.New("prev or hash is not a lower-case hex SHA-256")
	}
	head := line[:len(line)-prevTail]
	i := len(head)
	for i > 0 && '0' <= head[i-1] && head[i-1] <= '9' {
		i--
	}
	digits := head[i:]
	seq, err := strconv.ParseUint(string(digits), 10, 64)
	if err != nil || seq == 0 || strconv.FormatUint(seq, 10) != string(digits) {
		return r, fmt.Errorf("bad seq %q", truncateForMessage(digits))
	}
	head = head[:i]
	if !bytes.HasSuffix(head, recSeq) {
		return r, errors.New("no seq")
	}
	event := head[len(recEvent) : len(head)-len(recSeq)]
	if len(event) < 2 || event[0] != '{' || event[len(event)-1] != '}' || !json.Valid(event) {
		return r, errors.New("event is not a JSON object")
	}
	r = Record{Seq: seq, Prev: string(prev), Event: event, Hash: string(stated)}
	// What the writer hashed: the line up to the quote that closes prev.
	h := sha256.New()
	h.Write([]byte(recordDomain))
	h.Write([]byte(chain))
	h.Write([]byte{0})
	h.Write(line[:len(line)-hashTail+1])
	var sum [sha256.Size]byte
	var hx [hashHexLen]byte
	hex.Encode(hx[:], h.Sum(sum[:0]))
	if !bytes.Equal(hx[:], stated) {
		return r, ErrModified
	}
	return r, nil
}

func isLowerHex(b []byte) bool {
	for _, c := range b {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

func truncateForMessage(b []byte) string {
	if len(b) > 40 {
		return string(b[:40]) + "…"
	}
	return string(b)
}

// digestBody is what a digest signs: the state of one segment at one moment.
type digestBody struct {
	Version int    `json:"v"`
	Chain   string `json:"chain"`
	Segment uint64 `json:"segment"` // the segment number: 1 is 00000001.jsonl
	// FirstSeq is the seq of the segment's first record; PrevHash the hash before it
	// (the previous segment's last record, or zeros).
	FirstSeq uint64 `json:"firstSeq"`
	PrevHash string `json:"prevHash"`
	// LastSeq and LastHash name the last record covered; Records = LastSeq-FirstSeq+1
	// (0 for the digest that opens a segment, where LastSeq = FirstSeq-1 and LastHash =
	// PrevHash); Bytes is the segment's length up to and including that record's line.
	LastSeq  uint64 `json:"lastSeq"`
	LastHash string `json:"lastHash"`
	Records  uint64 `json:"records"`
	Bytes    int64  `json:"bytes"`
	// PrevDigest is the hex SHA-256 of the chain's previous digest line ("" for the first).
	PrevDigest string    `json:"prevDigest"`
	Time       time.Time `json:"time"`
	KeyID      string    `json:"keyId"`
	// Final marks the segment's last digest, written when the log moved to the next one:
	// nothing may follow it in this segment.
	Final bool `json:"final,omitempty"`
	// Recovered, on the first digest after Open repaired a torn tail, says how many bytes
	// of a partial record it cut off the segment's end.
	Recovered int64 `json:"recovered,omitempty"`
}

// digest is one parsed digest line.
type digest struct {
	digestBody
	Line []byte // the whole line, without newline
	Sig  []byte
	Body []byte
}

var (
	digPrefix = []byte(`{"digest":`)
	digSig    = []byte(`,"sig":"`)
	digSuffix = []byte(`"}`)
	sigB64Len = base64.StdEncoding.EncodedLen(ed25519.SignatureSize)
	digTail   = len(digSig) + sigB64Len + len(digSuffix)
)

// appendDigest signs body and appends its line with a newline; it returns the line's
// hash (the next digest's PrevDigest).
func appendDigest(dst []byte, key crypto.Signer, body *digestBody) ([]byte, string, error) {
	b, err := json.Marshal(body)
	if err != nil {
		return dst, "", err
	}
	// Pure Ed25519 (RFC 8032 §5.1) over the domain and the body, in memory or in a token.
	sig, err := key.Sign(nil, append([]byte(digestDomain), b...), crypto.Hash(0))
	if err != nil {
		return dst, "", fmt.Errorf("sign audit digest: %w", err)
	}
	if len(sig) != ed25519.SignatureSize {
		return dst, "", fmt.Errorf("sign audit digest: a %d-byte signature", len(sig))
	}
	start := len(dst)
	dst = append(dst, digPrefix...)
	dst = append(dst, b...)
	dst = append(dst, digSig...)
	dst = base64.StdEncoding.AppendEncode(dst, sig)
	dst = append(dst, digSuffix...)
	sum := sha256.Sum256(dst[start:])
	dst = append(dst, '\n')
	return dst, hex.EncodeToString(sum[:]), nil
}

// parseDigest parses one digest line (without newline). It does not check the signature.
func parseDigest(line []byte) (*digest, error) {
	if !bytes.HasPrefix(line, digPrefix) || len(line) < len(digPrefix)+digTail {
		return nil, errors.New("not a digest line")
	}
	body := line[len(digPrefix) : len(line)-digTail]
	tail := line[len(line)-digTail:]
	if !bytes.HasPrefix(tail, digSig) || !bytes.HasSuffix(tail, digSuffix) {
		return nil, errors.New("no signature")
	}
	sig, err := base64.StdEncoding.Strict().DecodeString(string(tail[len(digSig) : len(digSig)+sigB64Len]))
	if err != nil || len(sig) != ed25519.SignatureSize {
		return nil, errors.New("signature is not base64 Ed25519")
	}
	d := &digest{Line: line, Sig: sig, Body: body}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&d.digestBody); err != nil {
		return nil, fmt.Errorf("digest body: %w", err)
	}
	if dec.More() {
		return nil, errors.New("digest body: data after the object")
	}
	if d.Version != 1 {
		return nil, fmt.Errorf("digest version %d not supported", d.Version)
	}
	return d, nil
}

// verifySig reports whether one of keys signed d.
func (d *digest) verifySig(keys []ed25519.PublicKey) bool {
	msg := append([]byte(digestDomain), d.Body...)
	for _, k := range keys {
		if ed25519.Verify(k, msg, d.Sig) {
			return true
		}
	}
	return false
}

func (d *digest) hash() string {
	sum := sha256.Sum256(d.Line)
	return hex.EncodeToString(sum[:])
}
