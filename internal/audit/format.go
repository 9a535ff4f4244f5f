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
//	{"seq":N,"prev":"<hex sha256>","event":{...CloudTrail event...},"hash":"<hex sha256>"}\n
//
// where hash = SHA-256("phantom/audit/v1 record\x00" || chain || "\x00" || the line up to,
// not including, `,"hash":`). seq counts from 1 across the whole chain; prev is the
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
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
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
	recPrefix  = []byte(`{"seq":`)
	recPrev    = []byte(`,"prev":"`)
	recEvent   = []byte(`","event":`)
	recHashTag = []byte(`,"hash":"`)
	recSuffix  = []byte(`"}`)
	// hashTail is the length of `,"hash":"<64 hex>"}`.
	hashTail = len(recHashTag) + hashHexLen + len(recSuffix)
)

// appendRecord appends the record line for (seq, prev, event) with its trailing newline
// to dst, and returns the new slice and the record's hash.
func appendRecord(dst []byte, chain string, seq uint64, prev string, event []byte) ([]byte, string) {
	start := len(dst)
	dst = append(dst, recPrefix...)
	dst = strconv.AppendUint(dst, seq, 10)
	dst = append(dst, recPrev...)
	dst = append(dst, prev...)
	dst = append(dst, recEvent...)
	dst = append(dst, event...)
	sum := recordHash(chain, dst[start:])
	var h [hashHexLen]byte
	hex.Encode(h[:], sum[:])
	dst = append(dst, recHashTag...)
	dst = append(dst, h[:]...)
	dst = append(dst, recSuffix...)
	dst = append(dst, '\n')
	return dst, string(h[:])
}

func recordHash(chain string, body []byte) [sha256.Size]byte {
	h := sha256.New()
	h.Write([]byte(recordDomain))
	h.Write([]byte(chain))
	h.Write([]byte{0})
	h.Write(body)
	var sum [sha256.Size]byte
	h.Sum(sum[:0])
	return sum
}

// ErrModified is returned by ParseRecord for a well-formed line whose stated hash is
// not the hash of its content: the record was modified.
var ErrModified = errors.New("hash does not match the record's content")

// ParseRecord parses one record line of chain (without its newline) and checks that its
// stated hash is the hash of its content. A line that is not in the canonical form is
// an error; so is one whose hash does not match (errors.Is(err, ErrModified)).
func ParseRecord(chain string, line []byte) (Record, error) {
	var r Record
	if !bytes.HasPrefix(line, recPrefix) || len(line) < len(recPrefix)+hashTail {
		return r, errors.New("not a record line")
	}
	rest := line[len(recPrefix):]
	i := bytes.IndexByte(rest, ',')
	if i <= 0 {
		return r, errors.New("no seq")
	}
	digits := rest[:i]
	seq, err := strconv.ParseUint(string(digits), 10, 64)
	if err != nil || seq == 0 || strconv.FormatUint(seq, 10) != string(digits) {
		return r, fmt.Errorf("bad seq %q", truncateForMessage(digits))
	}
	rest = rest[i:]
	if !bytes.HasPrefix(rest, recPrev) || len(rest) < len(recPrev)+hashHexLen {
		return r, errors.New("no prev hash")
	}
	prev := rest[len(recPrev) : len(recPrev)+hashHexLen]
	if !isLowerHex(prev) {
		return r, errors.New("prev is not a lower-case hex SHA-256")
	}
	rest = rest[len(recPrev)+hashHexLen:]
	if !bytes.HasPrefix(rest, recEvent) {
		return r, errors.New("no event")
	}
	rest = rest[len(recEvent):]
	if len(rest) < hashTail {
		return r, errors.New("no hash")
	}
	event := rest[:len(rest)-hashTail]
	tail := rest[len(rest)-hashTail:]
	if !bytes.HasPrefix(tail, recHashTag) || !bytes.HasSuffix(tail, recSuffix) {
		return r, errors.New("no hash")
	}
	stated := tail[len(recHashTag) : len(recHashTag)+hashHexLen]
	if !isLowerHex(stated) {
		return r, errors.New("hash is not a lower-case hex SHA-256")
	}
	if len(event) == 0 || event[0] != '{' || !json.Valid(event) {
		return r, errors.New("event is not a JSON object")
	}
	r = Record{Seq: seq, Prev: string(prev), Event: event, Hash: string(stated)}
	sum := recordHash(chain, line[:len(line)-hashTail])
	if hex.EncodeToString(sum[:]) != r.Hash {
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
func appendDigest(dst []byte, key ed25519.PrivateKey, body *digestBody) ([]byte, string, error) {
	b, err := json.Marshal(body)
	if err != nil {
		return dst, "", err
	}
	sig := ed25519.Sign(key, append([]byte(digestDomain), b...))
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
	sig, err := base64.StdEncoding.DecodeString(string(tail[len(digSig) : len(digSig)+sigB64Len]))
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
