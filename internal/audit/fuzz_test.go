package audit

import (
	"bytes"
	"crypto/ed25519"
	"maps"
	"os"
	"path/filepath"
	"testing"
	"testing/fstest"
	"time"
)

// FuzzParseRecord: the parser never panics, and every line it accepts is exactly the line
// the writer produces for those values — there is one spelling of a record, so a line
// cannot be changed and still parse as the same record.
func FuzzParseRecord(f *testing.F) {
	line, _ := appendRecord(nil, "gateway", 1, zeroHash, []byte(`{"eventName":"Invoke"}`))
	f.Add(bytes.TrimSuffix(line, []byte("\n")))
	f.Add([]byte(`{"seq":01,"prev":"` + zeroHash + `","event":{},"hash":"` + zeroHash + `"}`))
	f.Add([]byte(`{"seq":1,"prev":"","event":{},"hash":""}`))
	f.Add([]byte(`{"seq":18446744073709551616,"prev":"x`))
	f.Add([]byte{})
	// And every line of the golden chain.
	segs, _ := filepath.Glob(filepath.Join("testdata", "golden", "gateway", "*"+segmentExt))
	for _, seg := range segs {
		data, err := os.ReadFile(seg)
		if err != nil {
			f.Fatal(err)
		}
		for _, ln := range splitLines(data) {
			f.Add(ln.Text)
		}
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		r, err := ParseRecord("gateway", line)
		if err != nil {
			return
		}
		again, h := appendRecord(nil, "gateway", r.Seq, r.Prev, r.Event)
		if !bytes.Equal(again, append(bytes.Clone(line), '\n')) || h != r.Hash {
			t.Fatalf("accepted a non-canonical line:\n%q\nwriter would write\n%q", line, again)
		}
	})
}

// FuzzParseDigest: never panics; a parsed digest whose signature verifies has exactly the
// body that was signed.
func FuzzParseDigest(f *testing.F) {
	key := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{3}, 32))
	body := digestBody{Version: 1, Chain: "gateway", Segment: 1, FirstSeq: 1, PrevHash: zeroHash, LastHash: zeroHash, Time: time.Unix(0, 0).UTC()}
	line, _, _ := appendDigest(nil, key, &body)
	f.Add(bytes.TrimSuffix(line, []byte("\n")))
	f.Add([]byte(`{"digest":{},"sig":""}`))
	f.Fuzz(func(t *testing.T, line []byte) {
		d, err := parseDigest(line)
		if err != nil {
			return
		}
		if d.verifySig([]ed25519.PublicKey{key.Public().(ed25519.PublicKey)}) && d.digestBody != body {
			t.Fatalf("a verified digest says %+v, the signed one %+v", d.digestBody, body)
		}
	})
}

// FuzzVerify replaces a signed segment's bytes with arbitrary ones: Verify never panics,
// and passes only when every record the digests sign is still there byte for byte
// (anything after them is a torn tail or records not yet signed, which it reports).
// Each run checks Ed25519 signatures, slow under coverage instrumentation: minimizing a
// new input takes the default minute, so run it with -fuzzminimizetime 3s.
func FuzzVerify(f *testing.F) {
	tmpl := f.TempDir()
	key := testSigner(f)
	l, err := Open(Config{Dir: tmpl, Chain: "gateway", Signer: key, DigestInterval: time.Hour})
	if err != nil {
		f.Fatal(err)
	}
	writeN(f, l, 0, 3)
	l.Close()
	seg := filepath.Join(tmpl, "gateway", segmentName(1))
	orig, err := os.ReadFile(seg)
	if err != nil {
		f.Fatal(err)
	}
	lines := bytes.SplitAfter(orig, []byte("\n"))
	f.Add(orig)
	f.Add(orig[:len(orig)-1])
	f.Add(append(bytes.Clone(orig), `{"seq":4`...))
	f.Add(bytes.Join([][]byte{lines[1], lines[0], lines[2]}, nil))
	f.Add(bytes.Replace(orig, []byte("Invoke"), []byte("invoke"), 1))
	f.Add([]byte{})
	opts := VerifyOptions{PublicKeys: []ed25519.PublicKey{key.Public().(ed25519.PublicKey)}}
	fsys := fstest.MapFS{}
	for _, name := range []string{digestName(1), keyFile} {
		b, err := os.ReadFile(filepath.Join(tmpl, "gateway", name))
		if err != nil {
			f.Fatal(err)
		}
		fsys["gateway/"+name] = &fstest.MapFile{Data: b, Mode: 0o600}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		// In memory: the fuzzer runs Verify, not the disk.
		m := maps.Clone(fsys)
		m["gateway/"+segmentName(1)] = &fstest.MapFile{Data: data, Mode: 0o600}
		rep, err := verifyFS(m, "audit", opts)
		if err != nil {
			t.Fatal(err)
		}
		if rep.OK() && !bytes.HasPrefix(data, orig) {
			t.Fatalf("verification passed a modified segment:\n%q", data)
		}
	})
}
