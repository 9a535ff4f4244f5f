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

// ReadReport is what ReadEvents read and what it could not.
type ReadReport struct {
	Files  int // files events were read from (wholly or in part)
	Events int
	// NotCloudTrail are files skipped because they hold JSON but no CloudTrail event (a
	// dataset's labels.json, a CloudTrail digest file).
	NotCloudTrail []string
	// Problems are the files that could not be read at all and the files some records of
	// which were left out.
	Problems []FileProblem
}

// FileProblem is a file, or records of one, that ReadEvents could not use.
type FileProblem struct {
	File string
	// Records is how many records of the file were left out; 0 when the whole file was.
	Records int
	Err     error // the file's error, or its first bad record's
}

func (p FileProblem) String() string {
	if p.Records == 0 {
		return fmt.Sprintf("%s: %v", p.File, p.Err)
	}
	return fmt.Sprintf("%s: %d record(s) left out, the first: %v", p.File, p.Records, p.Err)
}

// Unreadable counts the files not read at all and the records left out of the others.
func (r ReadReport) Unreadable() (files, records int) {
	for _, p := range r.Problems {
		if p.Records == 0 {
			files++
		}
		records += p.Records
	}
	return files, records
}

// ReadEvents reads CloudTrail events from path (a file, or a directory walked in name
// order, taking *.json, *.jsonl, *.ndjson, *.log and their .gz) and calls fn with each.
// A file may be CloudTrail's log-file format ({"Records":[...]}), a JSON array of events,
// JSON lines of events, or Phantom's audit chain records ({"event":{...},"seq":N} lines);
// gzipped or not (by content). An event without eventTime takes "@timestamp" (Logstash
// exports). Each file's events reach fn in eventTime order (CloudTrail files are not
// sorted, and windows and baselines need time order); files in name order (CloudTrail's
// names sort by time).
//
// Nothing unreadable stops the read: a file that cannot be read or parsed, and the
// records left out of a file (see ParseEvents), are in the report, as are files skipped
// for holding no CloudTrail event. The error is for a path that cannot be read at all,
// or fn's error, which stops the read.
func ReadEvents(path string, fn func(*audit.Event) error) (ReadReport, error) {
	var rep ReadReport
	st, err := os.Stat(path)
	if err != nil {
		return rep, fmt.Errorf("read events: %w", err)
	}
	files := []string{path}
	if st.IsDir() {
		files = files[:0]
		err = filepath.WalkDir(path, func(p string, e fs.DirEntry, err error) error {
			if err != nil {
				// An unreadable subdirectory is a problem, not the end of the walk.
				rep.Problems = append(rep.Problems, FileProblem{File: p, Err: err})
				if e != nil && e.IsDir() && p != path {
					return fs.SkipDir
				}
				return nil
			}
			if e.Type().IsRegular() && eventFileName(e.Name()) {
				files = append(files, p)
			}
			return nil
		})
		if err != nil {
			return rep, fmt.Errorf("read events in %s: %w", path, err)
		}
		slices.Sort(files)
	}
	// Parse ahead: up to two files are read and decoded on other goroutines while fn
	// takes the events of the one before (decoding dominates; with two cores it and the
	// rules overlap). fn still sees every event in file order, from this goroutine.
	type parsed struct {
		evs []*audit.Event
		bad []RecordError
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
				evs, bad, err := parseFile(f)
				results[i] <- parsed{evs, bad, err}
			}()
		}
	}()
	for i, file := range files {
		p := <-results[i]
		<-sem
		switch {
		case errors.Is(p.err, ErrNotCloudTrail):
			rep.NotCloudTrail = append(rep.NotCloudTrail, file)
			continue
		case p.err != nil:
			rep.Problems = append(rep.Problems, FileProblem{File: file, Err: p.err})
			continue
		case len(p.bad) > 0:
			rep.Problems = append(rep.Problems, FileProblem{File: file, Records: len(p.bad), Err: p.bad[0]})
		}
		rep.Files++
		for _, ev := range p.evs {
			rep.Events++
			if err := fn(ev); err != nil {
				return rep, err
			}
		}
	}
	return rep, nil
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

