package detect

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/phantom-perimeter/phantom/internal/audit"
)

// maxFileBytes bounds one (decompressed) input file: CloudTrail delivers files of a few
// MB; an input past this is refused rather than read into memory.
const maxFileBytes = 1 << 30

// ReadEvents reads CloudTrail events from path (a file, or a directory walked in name
// order, taking *.json, *.jsonl, *.ndjson, *.log and their .gz) and calls fn with each.
// A file may be CloudTrail's log-file format ({"Records":[...]}), a JSON array of events,
// JSON lines of events, or Phantom's audit chain records ({"event":{...},"seq":N} lines);
// gzipped or not (by content). An event without eventTime takes "@timestamp" (Logstash
// exports). Each file's events reach fn in eventTime order (CloudTrail files are not
// sorted, and windows and baselines need time order); files in name order (CloudTrail's
// names sort by time). fn's error stops the read and is returned.
func ReadEvents(path string, fn func(*audit.Event) error) error {
	st, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("read events: %w", err)
	}
	if !st.IsDir() {
		return readFile(path, fn)
	}
	var files []string
	err = filepath.WalkDir(path, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if e.Type().IsRegular() && eventFileName(e.Name()) {
			files = append(files, p)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("read events in %s: %w", path, err)
	}
	slices.Sort(files)
	// Parse ahead: up to two files are read and decoded on other goroutines while fn
	// takes the events of the one before (decoding dominates; with two cores it and the
	// rules overlap). fn still sees every event in file order, from this goroutine.
	type parsed struct {
		evs []*audit.Event
		err error
	}
	const workers = 2
	results := make([]chan parsed, len(files))
	for i := range results {
		results[i] = make(chan parsed, 1)
	}
	sem := make(chan struct{}, workers)
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for i, f := range files {
			select {
			case sem <- struct{}{}:
			case <-stop:
				return
			}
			go func() {
				evs, err := parseFile(f)
				results[i] <- parsed{evs, err}
			}()
		}
	}()
	for i := range files {
		p := <-results[i]
		<-sem
		if p.err != nil {
			return p.err
		}
		for _, ev := range p.evs {
			if err := fn(ev); err != nil {
				return err
			}
		}
	}
	return nil
}

func eventFileName(name string) bool {
	name = strings.TrimSuffix(strings.ToLower(name), ".gz")
	for _, ext := range []string{".json", ".jsonl", ".ndjson", ".log"} {
		if strings.HasSuffix(name, ext) {
			return true
		}
	}
	return false
}

func parseFile(path string) ([]*audit.Event, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read events: %w", err)
	}
	defer f.Close()
	data, err := readAll(f)
	if err != nil {
		return nil, fmt.Errorf("read events from %s: %w", path, err)
	}
	evs, err := ParseEvents(data)
	if err != nil {
		return nil, fmt.Errorf("read events from %s: %w", path, err)
	}
	return evs, nil
}

func readFile(path string, fn func(*audit.Event) error) error {
	evs, err := parseFile(path)
	if err != nil {
		return err
	}
	for _, ev := range evs {
		if err := fn(ev); err != nil {
			return err
		}
	}
	return nil
}

// readAll reads a file, gunzipping it when it starts with gzip's magic number. The
// buffer is sized up front (the file's size, or gzip's ISIZE trailer) so a large file is
// not copied over and over as it grows.
func readAll(f *os.File) ([]byte, error) {
	var size int64
	if st, err := f.Stat(); err == nil {
		size = st.Size()
	}
	var magic [2]byte
	n, _ := io.ReadFull(f, magic[:])
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	var r io.Reader = f
	if n == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		var isize [4]byte
		hint := int64(0)
		if size >= 18 {
			if _, err := f.ReadAt(isize[:], size-4); err == nil {
				hint = int64(binary.LittleEndian.Uint32(isize[:]))
			}
		}
		zr, err := gzip.NewReader(bufio.NewReaderSize(f, 64*1024))
		if err != nil {
			return nil, err
		}
		defer zr.Close()
		r, size = zr, hint
	}
	if size <= 0 || size > maxFileBytes {
		size = 512
	}
	buf := bytes.NewBuffer(make([]byte, 0, size+bytes.MinRead))
	if _, err := buf.ReadFrom(io.LimitReader(r, maxFileBytes+1)); err != nil {
		return nil, err
	}
	if buf.Len() > maxFileBytes {
		return nil, fmt.Errorf("more than %d bytes", maxFileBytes)
	}
	return buf.Bytes(), nil
}

// wireEvent is an event as files carry it: CloudTrail's fields plus Logstash's time.
type wireEvent struct {
	audit.Event
	Timestamp string `json:"@timestamp"`
}

// wireValue is any top-level value of a file: a log file, a chain record or an event.
type wireValue struct {
	wireEvent
	Records []*wireEvent `json:"Records"`
	Inner   *wireEvent   `json:"event"`
}

// ParseEvents parses the (decompressed) content of one file, see ReadEvents, and returns
// its events sorted by eventTime (stable).
func ParseEvents(data []byte) ([]*audit.Event, error) {
	data = bytes.TrimLeft(data, " \t\r\n\ufeff")
	if len(data) == 0 {
		return nil, nil
	}
	out, err := fastParse(data)
	if err != nil {
		if out, err = slowParse(data); err != nil {
			return nil, err
		}
	}
	slices.SortStableFunc(out, func(a, b *audit.Event) int { return a.EventTime.Compare(b.EventTime) })
	return out, nil
}

// slowParse is ParseEvents with encoding/json, for what fastParse leaves.
func slowParse(data []byte) ([]*audit.Event, error) {
	var out []*audit.Event
	add := func(w *wireEvent) {
		if w == nil {
			return
		}
		ev := &w.Event
		if ev.EventTime.IsZero() && w.Timestamp != "" {
			if t, err := time.Parse(time.RFC3339Nano, w.Timestamp); err == nil {
				ev.EventTime = t
			}
		}
		out = append(out, ev)
	}
	if len(data) == 0 {
		return nil, nil
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	if data[0] == '[' {
		if _, err := dec.Token(); err != nil {
			return nil, err
		}
		for i := 0; dec.More(); i++ {
			w := new(wireEvent)
			if err := tolerant(dec.Decode(w)); err != nil {
				return nil, fmt.Errorf("event %d: %w", i, err)
			}
			add(w)
		}
		if _, err := dec.Token(); err != nil {
			return nil, err
		}
	} else {
		for i := 0; ; i++ {
			v := new(wireValue)
			err := dec.Decode(v)
			if errors.Is(err, io.EOF) {
				break
			}
			if err := tolerant(err); err != nil {
				return nil, fmt.Errorf("record %d: %w", i, err)
			}
			switch {
			case v.Records != nil:
				for _, w := range v.Records {
					add(w)
				}
			case v.Inner != nil:
				add(v.Inner)
			default:
				add(&v.wireEvent)
			}
		}
	}
	return out, nil
}

// tolerant lets a field of an unexpected JSON type pass (it is left empty): real logs
// carry fields whose type changed across CloudTrail versions. Syntax errors still fail.
func tolerant(err error) error {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return nil
	}
	return err
}
