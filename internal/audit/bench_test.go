package audit

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/phantom-perimeter/phantom/internal/requestid"
)

// BenchmarkRecord is the gateway's hot path: one typical event per request, from one
// caller and from 16 and 64 at once, with the default segment size and digest interval
// (so rotation, fsync and signing happen as in production, off the request path).
// writes/record is the number of write(2) calls to segments per record.
func BenchmarkRecord(b *testing.B) {
	b.Run("callers-1", func(b *testing.B) {
		l, writes := benchLog(b)
		ev := gatewayEvent(1)
		b.ReportAllocs()
		for b.Loop() {
			ev.EventID = ""
			if err := l.Record(context.Background(), ev); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(writes.Load())/float64(b.N), "writes/record")
	})
	for _, callers := range []int{16, 64} {
		b.Run(fmt.Sprintf("callers-%d", callers), func(b *testing.B) {
			l, writes := benchLog(b)
			// RunParallel starts parallelism × GOMAXPROCS goroutines.
			procs := runtime.GOMAXPROCS(0)
			b.SetParallelism((callers + procs - 1) / procs)
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
			b.ReportMetric(float64(writes.Load())/float64(b.N), "writes/record")
		})
	}
}

// benchLog opens a chain with the default segment size and digest interval, counting
// its segment writes.
func benchLog(b *testing.B) (*Log, *atomic.Int64) {
	l := openTest(b, b.TempDir(), "gateway", func(c *Config) { c.DigestInterval = 0 })
	b.Cleanup(func() { l.Close() })
	writes := new(atomic.Int64)
	l.mu.Lock()
	l.writeAt = func(f *os.File, p []byte, off int64) (int, error) {
		writes.Add(1)
		return f.WriteAt(p, off)
	}
	l.mu.Unlock()
	return l, writes
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

// BenchmarkAppendEvent is the gateway's event spelled as JSON (appendEvent), the part of
// Record that is not hashing or writing.
func BenchmarkAppendEvent(b *testing.B) {
	ev := gatewayEvent(1)
	ev.EventID, ev.EventVersion = requestid.New(), EventVersion
	ev.AdditionalEventData = map[string]any{"decision": "Allow", "authorizationType": "AWS_IAM"}
	var w eventWriter
	var line []byte
	b.ReportAllocs()
	for b.Loop() {
		line, _ = appendEvent(&w, line[:0], ev)
	}
	b.SetBytes(int64(len(line)))
}
