package detect

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/phantom-perimeter/phantom/internal/audit"
	"github.com/phantom-perimeter/phantom/internal/testenv"
)

// benchEvents makes n realistic CloudTrail management events: 300 principals (users and
// role sessions) over a day, the common read APIs with request parameters, TLS details,
// a few refusals.
func benchEvents(n int) []*audit.Event {
	r := rand.New(rand.NewPCG(1, 2))
	names := []struct{ src, name string }{
		{"s3.amazonaws.com", "ListBuckets"}, {"ec2.amazonaws.com", "DescribeInstances"}, {"sts.amazonaws.com", "GetCallerIdentity"},
		{"iam.amazonaws.com", "ListRoles"}, {"kms.amazonaws.com", "Decrypt"}, {"sts.amazonaws.com", "AssumeRole"},
		{"logs.amazonaws.com", "DescribeLogGroups"}, {"ssm.amazonaws.com", "GetParameter"}, {"lambda.amazonaws.com", "ListFunctions20150331"},
		{"secretsmanager.amazonaws.com", "GetSecretValue"}, {"dynamodb.amazonaws.com", "DescribeTable"},
	}
	evs := make([]*audit.Event, n)
	for i := range evs {
		p := r.IntN(300)
		var u audit.UserIdentity
		if p%3 == 0 {
			u = user(fmt.Sprintf("user%d", p), fmt.Sprintf("AKIA%016d", p))
		} else {
			u = nodeSession(fmt.Sprintf("role%d", p%40), fmt.Sprintf("i-%017x", p), fmt.Sprintf("ASIA%016d", p))
		}
		c := names[r.IntN(len(names))]
		ev := &audit.Event{EventVersion: "1.08", UserIdentity: u, EventTime: t0.Add(time.Duration(i) * 100 * time.Millisecond),
			EventSource: c.src, EventName: c.name, AWSRegion: "us-east-1",
			SourceIPAddress: fmt.Sprintf("10.%d.%d.%d", p%4, p%250, p%200+1), UserAgent: "aws-sdk-go-v2/1.30.3 os/linux lang/go#1.22.5 md/GOOS#linux md/GOARCH#amd64 api/" + c.name,
			RequestParameters: map[string]any{"maxResults": 100.0, "filterSet": map[string]any{}, "resourceArn": fmt.Sprintf("arn:aws:%s:us-east-1:%s:thing/%d", c.src, acct, r.IntN(50))},
			ResponseElements:  nil, RequestID: fmt.Sprintf("%08x-1c2d-4e5f-8a9b-%012x", i, r.Uint64()>>16), EventID: fmt.Sprintf("%08x-aaaa-4bbb-8ccc-%012x", i, r.Uint64()>>16),
			ReadOnly: true, EventType: "AwsApiCall", ManagementEvent: true, RecipientAccountID: acct, EventCategory: "Management",
			TLSDetails: &audit.TLSDetails{TLSVersion: "TLSv1.3", CipherSuite: "TLS_AES_128_GCM_SHA256", ClientProvidedHostHeader: c.src}}
		if r.IntN(50) == 0 {
			ev.ErrorCode, ev.ErrorMessage = "AccessDenied", "User is not authorized to perform this operation"
		}
		evs[i] = ev
	}
	return evs
}

func benchFile(b *testing.B, n int) []byte {
	b.Helper()
	data, err := json.Marshal(map[string]any{"Records": benchEvents(n)})
	if err != nil {
		b.Fatal(err)
	}
	return data
}

// BenchmarkBatch is the batch path: parse a CloudTrail log file and run the rules.
func BenchmarkBatch(b *testing.B) {
	const n = 20000
	data := benchFile(b, n)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		d, _ := New(Config{LearningPeriod: time.Hour})
		evs, bad, err := ParseEvents(data)
		if err != nil || len(bad) > 0 || len(evs) != n {
			b.Fatal(err, len(evs))
		}
		for _, ev := range evs {
			d.Observe(ev)
		}
	}
	b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkParse is the baseline: parsing alone.
