package detect

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/phantom-perimeter/phantom/internal/audit"
)

// trailRecord is a soak event as CloudTrail writes it: with the fields the detector
// does not read (resources, sharedEventID, sessionCredentialFromConsole, the session's
// creation date and web identity data) and a tlsDetails on every SDK call, so a file of
// them costs the decoder what a real one does.
type trailRecord struct {
	*audit.Event
	SessionCredentialFromConsole string          `json:"sessionCredentialFromConsole,omitempty"`
	Resources                    []trailResource `json:"resources,omitempty"`
	SharedEventID                string          `json:"sharedEventID,omitempty"`
}

type trailResource struct {
	AccountID string `json:"accountId,omitempty"`
	Type      string `json:"type"`
	ARN       string `json:"ARN"`
}

// trailRecords dresses evs (in time order) as trailRecord does: UUIDs for the event and
// request ids, the session's creation date (the hour the session began), resources.
func trailRecords(evs []*audit.Event, r *rand.Rand) []trailRecord {
	uuid := func() string {
		a, b := r.Uint64(), r.Uint64()
		return fmt.Sprintf("%08x-%04x-4%03x-%04x-%012x", a>>32, a>>16&0xffff, a&0xfff, b>>48&0x3fff|0x8000, b&0xffffffffffff)
	}
	out := make([]trailRecord, len(evs))
	for i, ev := range evs {
		e := *ev
		e.EventID, e.RequestID = uuid(), uuid()
		rec := trailRecord{Event: &e}
		if c := e.UserIdentity.SessionContext; c != nil {
			cc := *c
			cc.Attributes = map[string]string{"creationDate": e.EventTime.Truncate(time.Hour).Format(time.RFC3339), "mfaAuthenticated": c.Attributes["mfaAuthenticated"]}
			e.UserIdentity.SessionContext = &cc
		}
		switch {
		case e.UserAgent == soakConsole || strings.HasPrefix(e.UserAgent, "Mozilla/"):
			rec.SessionCredentialFromConsole = "true"
		case e.EventType == "AwsApiCall":
			e.TLSDetails = &audit.TLSDetails{TLSVersion: "TLSv1.3", CipherSuite: "TLS_AES_128_GCM_SHA256",
				ClientProvidedHostHeader: strings.TrimSuffix(e.EventSource, ".amazonaws.com") + "." + e.AWSRegion + ".amazonaws.com"}
		}
		if e.EventType == "AwsServiceEvent" {
			rec.SharedEventID = uuid()
		}
		for _, v := range e.RequestParameters {
			if s, ok := v.(string); ok && !strings.HasPrefix(s, "arn:") && r.IntN(2) == 0 {
				svc := strings.TrimSuffix(e.EventSource, ".amazonaws.com")
				rec.Resources = append(rec.Resources, trailResource{AccountID: e.RecipientAccountID, Type: "AWS::" + strings.ToUpper(svc[:1]) + svc[1:] + "::Resource",
					ARN: "arn:aws:" + svc + ":" + e.AWSRegion + ":" + e.RecipientAccountID + ":" + s})
				break
			}
		}
		out[i] = rec
	}
	return out
}

// TestWriteSoakLogs writes the benign soak as CloudTrail log files, gzipped as AWS
// delivers them and named as AWS names them (one file per account, region and five
// minutes, records in no particular order), into $PHANTOM_SOAK_LOGS, for measuring
// `phantom detect` over a directory. $PHANTOM_SOAK_DAYS sets the days (default 14,
// about 8,000 events a day; 60 days are about 500,000 events). Skipped without the
// directory:
//
//	PHANTOM_SOAK_LOGS=/tmp/trail PHANTOM_SOAK_DAYS=60 go test -run TestWriteSoakLogs ./internal/detect/
func TestWriteSoakLogs(t *testing.T) {
	dir := os.Getenv("PHANTOM_SOAK_LOGS")
	if dir == "" {
		t.Skip("PHANTOM_SOAK_LOGS not set: nothing to write")
	}
	days := 14
	if s := os.Getenv("PHANTOM_SOAK_DAYS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			t.Fatalf("PHANTOM_SOAK_DAYS=%q: want a positive number of days", s)
		}
		days = n
	}
	n, files := writeSoakTrail(t, dir, days)
	t.Logf("wrote %d events in %d files under %s", n, files, dir)
}

// writeSoakTrail writes days of the benign soak under dir as TestWriteSoakLogs says,
// and returns how many events and files it wrote.
func writeSoakTrail(tb testing.TB, dir string, days int) (events, files int) {
	tb.Helper()
	r := rand.New(rand.NewPCG(7, 11))
	evs := soak(days)
	recs := trailRecords(evs, r)
	for i := 0; i < len(recs); {
		at := recs[i].EventTime.Truncate(5 * time.Minute)
		j := i
		for j < len(recs) && recs[j].EventTime.Truncate(5*time.Minute).Equal(at) {
			j++
		}
		part := recs[i:j]
		r.Shuffle(len(part), func(a, b int) { part[a], part[b] = part[b], part[a] })
		sub := filepath.Join(dir, "AWSLogs", soakAccount, "CloudTrail", "eu-west-1", at.Format("2006/01/02"))
		if err := os.MkdirAll(sub, 0o755); err != nil {
			tb.Fatal(err)
		}
		name := fmt.Sprintf("%s_CloudTrail_eu-west-1_%s_%016x.json.gz", soakAccount, at.Format("20060102T1504Z"), r.Uint64())
		data, err := json.Marshal(map[string]any{"Records": part})
		if err != nil {
			tb.Fatal(err)
		}
		var b bytes.Buffer
		zw := gzip.NewWriter(&b)
		zw.Write(data)
		if err := zw.Close(); err != nil {
			tb.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(sub, name), b.Bytes(), 0o600); err != nil {
			tb.Fatal(err)
		}
		files++
		i = j
	}
	return len(recs), files
}
