package consume_test

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/phantom-perimeter/phantom/internal/detect/consume"
)

// Two replicas start on a backlog: the first takes every partition, then gives half to
// the second while both read. Every record is committed once and nothing is taken for a
// gap (a partition handed over while its records wait to be delivered again once made
// the new holder raise a gap at once, its messages' delivery counts being the old
// holder's).
func TestStreamTwoReplicasOnABacklog(t *testing.T) {
	chains := []string{"gateway-a", "gateway-b", "gateway-c", "gateway-d"}
	rig := newStreamRig(t, chains...)
	want := map[string]int64{}
	for _, c := range chains {
		rig.chain[c].write(t, 3000)
		want[c] = 3000
	}
	waitStream(t, rig, 12000)
	var dets []*streamCounter
	for i := range 2 {
		det := &streamCounter{seen: map[string]int{}}
		dets = append(dets, det)
		r, err := consume.NewReplica(consume.StreamConfig{JetStream: rig.js, Account: streamAccount, Holder: fmt.Sprintf("r%d", i), Leases: rig.st, Anchors: rig.st,
			LeaseTTL: time.Second, Detector: det, Sink: newResponder(t, rig.st), Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); r.Run(ctx) }()
		defer func() { cancel(); <-done }()
	}
	waitCommitted(t, rig.st, want, 90*time.Second)
	for _, d := range dets {
		if dm := d.damages(); len(dm) > 0 {
			t.Fatalf("damage reported where nobody tampered: %q", dm)
		}
	}
}
