package audit_test

// A second verifier of the golden chain, written from the format's description (the
// comment at the top of format.go and docs/) and sharing no code with the package: the
// golden is rewritten by the code under test (-update), so checking it only with that
// code's own Verify would accept any change that both sides agree on.

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
)

// specRecord and specDigest are the line layouts the description gives, field for field.
type specRecord struct {
	Event json.RawMessage `json:"event"`
	Seq   uint64          `json:"seq"`
	Prev  string          `json:"prev"`
	Hash  string          `json:"hash"`
}

type specDigestLine struct {
	Digest json.RawMessage `json:"digest"`
	Sig    string          `json:"sig"`
}

type specDigestBody struct {
	V          int    `json:"v"`
	Chain      string `json:"chain"`
	Segment    uint64 `json:"segment"`
	FirstSeq   uint64 `json:"firstSeq"`
	PrevHash   string `json:"prevHash"`
	LastSeq    uint64 `json:"lastSeq"`
	LastHash   string `json:"lastHash"`
	Records    uint64 `json:"records"`
	Bytes      int64  `json:"bytes"`
	PrevDigest string `json:"prevDigest"`
	Time       string `json:"time"`
	KeyID      string `json:"keyId"`
	Final      bool   `json:"final"`
	Recovered  int64  `json:"recovered"`
}

var hex64 = regexp.MustCompile(`^[0-9a-f]{64}$`)

// strictDecode decodes one JSON line, refusing fields the description does not name.
func strictDecode(line []byte, v any) error {
	d := json.NewDecoder(bytes.NewReader(line))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		return err
	}
	if d.More() {
		return errors.New("trailing data")
	}
	return nil
}

// lines splits a file into its newline-terminated lines; a missing final newline is an error.
func lines(data []byte) ([][]byte, error) {
	if len(data) == 0 {
		return nil, nil
	}
	if data[len(data)-1] != '\n' {
		return nil, errors.New("the file does not end with a newline")
	}
	return bytes.Split(data[:len(data)-1], []byte("\n")), nil
}

// verifySpec checks the chain in dir/chain against pub, as the description says a
// verifier must, and returns how many records and segments it holds.
func verifySpec(dir, chain string, pub ed25519.PublicKey) (records, segments int, err error) {
	keySum := sha256.Sum256(pub)
	keyID := hex.EncodeToString(keySum[:8])
	prevHash := "0000000000000000000000000000000000000000000000000000000000000000"
	var seq uint64
	prevDigest := ""
	for n := uint64(1); ; n++ {
		name := fmt.Sprintf("%08d", n)
		data, err := os.ReadFile(filepath.Join(dir, chain, name+".jsonl"))
		if errors.Is(err, os.ErrNotExist) {
			if n == 1 {
				return 0, 0, errors.New("no first segment")
			}
			break
		}
		if err != nil {
			return 0, 0, err
		}
		segments++
		// The records: canonical lines, hashes recomputed, each linked to the one before.
		type at struct {
			hash string
			end  int64
		}
		bySeq := map[uint64]at{}
		firstSeq, segPrev := seq+1, prevHash
		recLines, err := lines(data)
		if err != nil {
			return 0, 0, fmt.Errorf("%s.jsonl: %w", name, err)
		}
		var off int64
		for i, ln := range recLines {
			var r specRecord
			if err := strictDecode(ln, &r); err != nil {
				return 0, 0, fmt.Errorf("%s.jsonl line %d: %w", name, i+1, err)
			}
			canon := []byte(`{"event":`)
			canon = append(canon, r.Event...)
			canon = append(canon, `,"seq":`+strconv.FormatUint(r.Seq, 10)+`,"prev":"`+r.Prev+`"`...)
			covered := len(canon)
			canon = append(canon, `,"hash":"`+r.Hash+`"}`...)
			if !bytes.Equal(canon, ln) {
				return 0, 0, fmt.Errorf("%s.jsonl line %d is not in the canonical form", name, i+1)
			}
			if !hex64.MatchString(r.Prev) || !hex64.MatchString(r.Hash) {
				return 0, 0, fmt.Errorf("%s.jsonl line %d: prev or hash is not lower-case hex SHA-256", name, i+1)
			}
			h := sha256.New()
			h.Write([]byte("phantom/audit/v1 record\x00" + chain + "\x00"))
			h.Write(ln[:covered])
			if got := hex.EncodeToString(h.Sum(nil)); got != r.Hash {
				return 0, 0, fmt.Errorf("%s.jsonl line %d: hash %s, recomputed %s", name, i+1, r.Hash, got)
			}
			if r.Seq != seq+1 || r.Prev != prevHash {
				return 0, 0, fmt.Errorf("%s.jsonl line %d: seq %d prev %s, want seq %d prev %s", name, i+1, r.Seq, r.Prev, seq+1, prevHash)
			}
			var ev map[string]any
			if err := json.Unmarshal(r.Event, &ev); err != nil || ev["eventVersion"] == nil || ev["eventID"] == nil {
				return 0, 0, fmt.Errorf("%s.jsonl line %d: the event is not a CloudTrail event: %v", name, i+1, err)
			}
			off += int64(len(ln)) + 1
			seq, prevHash = r.Seq, r.Hash
			bySeq[seq] = at{r.Hash, off}
			records++
		}

		// The digests: signed, chained, and stating what the segment held.
		ddata, err := os.ReadFile(filepath.Join(dir, chain, name+".digest"))
		if err != nil {
			return 0, 0, err
		}
		digLines, err := lines(ddata)
		if err != nil || len(digLines) == 0 {
			return 0, 0, fmt.Errorf("%s.digest: no digest lines (%v)", name, err)
		}
		var last specDigestBody
		for i, ln := range digLines {
			var d specDigestLine
			if err := strictDecode(ln, &d); err != nil {
				return 0, 0, fmt.Errorf("%s.digest line %d: %w", name, i+1, err)
			}
			if !bytes.Equal(ln, []byte(`{"digest":`+string(d.Digest)+`,"sig":"`+d.Sig+`"}`)) {
				return 0, 0, fmt.Errorf("%s.digest line %d is not in the canonical form", name, i+1)
			}
			sig, err := base64.StdEncoding.Strict().DecodeString(d.Sig)
			if err != nil || !ed25519.Verify(pub, append([]byte("phantom/audit/v1 digest\x00"), d.Digest...), sig) {
				return 0, 0, fmt.Errorf("%s.digest line %d: the signature does not verify (%v)", name, i+1, err)
			}
			var b specDigestBody
			if err := strictDecode(d.Digest, &b); err != nil {
				return 0, 0, fmt.Errorf("%s.digest line %d: %w", name, i+1, err)
			}
			if last.Final {
				return 0, 0, fmt.Errorf("%s.digest line %d follows the segment's final digest", name, i+1)
			}
			wantHash, wantBytes := segPrev, int64(0)
			if b.LastSeq >= firstSeq {
				a, ok := bySeq[b.LastSeq]
				if !ok {
					return 0, 0, fmt.Errorf("%s.digest line %d names record %d, which the segment lacks", name, i+1, b.LastSeq)
				}
				wantHash, wantBytes = a.hash, a.end
			}
			if b.V != 1 || b.Chain != chain || b.Segment != n || b.FirstSeq != firstSeq || b.PrevHash != segPrev ||
				b.LastSeq+1 < firstSeq || b.Records != b.LastSeq+1-firstSeq || b.LastHash != wantHash || b.Bytes != wantBytes ||
				b.PrevDigest != prevDigest || b.KeyID != keyID {
				return 0, 0, fmt.Errorf("%s.digest line %d states %+v, which is not what the segment holds", name, i+1, b)
			}
			sum := sha256.Sum256(ln)
			prevDigest, last = hex.EncodeToString(sum[:]), b
		}
		if last.Bytes != int64(len(data)) || last.LastSeq != seq {
			return 0, 0, fmt.Errorf("%s: the last digest covers %d bytes up to record %d; the segment has %d bytes up to record %d", name, last.Bytes, last.LastSeq, len(data), seq)
		}
		if _, err := os.Stat(filepath.Join(dir, chain, fmt.Sprintf("%08d.jsonl", n+1))); err == nil && !last.Final {
			return 0, 0, fmt.Errorf("%s: a later segment exists but this one has no final digest", name)
		}
	}
	return records, segments, nil
}

