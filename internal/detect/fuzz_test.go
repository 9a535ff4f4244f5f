package detect

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/phantom-perimeter/phantom/internal/audit"
	"github.com/phantom-perimeter/phantom/internal/detect/sigma"
	"github.com/phantom-perimeter/phantom/internal/testenv"
)

func fuzzSeeds(f *testing.F) {
	f.Add([]byte(`{"Records":[{"eventTime":"2026-11-01T09:00:00Z","eventName":"ListBuckets","userIdentity":{"type":"IAMUser","arn":"arn:aws:iam::1:user/a"}}]}`))
	f.Add([]byte(`[{"@timestamp":"2020-09-14T00:44:23.000Z","eventName":"GetObject","requestParameters":{"bucketName":"b"}}]`))
	f.Add([]byte("{\"seq\":1,\"event\":{\"eventName\":\"AuditLogRecovered\",\"eventSource\":\"audit.phantom.internal\"}}\n{\"eventName\":\"x\"}\n"))
	f.Add([]byte(`{"eventName":"Invoke","sourceIPAddress":"10.0.0.1","additionalEventData":{"sessionBinding":{"privateIp":"10.0.0.2","vpcEndpointId":"vpce-1"}},"userIdentity":{"type":"AssumedRole","arn":"arn:aws:sts::1:assumed-role/r/i-0123456789abcdef0","sessionContext":{"ec2RoleDelivery":"2.0"}}}`))
	dirs := []string{"testdata"}
	if d, ok := testenv.SharedOptional(f, datasetsRel+"/panther-analysis/scenarios/compromised-root-creds"); ok {
		dirs = append(dirs, d)
	}
	for _, dir := range dirs {
		files, _ := filepath.Glob(filepath.Join(dir, "*.json*"))
		for _, file := range files {
			if data, err := os.ReadFile(file); err == nil && len(data) < 64*1024 {
				f.Add(data)
			}
		}
	}
}

// FuzzReadEvents: any bytes either parse or fail cleanly, and what parses feeds the
// detector without a panic; the reader of a file agrees with ParseEvents.
func FuzzReadEvents(f *testing.F) {
	fuzzSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		evs, bad, err := ParseEvents(data)
		if err != nil {
			return
		}
		d, _ := New(Config{LearningPeriod: time.Nanosecond})
		for i, ev := range evs {
			if ev == nil {
				t.Fatalf("event %d is nil", i)
			}
			for _, fd := range d.Observe(ev) {
				if fd.Severity < 1 || fd.Severity > 8.9 || len(fd.ID) != 32 {
					t.Fatalf("bad finding %+v", fd)
				}
			}
		}
		p := filepath.Join(t.TempDir(), "x.json")
		os.WriteFile(p, data, 0o600)
		n := 0
		rep, err := ReadEvents(p, func(*audit.Event) error { n++; return nil })
		if err != nil || n != len(evs) || rep.Events != n {
			t.Fatalf("ReadEvents: %d events, %v; ParseEvents: %d", n, err, len(evs))
		}
		if _, records := rep.Unreadable(); records != len(bad) {
			t.Fatalf("ReadEvents left out %d records, ParseEvents %d", records, len(bad))
		}
		for _, ev := range evs {
			if ev.EventName == "" {
				t.Fatal("an event without eventName")
			}
		}
	})
}

