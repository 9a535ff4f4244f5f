// Package audittest holds what tests of audit chains share: the ways an attacker who can
// write the audit directory destroys evidence, done to a chain on disk.
package audittest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// Tampering is one way to destroy evidence in a chain: Do applies it to chain in dir.
type Tampering struct {
	Name string
	Do   func(t testing.TB, dir, chain string)
	// Blind is true for what the chain alone (its digests) cannot show: only anchors do.
	Blind bool
}

// Tamperings are the cases: a chain cut back to an earlier digest, deleted,
// emptied, and replaced by a shorter valid one. replace writes that shorter chain (n
// records of chain in a fresh directory it returns), as an attacker holding the data
// directory's keys would.
func Tamperings(replace func(t testing.TB, chain string) string) []Tampering {
	return []Tampering{
		{Name: "cut back to an earlier digest", Do: func(t testing.TB, dir, chain string) { CutBack(t, filepath.Join(dir, chain)) }, Blind: true},
		{Name: "chain deleted", Do: func(t testing.TB, dir, chain string) { os.RemoveAll(filepath.Join(dir, chain)) }, Blind: true},
		{Name: "files emptied", Do: func(t testing.TB, dir, chain string) { EmptyNewest(t, filepath.Join(dir, chain)) }, Blind: true},
		{Name: "replaced by a shorter valid chain", Do: func(t testing.TB, dir, chain string) {
			Swap(t, filepath.Join(replace(t, chain), chain), filepath.Join(dir, chain))
		}, Blind: true},
	}
}

// digestLine is what the tamperings need of a digest line.
type digestLine struct {
	Digest struct {
		Bytes   int64  `json:"bytes"`
		Records uint64 `json:"records"`
	} `json:"digest"`
}

// Newest returns the number of the newest segment in the chain directory cdir.
func Newest(t testing.TB, cdir string) int {
	t.Helper()
	n := 0
	ents, _ := os.ReadDir(cdir)
	for _, e := range ents {
		var k int
		if _, err := fmt.Sscanf(e.Name(), "%08d.jsonl", &k); err == nil && k > n {
			n = k
		}
	}
	if n == 0 {
		t.Fatalf("no segment in %s", cdir)
	}
	return n
}

func segment(cdir string, n int) string { return filepath.Join(cdir, fmt.Sprintf("%08d.jsonl", n)) }
func digests(cdir string, n int) string { return filepath.Join(cdir, fmt.Sprintf("%08d.digest", n)) }

// CutBack cuts the chain in cdir back to the digest before its last: that digest's
// segment ends where it says, its digest file with it, and later segments go. What is
// left is a valid, shorter chain. The chain must have two digests that cover records.
func CutBack(t testing.TB, cdir string) {
	t.Helper()
	type point struct {
		seg   int
		bytes int64
		end   int // of the digest line in its file
	}
	var points []point
	newest := Newest(t, cdir)
	for n := 1; n <= newest; n++ {
		data, _ := os.ReadFile(digests(cdir, n))
		off := 0
		for _, ln := range bytes.SplitAfter(data, []byte("\n")) {
			off += len(ln)
			var d digestLine
			if json.Unmarshal(ln, &d) == nil && d.Digest.Records > 0 {
				points = append(points, point{n, d.Digest.Bytes, off})
			}
		}
	}
	if len(points) < 2 {
		t.Fatalf("fewer than two digests to cut back between in %s", cdir)
	}
	p := points[len(points)-2]
	for n := p.seg + 1; n <= newest; n++ {
		os.Remove(segment(cdir, n))
		os.Remove(digests(cdir, n))
	}
	if err := os.Truncate(segment(cdir, p.seg), p.bytes); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(digests(cdir, p.seg), int64(p.end)); err != nil {
		t.Fatal(err)
	}
}

// EmptyNewest empties both files of the newest segment of the chain in cdir.
func EmptyNewest(t testing.TB, cdir string) {
	t.Helper()
	n := Newest(t, cdir)
	if err := os.Truncate(segment(cdir, n), 0); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(digests(cdir, n), 0); err != nil {
		t.Fatal(err)
	}
}

// Swap puts the chain directory src in the place of dst, retrying while a running
// writer recreates dst under it, as an attacker would.
func Swap(t testing.TB, src, dst string) {
	t.Helper()
	os.Remove(filepath.Join(src, "lock"))
	var err error
	for range 100 {
		os.RemoveAll(dst)
		if err = os.Rename(src, dst); err == nil {
			return
		}
	}
	t.Fatal(err)
}
