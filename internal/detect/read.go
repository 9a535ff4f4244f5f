package detect

import (
	"bytes"
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
	"sync/atomic"
	"time"

	"github.com/klauspost/compress/gzip"

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
	sizes := []int64{st.Size()}
	if st.IsDir() {
		files, sizes = files[:0], sizes[:0]
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
		for _, f := range files {
			var n int64
			if st, err := os.Lstat(f); err == nil {
				n = st.Size()
			}
			sizes = append(sizes, n)
		}
	}
	// Parse ahead: parseWorkers goroutines read and decode the next batches of files,
	// each with its own buffers and decodeCache, while fn takes the events of the batch
	// before (decoding and the rules overlap on two cores). At most parseAhead batches
	// are decoded and not yet taken. A batch is consecutive files up to batchBytes: AWS
	// writes a file per account and region every five minutes, often of a few dozen
	// events, and handing each over on its own would cost as much in wake-ups as its
	// events in rules. fn still sees every event in file order, from this goroutine.
	type parsed struct {
		evs []*audit.Event
		bad []RecordError
		err error
	}
	type batch struct{ from, to int }
	var batches []batch
	for i := 0; i < len(files); {
		j, n := i+1, sizes[i]
		for j < len(files) && j-i < batchFiles && n+sizes[j] <= batchBytes {
			n += sizes[j]
			j++
		}
		batches = append(batches, batch{i, j})
		i = j
	}
	results := make([]chan []parsed, len(batches))
	for i := range results {
		results[i] = make(chan []parsed, 1)
	}
	tokens := make(chan struct{}, parseAhead)
	stop := make(chan struct{})
	defer close(stop)
	var next atomic.Int64
	for range min(parseWorkers, len(batches)) {
		go func() {
			fd := newFileDecoder()
			for {
				select {
				case tokens <- struct{}{}:
				case <-stop:
					return
				}
				i := int(next.Add(1) - 1)
				if i >= len(batches) {
					return
				}
				b := batches[i]
				out := make([]parsed, 0, b.to-b.from)
				for _, f := range files[b.from:b.to] {
					evs, bad, err := fd.parseFile(f)
					out = append(out, parsed{evs, bad, err})
				}
				results[i] <- out
			}
		}()
	}
	for i, b := range batches {
		ps := <-results[i]
		<-tokens
		for k, p := range ps {
			file := files[b.from+k]
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
	}
	return rep, nil
}

// ReadEvents' pipeline: decoding goroutines, batches decoded ahead of the rules, and
// the bounds of a batch (as stored: a gzipped batch of 256 KB holds about 2,000 events).
const (
	parseWorkers = 2
	parseAhead   = 4
	batchBytes   = 256 << 10
	batchFiles   = 64
)

func eventFileName(name string) bool {
	name = strings.TrimSuffix(strings.ToLower(name), ".gz")
	for _, ext := range []string{".json", ".jsonl", ".ndjson", ".log"} {
		if strings.HasSuffix(name, ext) {
			return true
		}
	}
	return false
}

// fileDecoder reads and decodes files one after another, keeping its buffers, gzip
// reader and decodeCache from one to the next: AWS delivers a trail as many small files
// (one per account, region and five minutes), whose set-up would otherwise cost as much
// as their events.
type fileDecoder struct {
	raw, plain []byte
	zr         *gzip.Reader
	cache      *decodeCache
}

func newFileDecoder() *fileDecoder { return &fileDecoder{cache: newDecodeCache()} }

func (d *fileDecoder) parseFile(path string) ([]*audit.Event, []RecordError, error) {
	data, err := d.read(path)
	if err != nil {
		return nil, nil, err
	}
	evs, bad, err := parseEvents(data, d.cache)
	// The events hold copies of what they took from data: the buffers can be reused,
	// unless a rare large file made them too large to keep.
	if cap(d.plain) > maxKeptBuffer {
		d.plain = nil
	}
	if cap(d.raw) > maxKeptBuffer {
		d.raw = nil
	}
	return evs, bad, err
}

// maxKeptBuffer is the largest buffer a fileDecoder keeps for the next file.
const maxKeptBuffer = 64 << 20

// read reads a file, gunzipping it when it starts with gzip's magic number.
func (d *fileDecoder) read(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if d.raw, err = readInto(d.raw[:0], f, fileSize(f)); err != nil {
		return nil, err
	}
	raw := d.raw
	if len(raw) < 2 || raw[0] != 0x1f || raw[1] != 0x8b {
		return raw, nil
	}
	if d.zr == nil {
		d.zr = new(gzip.Reader)
	}
	if err := d.zr.Reset(bytes.NewReader(raw)); err != nil {
		return nil, err
	}
	// gzip's trailer holds the (last member's) size modulo 2^32: a hint for the buffer.
	hint := int64(0)
	if len(raw) >= 18 {
		hint = int64(binary.LittleEndian.Uint32(raw[len(raw)-4:]))
	}
	if d.plain, err = readInto(d.plain[:0], d.zr, hint); err != nil {
		return nil, err
	}
	return d.plain, nil
}

func fileSize(f *os.File) int64 {
	if st, err := f.Stat(); err == nil {
		return st.Size()
	}
	return 0
}

// readInto appends r's content to buf, sized up front for hint bytes so a large file is
// not copied over and over as it grows; more than maxFileBytes is an error.
func readInto(buf []byte, r io.Reader, hint int64) ([]byte, error) {
	if hint <= 0 || hint > maxFileBytes {
		hint = 512
	}
	if int64(cap(buf)) < hint+bytes.MinRead {
		buf = make([]byte, 0, hint+bytes.MinRead)
	}
	b := bytes.NewBuffer(buf)
	if _, err := b.ReadFrom(io.LimitReader(r, maxFileBytes+1)); err != nil {
		return b.Bytes(), err
	}
	if b.Len() > maxFileBytes {
		return b.Bytes()[:0], fmt.Errorf("more than %d bytes", maxFileBytes)
	}
	return b.Bytes(), nil
}

// wireEvent is an event as files carry it: CloudTrail's fields, with an eventTime in
// CloudTrail's layout or Panther's, plus Logstash's time.
type wireEvent struct {
	audit.Event
	EventTime fileTime `json:"eventTime"` // shadows Event's
	Timestamp string   `json:"@timestamp"`
}

// finish is the event w decoded: its eventTime, else its @timestamp.
func (w *wireEvent) finish() *audit.Event {
	ev := &w.Event
	ev.EventTime = time.Time(w.EventTime)
	if ev.EventTime.IsZero() && w.Timestamp != "" {
		if t, err := time.Parse(time.RFC3339Nano, w.Timestamp); err == nil {
			ev.EventTime = t
		}
	}
	return ev
}

// fileTime is an eventTime as files carry it: RFC 3339, as CloudTrail writes it, or
// Panther's "2006-01-02 15:04:05.000000000", the layout of events exported from
// Panther's data lake and of its rule tests, which Panther normalises to UTC
// (panther-labs/panther, pantherlog timestamps: "ensure UTC"; its docs' Standard
// Fields: p_event_time "normalized to UTC").
type fileTime time.Time

func (t *fileTime) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		return nil
	}
	v, err := parseTime(b, true)
	if err != nil {
		return err
	}
	*t = fileTime(v)
	return nil
}