// FuzzObserve: any event JSON, fed twice, never panics and a repeat never makes a new
// finding id.
func FuzzObserve(f *testing.F) {
	fuzzSeeds(f)
	// Sigma rules using every kind of field and modifier run on every input too.
	var rules []*sigma.Rule
	for i, det := range []string{
		"  s:\n    requestParameters|contains|all: ['\"a\"', '*b?']\n  f:\n    userIdentity.arn|re: '.+:assumed-role/.+'\n  condition: s or not f\n",
		"  s:\n    errorCode: null\n    requestParameters.x.y|base64offset|contains: abc\n  condition: s\n",
		"  s:\n    sourceIPAddress|cidr: 10.0.0.0/8\n    requestParameters.n|gt: 3\n  t:\n    userIdentity.userName|fieldref: requestParameters.userName\n  condition: 1 of them\n",
		"  s:\n    eventName|startswith: Get\n    additionalEventData.MFAUsed|exists: true\n    userIdentity.sessionContext.attributes.mfaAuthenticated: 'false'\n  condition: s\n",
	} {
		r, err := sigma.Parse([]byte(fmt.Sprintf("title: r%d\nid: r%d\nlogsource:\n  product: aws\n  service: cloudtrail\ndetection:\n%s", i, i, det)))
		if err != nil {
			f.Fatal(err)
		}
		rules = append(rules, r)
	}
	set := newLoadedSigma(sigma.NewSet("fuzz", rules, nil))
	f.Fuzz(func(t *testing.T, data []byte) {
		var ev audit.Event
		if err := json.Unmarshal(data, &ev); err != nil {
			return
		}
		d, _ := New(Config{})
		d.sigma.Store(set)
		first := map[string]bool{}
		for _, fd := range d.Observe(&ev) {
			first[fd.ID] = true
		}
		for _, fd := range d.Observe(&ev) {
			if !first[fd.ID] && fd.Type != TypeAccessDenied && fd.Type != TypeBruteForce {
				t.Fatalf("repeat made a new finding %s", fd.Type)
			}
		}
		if _, err := json.Marshal(d.Findings()); err != nil && !bytes.Contains(data, []byte("NaN")) {
			t.Fatalf("findings do not marshal: %v", err)
		}
	})
}

// FuzzFastParse: whenever the fast decoder accepts input whose values are all events
// (what ParseEvents takes from it), encoding/json decodes it to the same events.
func FuzzFastParse(f *testing.F) {
	fuzzSeeds(f)
	f.Add([]byte(`{"Records":[{"eventName":"a","EventName":"b"}]}`))
	f.Add([]byte(`[{"eventName":"x","requestParameters":{"a":[1,2.5e3,"x\u00e9",null,true,{}]},"readOnly":true,"tlsDetails":{"tlsVersion":"TLSv1.3"}}]`))
	f.Add([]byte(`[{"eventName":"x","eventTime":"2025-01-21 17:49:47.000000000","userIdentity":{"type":"Root","x":[{"y":"\u00e9\n"},-0.5e-3]}},` +
		`{"eventName":"y","eventTime":"2024-02-29T23:59:59Z","userIdentity":{"type":"Root","x":[{"y":"\u00e9\n"},-0.5e-3]}}]`))
	// One cache for every input, as a reader keeps one from file to file: what an
	// earlier input left in it must not change what a later one decodes to.
	var mu sync.Mutex
	cache := newDecodeCache()
	f.Fuzz(func(t *testing.T, data []byte) {
		data = bytes.TrimLeft(data, " \t\r\n\ufeff")
		if len(data) == 0 {
			return
		}
		mu.Lock()
		fast, err := fastParse(data, cache)
		mu.Unlock()
		if err != nil || !allNamed(fast) {
			return
		}
		slow, bad, err := slowParse(data)
		if err != nil || len(bad) > 0 {
			t.Fatalf("fast decoder accepted what encoding/json refuses (%v, %v)", err, bad)
		}
		if !reflect.DeepEqual(fast, slow) {
			a, _ := json.Marshal(fast)
			b, _ := json.Marshal(slow)
			t.Fatalf("decoders differ:\nfast %s\nslow %s", a, b)
		}
	})
}

// TestFastParseDatasets: the fast decoder takes every real file of the evaluation set
// (and the benchmark's) and agrees with encoding/json on each; without ../shared, the
// benchmark's only.
func TestFastParseDatasets(t *testing.T) {
	var files []string
	datasets, ok := testenv.SharedOptional(t, datasetsRel)
	if ok {
		filepath.WalkDir(datasets, func(p string, e os.DirEntry, err error) error {
			if err == nil && !e.IsDir() && eventFileName(e.Name()) && !strings.HasSuffix(p, "labels.json") && !strings.HasSuffix(p, "summary.json") {
				files = append(files, p)
			}
			return nil
		})
	}
	bench, _ := json.Marshal(map[string]any{"Records": benchEvents(200)})
	inputs := map[string][]byte{"bench": bench}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		inputs[f] = data
	}
	fastFiles := 0
	for name, data := range inputs {
		data = bytes.TrimLeft(data, " \t\r\n\ufeff")
		fast, err := fastParse(data, newDecodeCache())
		if err != nil {
			t.Logf("%s: fast decoder declined (%v)", name, err)
			continue
		}
		fastFiles++
		if !allNamed(fast) {
			continue // ParseEvents takes such files through slowParse
		}
		slow, bad, err := slowParse(data)
		if err != nil || len(bad) > 0 || !reflect.DeepEqual(fast, slow) {
			t.Errorf("%s: decoders differ (%v, %v)", name, err, bad)
		}
	}
	if ok && len(files) == 0 {
		t.Fatalf("no event files under %s", datasets)
	}
	if fastFiles < len(inputs)-2 {
		t.Errorf("fast decoder took %d of %d files", fastFiles, len(inputs))
	}
}