func BenchmarkParse(b *testing.B) {
	const n = 20000
	data := benchFile(b, n)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, _, err := ParseEvents(data); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkObserve is the streaming cost of one event (the rules alone), without and
// with SigmaHQ's 57 CloudTrail rules loaded (skipped without them): the
// ratio of the two is what the Sigma rules cost.
func BenchmarkObserve(b *testing.B) {
	b.Run("rules", func(b *testing.B) { benchObserve(b, "") })
	b.Run("rules+sigma", func(b *testing.B) {
		benchObserve(b, testenv.Shared(b, sigmaRulesRel))
	})
}

func benchObserve(b *testing.B, rules string) {
	evs := benchEvents(20000)
	d, err := New(Config{LearningPeriod: time.Hour, SigmaRules: rules})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	i := 0
	for b.Loop() {
		d.Observe(evs[i%len(evs)])
		i++
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkBatchDir is the phantom detect path over a directory of CloudTrail files
// (a few thousand records each; gzipped as AWS delivers them, and plain), read ahead on
// a second goroutine while the rules run.
func BenchmarkBatchDir(b *testing.B) {
	const files, per = 10, 5000
	evs := benchEvents(files * per)
	for _, gz := range []bool{false, true} {
		b.Run(fmt.Sprintf("gzip=%v", gz), func(b *testing.B) {
			dir := b.TempDir()
			for i := 0; i < files; i++ {
				name := fmt.Sprintf("%s/%s_CloudTrail_us-east-1_%02d.json", dir, acct, i)
				if gz {
					name += ".gz"
				}
				writeRecords(b, name, evs[i*per:(i+1)*per], gz)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				d, _ := New(Config{LearningPeriod: time.Hour})
				n := 0
				if _, err := ReadEvents(dir, func(ev *audit.Event) error { n++; d.Observe(ev); return nil }); err != nil || n != files*per {
					b.Fatal(err, n)
				}
			}
			b.ReportMetric(float64(files*per*b.N)/b.Elapsed().Seconds(), "events/s")
		})
	}
}

// BenchmarkTrail is `phantom detect --sigma-rules` over a directory: days of the benign
// soak (PHANTOM_SOAK_DAYS, default 7: about 70,000 events) written as AWS delivers a
// trail (a gzipped file per five minutes, a few dozen events each), read with every
// rule, the baselines and SigmaHQ's CloudTrail rules. Its baseline, measured in the
// same run: reading the trail alone (files, gunzip, decoding), which the rules overlap
// on a second core; "of-read" is the ratio of the two rates.
func BenchmarkTrail(b *testing.B) {
	rules := testenv.Shared(b, sigmaRulesRel)
	days := 7
	if s := os.Getenv("PHANTOM_SOAK_DAYS"); s != "" {
		if n, err := strconv.Atoi(s); err == nil && n > 0 {
			days = n
		}
	}
	dir := b.TempDir()
	n, _ := writeSoakTrail(b, dir, days)
	// run reads the trail b.N times, each time into what start returns (made with the
	// timer stopped: phantom detect's rate counts from its first file).
	run := func(b *testing.B, start func() func(*audit.Event)) float64 {
		b.ReportAllocs()
		for b.Loop() {
			b.StopTimer()
			feed := start()
			b.StartTimer()
			rep, err := ReadEvents(dir, func(ev *audit.Event) error { feed(ev); return nil })
			if err != nil || rep.Events != n {
				b.Fatal(err, rep.Events, n)
			}
		}
		rate := float64(n*b.N) / b.Elapsed().Seconds()
		b.ReportMetric(rate, "events/s")
		return rate
	}
	var read float64
	b.Run("read", func(b *testing.B) {
		read = run(b, func() func(*audit.Event) { return func(*audit.Event) {} })
	})
	b.Run("detect+sigma", func(b *testing.B) {
		rate := run(b, func() func(*audit.Event) {
			d, err := New(Config{LearningPeriod: 7 * 24 * time.Hour, SigmaRules: rules})
			if err != nil {
				b.Fatal(err)
			}
			return d.Feed
		})
		if read > 0 {
			b.ReportMetric(rate/read, "of-read")
		}
	})
}