func parseFile(path string) ([]*audit.Event, []RecordError, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	data, err := readAll(f)
	if err != nil {
		return nil, nil, err
	}
	return ParseEvents(data)
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

// ErrNotCloudTrail is content that is JSON but holds no CloudTrail event: no value with
// an eventName (a dataset's labels.json, a CloudTrail digest file).
var ErrNotCloudTrail = errors.New("not CloudTrail: no event (a record with an eventName) in it")

// errNoEventName is a record, among events, that is not one.
var errNoEventName = errors.New("not a CloudTrail event: no eventName")

// RecordError is a record ParseEvents left out of a file.
type RecordError struct {
	Record int // 0-based, counting the file's events and other values in order
	Err    error
}

func (e RecordError) Error() string { return fmt.Sprintf("record %d: %v", e.Record, e.Err) }

// ParseEvents parses the (decompressed) content of one file, see ReadEvents, and returns
// its events sorted by eventTime (stable), and the records it left out: values that do
// not decode as an event (a field in a format CloudTrail does not write, such as another
// time layout) or that are not events (no eventName), and, after a syntax error, the
// rest of the file as one record. The error is for content whose first value is not JSON,
// or that holds no event at all (ErrNotCloudTrail).
func ParseEvents(data []byte) ([]*audit.Event, []RecordError, error) {
	data = bytes.TrimLeft(data, " \t\r\n\ufeff")
	if len(data) == 0 {
		return nil, nil, nil
	}
	out, err := fastParse(data)
	var bad []RecordError
	if err != nil || !allNamed(out) {
		if out, bad, err = slowParse(data); err != nil {
			return nil, nil, err
		}
	}
	slices.SortStableFunc(out, func(a, b *audit.Event) int { return a.EventTime.Compare(b.EventTime) })
	return out, bad, nil
}

func allNamed(evs []*audit.Event) bool {
	for _, ev := range evs {
		if ev.EventName == "" {
			return false
		}
	}
	return true
}

// slowParse is ParseEvents with encoding/json, for what fastParse leaves: each record is
// decoded on its own, so one bad record costs only itself.
func slowParse(data []byte) ([]*audit.Event, []RecordError, error) {
	var out []*audit.Event
	var bad []RecordError
	record, nonEvents := 0, 0
	take := func(raw json.RawMessage) {
		i := record
		record++
		w := new(wireEvent)
		if err := tolerant(json.Unmarshal(raw, w)); err != nil {
			bad = append(bad, RecordError{Record: i, Err: err})
			return
		}
		if w.EventName == "" {
			nonEvents++
			bad = append(bad, RecordError{Record: i, Err: errNoEventName})
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
	// broken ends the read at a syntax error: fatal on the first value, else the rest of
	// the file is one bad record.
	broken := func(err error) error {
		if record == 0 {
			return err
		}
		bad = append(bad, RecordError{Record: record, Err: fmt.Errorf("%w; the rest of the file is not read", err)})
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	if data[0] == '[' {
		if _, err := dec.Token(); err != nil {
			return nil, nil, err
		}
		for dec.More() {
			var raw json.RawMessage
			if err := dec.Decode(&raw); err != nil {
				if err := broken(err); err != nil {
					return nil, nil, err
				}
				break
			}
			take(raw)
		}
	} else {
		for {
			var raw json.RawMessage
			err := dec.Decode(&raw)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				if err := broken(err); err != nil {
					return nil, nil, err
				}
				break
			}
			// A log file ({"Records": [...]}), a chain record ({"event": {...}}) or an event.
			var v struct {
				Records *[]json.RawMessage `json:"Records"`
				Event   json.RawMessage    `json:"event"`
			}
			_ = json.Unmarshal(raw, &v) // a value of another shape is taken as an event below
			switch {
			case v.Records != nil:
				for _, r := range *v.Records {
					take(r)
				}
			case len(v.Event) > 0 && string(v.Event) != "null":
				take(v.Event)
			default:
				take(raw)
			}
		}
	}
	if len(out) == 0 && nonEvents > 0 && nonEvents == len(bad) {
		return nil, nil, ErrNotCloudTrail
	}
	return out, bad, nil
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