// pantherLayout is Panther's time layout (fractional seconds, of any length, optional).
const pantherLayout = time.DateTime

// parseTime reads an eventTime's JSON text (quotes included) as encoding/json reads a
// time.Time, strict RFC 3339, and, when files, Panther's layout as UTC.
func parseTime(q []byte, files bool) (time.Time, error) {
	if t, ok := quickTime(q); ok {
		return t, nil
	}
	var t time.Time
	err := t.UnmarshalJSON(q)
	if err == nil || !files {
		return t, err
	}
	if len(q) >= 2 && q[0] == '"' && q[len(q)-1] == '"' {
		if t, err := time.Parse(pantherLayout, string(q[1:len(q)-1])); err == nil {
			return t, nil
		}
	}
	if len(q) > 48 {
		q = append(q[:45:45], "..."...)
	}
	return time.Time{}, fmt.Errorf("eventTime %s is neither RFC 3339 (CloudTrail's layout) nor Panther's %q (UTC)", q, "2006-01-02 15:04:05.000000000")
}

// quickTime reads the layout CloudTrail writes, "2006-01-02T15:04:05Z", without
// time.Parse; ok false for anything else (time.Parse decides).
func quickTime(q []byte) (time.Time, bool) {
	if len(q) != 22 || q[0] != '"' || q[5] != '-' || q[8] != '-' || q[11] != 'T' || q[14] != ':' || q[17] != ':' || q[20] != 'Z' || q[21] != '"' {
		return time.Time{}, false
	}
	num := func(i, n int) int {
		v := 0
		for _, c := range q[i : i+n] {
			if c < '0' || c > '9' {
				return -1
			}
			v = v*10 + int(c-'0')
		}
		return v
	}
	y, mo, d, h, mi, s := num(1, 4), num(6, 2), num(9, 2), num(12, 2), num(15, 2), num(18, 2)
	if y < 0 || mo < 1 || mo > 12 || d < 1 || h < 0 || h > 23 || mi < 0 || mi > 59 || s < 0 || s > 59 {
		return time.Time{}, false
	}
	t := time.Date(y, time.Month(mo), d, h, mi, s, 0, time.UTC)
	return t, t.Day() == d // not a day past the month's end
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
// not decode as an event (a field in a format CloudTrail does not write, such as a time
// layout other than CloudTrail's RFC 3339 and Panther's, see fileTime) or that are not
// events (no eventName), and, after a syntax error, the rest of the file as one record.
// The error is for content whose first value is not JSON, or that holds no event at all
// (ErrNotCloudTrail). Events of one session may share their sessionContext and
// tlsDetails: they are read-only.
func ParseEvents(data []byte) ([]*audit.Event, []RecordError, error) {
	return parseEvents(data, newDecodeCache())
}

func parseEvents(data []byte, c *decodeCache) ([]*audit.Event, []RecordError, error) {
	data = bytes.TrimLeft(data, " \t\r\n\ufeff")
	if len(data) == 0 {
		return nil, nil, nil
	}
	out, err := fastParse(data, c)
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
		out = append(out, w.finish())
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
