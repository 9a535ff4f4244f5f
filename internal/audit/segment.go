package audit

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

const (
	segmentExt = ".jsonl"
	digestExt  = ".digest"
	keyFile    = "signer.pub"
	certFile   = "signers.pem"
	prunedFile = "pruned.json"
	lockFile   = "lock"
)

var chainName = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)

// ValidChain reports whether name can name a chain: [a-z0-9-]+, at most 63 characters,
// not starting with '-'. It is a directory name, so nothing else is allowed.
func ValidChain(name string) bool { return chainName.MatchString(name) }

func segmentName(n uint64) string { return fmt.Sprintf("%08d%s", n, segmentExt) }
func digestName(n uint64) string  { return fmt.Sprintf("%08d%s", n, digestExt) }

// chainFiles lists the segment numbers that have a segment file and those that have a
// digest file in a chain directory, each ascending. Other files are returned in other.
func chainFiles(fsys fs.FS, dir string) (segs, digs []uint64, other []string, err error) {
	ents, err := fs.ReadDir(fsys, dir)
	if err != nil {
		return nil, nil, nil, err
	}
	for _, e := range ents {
		name := e.Name()
		var ext string
		switch {
		case strings.HasSuffix(name, segmentExt):
			ext = segmentExt
		case strings.HasSuffix(name, digestExt):
			ext = digestExt
		default:
			if name != keyFile && name != certFile && name != lockFile && name != prunedFile {
				other = append(other, name)
			}
			continue
		}
		n, perr := strconv.ParseUint(strings.TrimSuffix(name, ext), 10, 64)
		if perr != nil || n == 0 || name != fmt.Sprintf("%08d%s", n, ext) {
			other = append(other, name)
			continue
		}
		if ext == segmentExt {
			segs = append(segs, n)
		} else {
			digs = append(digs, n)
		}
	}
	slices.Sort(segs)
	slices.Sort(digs)
	return segs, digs, other, nil
}

// line is one line of a segment or digest file.
type line struct {
	No    int   // 1-based line number
	Start int64 // byte offset of its first byte
	End   int64 // byte offset just past its newline (or past the data when Partial)
	Text  []byte
	// Partial: the file ends without a newline after this line.
	Partial bool
}

// splitLines splits data into lines; a final line without a newline is Partial.
func splitLines(data []byte) []line {
	var out []line
	var off int64
	for n := 1; len(data) > 0; n++ {
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			out = append(out, line{No: n, Start: off, End: off + int64(len(data)), Text: data, Partial: true})
			break
		}
		out = append(out, line{No: n, Start: off, End: off + int64(i) + 1, Text: data[:i]})
		off += int64(i) + 1
		data = data[i+1:]
	}
	return out
}

// readDigests parses a digest file. A last line that is partial or does not parse is
// returned as torn (a crash while it was written); any other bad line is an error.
func readDigests(path string) (ds []*digest, lines []line, torn *line, err error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, nil, err
	}
	lines = splitLines(data)
	for i := range lines {
		l := &lines[i]
		d, perr := parseDigest(l.Text)
		if perr == nil && !l.Partial {
			ds = append(ds, d)
			continue
		}
		if i == len(lines)-1 {
			return ds, lines, l, nil
		}
		if perr == nil {
			perr = errors.New("partial line")
		}
		return ds, lines, nil, fmt.Errorf("%s line %d: %w", filepath.Base(path), l.No, perr)
	}
	return ds, lines, nil, nil
}
