package audit

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/phantom-perimeter/phantom/internal/requestid"
)

// BenchmarkRecord is the gateway's hot path: one typical event per request from many
// goroutines, with the default segment size and digest interval (so rotation, fsync and
// signing happen as in production, off the request path).
func BenchmarkRecord(b *testing.B) {
	l := openTest(b, b.TempDir(), "gateway", func(c *Config) { c.DigestInterval = 0 })
	defer l.Close()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		ev := gatewayEvent(1)
		for pb.Next() {
			ev.EventID = ""
			if err := l.Record(context.Background(), ev); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkRecordBaseline is what the chain costs against: the same event given an ID,
// marshalled with encoding/json and written with one write(2) under a mutex to an
// O_APPEND file, with no hash, chain, digest or rotation. Record's ns/op over this one's
// is the price of tamper evidence.
func BenchmarkRecordBaseline(b *testing.B) {
	f, err := os.OpenFile(filepath.Join(b.TempDir(), "plain.jsonl"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	var mu sync.Mutex
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		ev := gatewayEvent(1)
		for pb.Next() {
			ev.EventID = requestid.New()
			line, err := json.Marshal(ev)
			if err != nil {
				b.Error(err)
				return
			}
			line = append(line, '\n')
			mu.Lock()
			_, err = f.Write(line)
			mu.Unlock()
			if err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkVerify is how fast `phantom audit verify` reads a chain.
func BenchmarkVerify(b *testing.B) {
	dir := b.TempDir()
	l := openTest(b, dir, "gateway", nil)
	writeN(b, l, 0, 10000)
	l.Close()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		rep, err := Verify(dir, VerifyOptions{})
		if err != nil || !rep.OK() {
			b.Fatal(err, rep.Problems)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/10000, "ns/record")
}

// BenchmarkVerifyAnchored is BenchmarkVerify with what `phantom audit verify` checks on
// a data directory: keys certified by the CA, and the anchor of every digest.
func BenchmarkVerifyAnchored(b *testing.B) {
	dir, ca, m := b.TempDir(), newPerimeterCA(b), &memAnchors{}
	key, cert := ca.writer(b, "gateway")
	l := openTest(b, dir, "gateway", func(c *Config) {
		c.Signer, c.Certificate, c.Anchors = key, cert, []AnchorStore{m}
		c.SegmentBytes = 1 << 20
	})
	for i := range 10 {
		writeN(b, l, i*1000, 1000)
		l.checkpoint() // a digest, and its anchor, every 1000 records
		l.flushAnchors()
	}
	l.Close()
	opts := VerifyOptions{Signers: ca, Anchors: m.set()}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		rep, err := Verify(dir, opts)
		if err != nil || !rep.OK() {
			b.Fatal(err, rep.Problems)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/10000, "ns/record")
}