// TestFastParseGenerated: on generated trails (the benign soak dressed as CloudTrail
// writes it, files of five minutes, and the benchmark's events) decoded file after file
// with one cache, as ReadEvents decodes them, the fast decoder gives what encoding/json
// gives: events that share a cached identity, tlsDetails or parameters are equal to
// those decoded alone.
func TestFastParseGenerated(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	recs := trailRecords(soak(3), r)
	var files [][]byte
	for i := 0; i < len(recs); i += 40 {
		part := recs[i:min(i+40, len(recs))]
		r.Shuffle(len(part), func(a, b int) { part[a], part[b] = part[b], part[a] })
		data, err := json.Marshal(map[string]any{"Records": part})
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, data)
	}
	for i := 0; i < 200; i += 50 {
		data, _ := json.Marshal(benchEvents(200)[i : i+50])
		files = append(files, data)
	}
	cache := newDecodeCache()
	events := 0
	for i, data := range files {
		fast, err := fastParse(data, cache)
		if err != nil {
			t.Fatalf("file %d: fast decoder declined: %v", i, err)
		}
		slow, bad, err := slowParse(data)
		if err != nil || len(bad) > 0 {
			t.Fatalf("file %d: %v %v", i, err, bad)
		}
		if !reflect.DeepEqual(fast, slow) {
			for j := range fast {
				if !reflect.DeepEqual(fast[j], slow[j]) {
					a, _ := json.Marshal(fast[j])
					b, _ := json.Marshal(slow[j])
					t.Fatalf("file %d, record %d: decoders differ:\nfast %s\nslow %s", i, j, a, b)
				}
			}
		}
		events += len(fast)
	}
	if events < 20_000 {
		t.Fatalf("only %d events generated", events)
	}
}

// FuzzEventDecoder: EventDecoder gives what encoding/json gives for one event, and fails
// where it fails (the audit consumer decodes every record with it).
func FuzzEventDecoder(f *testing.F) {
	g := new(gen)
	for _, ev := range []*audit.Event{
		g.add(nodeSession("app", "i-0abc", "ASIAEXAMPLE"), t0, "execute-api.amazonaws.com", "Invoke", "10.0.1.15", cli, "", map[string]any{"path": "/orders", "n": 2.5, "l": []any{"a", nil, true}}),
		g.add(user("alice", "AKIAEXAMPLE"), t0, "sts.amazonaws.com", "AssumeRole", "192.0.2.1", cli, "AccessDenied", nil),
	} {
		b, err := json.Marshal(ev)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(` {"eventName":"a","EventName":"b"} `))
	f.Add([]byte(`{"eventTime":"2026-01-02T03:04:05Z","@timestamp":"x"} {}`))
	f.Add([]byte(`{"eventName":"caf\u00e9","requestParameters":{"a":[1,{}]}}`))
	var d EventDecoder
	f.Fuzz(func(t *testing.T, data []byte) {
		got, err := d.Decode(data)
		var want audit.Event
		werr := json.Unmarshal(data, &want)
		if (err == nil) != (werr == nil) {
			t.Fatalf("Decode error %v, encoding/json error %v", err, werr)
		}
		if err == nil && !reflect.DeepEqual(*got, want) {
			a, _ := json.Marshal(got)
			b, _ := json.Marshal(want)
			t.Fatalf("decoders differ:\nfast %s\njson %s", a, b)
		}
	})
}
