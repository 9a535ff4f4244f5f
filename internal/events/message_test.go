package events_test

import (
	"strings"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/phantom-perimeter/phantom/internal/audit"
	"github.com/phantom-perimeter/phantom/internal/events"
)

// validMessage is the first record of a real chain gateway-a as a publisher sends it.
func validMessage(t testing.TB) (string, nats.Header, []byte) {
	dir := t.TempDir()
	record(t, openChain(t, dir, "gateway-a"), 1, "s3.amazonaws.com")
	var r audit.Record
	if err := audit.ReadChain(dir, "gateway-a", 0, func(e audit.Entry) error { r = e.Record; return nil }); err != nil {
		t.Fatal(err)
	}
	h := nats.Header{
		events.HeaderChain: {"gateway-a"}, events.HeaderSeq: {"1"}, events.HeaderPrev: {r.Prev}, events.HeaderHash: {r.Hash},
		events.HeaderMsgID: {events.MsgID(account, "gateway-a", r)}, events.HeaderPartPrev: {"0 " + strings.Repeat("0", 64)},
	}
	return events.Subject(account, "gateway-a", "s3_amazonaws_com", events.PartitionOf(r)), h, r.AppendLine(nil)
}

// Nothing on the stream is taken on its word: each way a message can lie is refused.
func TestParseMessageRefusesWhatDoesNotHoldTogether(t *testing.T) {
	subject, h, data := validMessage(t)
	part := events.PartitionOf(audit.Record{Event: []byte(`{"userIdentity":{"arn":"arn:aws:iam::123456789012:user/u0"}}`)})
	other := (part + 1) % events.Partitions
	if m, err := events.ParseMessage(subject, h, data); err != nil || m.Record.Seq != 1 || m.Chain != "gateway-a" {
		t.Fatalf("valid message: %+v, %v", m, err)
	}
	with := func(k, v string) nats.Header {
		c := nats.Header{}
		for hk, hv := range h {
			c[hk] = hv
		}
		c.Set(k, v)
		return c
	}
	for _, tc := range []struct {
		name    string
		subject string
		h       nats.Header
		data    []byte
		want    string
	}{
		{"event changed, hash kept", subject, h, []byte(strings.Replace(string(data), "GetObject", "PutObject", 1)), "not a record"},
		{"record of another chain", events.Subject(account, "gateway-b", "s3_amazonaws_com", part), with(events.HeaderChain, "gateway-b"), data, "not a record"},
		{"header names another chain", subject, with(events.HeaderChain, "gateway-b"), data, "header"},
		{"header claims another seq", subject, with(events.HeaderSeq, "2"), data, "headers"},
		{"header claims another prev", subject, with(events.HeaderPrev, strings.Repeat("1", 64)), data, "headers"},
		{"subject names another source", events.Subject(account, "gateway-a", "iam_amazonaws_com", part), h, data, "source"},
		{"msg id of another record", subject, with(events.HeaderMsgID, "x"), data, "Nats-Msg-Id"},
		{"subject names another partition", events.Subject(account, "gateway-a", "s3_amazonaws_com", other), h, data, "partition"},
		{"partition out of range", events.Subject(account, "gateway-a", "s3_amazonaws_com", events.Partitions), h, data, "partition"},
		{"partition link malformed", subject, with(events.HeaderPartPrev, "0"), data, "Phantom-Part-Prev"},
		{"partition link not earlier", subject, with(events.HeaderPartPrev, "1 "+strings.Repeat("0", 64)), data, "earlier"},
		{"gap header not 1", subject, with(events.HeaderGap, "yes"), data, "Phantom-Gap"},
		{"not an audit subject", "phantom.other." + account + ".gateway-a.s3", h, data, "subject"},
		{"account not 12 digits", "phantom.audit.1234.gateway-a.s3_amazonaws_com.0", h, data, "account"},
		{"chain name invalid", "phantom.audit." + account + ".Gateway.s3_amazonaws_com.0", h, data, "chain"},
		{"extra subject token", subject + ".x", h, data, "want"},
		{"missing subject token", "phantom.audit." + account + ".gateway-a.s3_amazonaws_com", h, data, "want"},
		{"no headers", subject, nil, data, "header"},
		{"too large", subject, h, make([]byte, events.MaxMessageBytes+1), "bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := events.ParseMessage(tc.subject, tc.h, tc.data)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("ParseMessage = %v, want an error about %q", err, tc.want)
			}
		})
	}
}

func TestSourceToken(t *testing.T) {
	for in, want := range map[string]string{
		"s3.amazonaws.com": "s3_amazonaws_com", "": "other", "a.*.b": "other", "a>b": "other", "S3.amazonaws.com": "other",
		"phantom-egress": "phantom-egress",
	} {
		if got := events.SourceToken(in); got != want {
			t.Errorf("SourceToken(%q) = %q, want %q", in, got, want)
		}
	}
}

func FuzzParseMessage(f *testing.F) {
	subject, h, data := validMessage(f)
	f.Add(subject, h.Get(events.HeaderChain), h.Get(events.HeaderSeq), h.Get(events.HeaderPrev), h.Get(events.HeaderHash), h.Get(events.HeaderPartPrev), data)
	f.Add("phantom.audit.123456789012.a.b.0", "a", "1", "", "", "0 ", []byte(`{"event":{},"seq":1,"prev":"","hash":""}`))
	f.Fuzz(func(t *testing.T, subject, chain, seq, prev, hash, link string, data []byte) {
		hh := nats.Header{events.HeaderChain: {chain}, events.HeaderSeq: {seq}, events.HeaderPrev: {prev}, events.HeaderHash: {hash}, events.HeaderPartPrev: {link}}
		m, err := events.ParseMessage(subject, hh, data)
		if err != nil {
			return
		}
		// What parses is a record of the subject's chain that parses on its own.
		r, err := audit.ParseRecord(m.Chain, data)
		if err != nil || r.Seq != m.Record.Seq || r.Hash != hash || events.Subject(m.Account, m.Chain, events.Source(r), events.PartitionOf(r)) != subject || m.PartPrev.Seq >= r.Seq {
			t.Fatalf("accepted %q %q: %+v (%v)", subject, data, m, err)
		}
	})
}