func goldenKey(t *testing.T) ed25519.PublicKey {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", "golden.pub"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := pem.Decode(data)
	if b == nil || b.Type != "PUBLIC KEY" {
		t.Fatal("testdata/golden.pub is not a PEM PUBLIC KEY")
	}
	k, err := x509.ParsePKIXPublicKey(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	pub, ok := k.(ed25519.PublicKey)
	if !ok {
		t.Fatalf("golden key is %T", k)
	}
	return pub
}

// TestGoldenMatchesTheDescription: the committed golden chain verifies under the
// independent verifier, and the verifier refuses a copy with one record changed (so it
// can fail).
func TestGoldenMatchesTheDescription(t *testing.T) {
	pub := goldenKey(t)
	golden := filepath.Join("testdata", "golden")
	n, segs, err := verifySpec(golden, "gateway", pub)
	if err != nil {
		t.Fatalf("golden chain: %v", err)
	}
	if n != 4 || segs != 2 {
		t.Fatalf("golden chain holds %d records in %d segments, want 4 in 2", n, segs)
	}

	tampered := t.TempDir()
	if err := os.MkdirAll(filepath.Join(tampered, "gateway"), 0o755); err != nil {
		t.Fatal(err)
	}
	ents, err := os.ReadDir(filepath.Join(golden, "gateway"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		data, err := os.ReadFile(filepath.Join(golden, "gateway", e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if e.Name() == "00000001.jsonl" {
			data = bytes.Replace(data, []byte(`"eventName":"Invoke"`), []byte(`"eventName":"Invokf"`), 1)
		}
		if err := os.WriteFile(filepath.Join(tampered, "gateway", e.Name()), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := verifySpec(tampered, "gateway", pub); err == nil {
		t.Fatal("the independent verifier accepts a chain with a modified record")
	}
	_, other, _ := ed25519.GenerateKey(nil)
	if _, _, err := verifySpec(golden, "gateway", other.Public().(ed25519.PublicKey)); err == nil {
		t.Fatal("the independent verifier accepts the golden chain under another key")
	}
}
