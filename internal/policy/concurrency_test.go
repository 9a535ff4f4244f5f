package policy

import (
	"os"
	"sync"
	"sync/atomic"
	"testing"
)

// TestConcurrentEvaluate: a Set is shared by request goroutines and swapped whole with
// atomic.Pointer (STYLE.md "immutable snapshots"); run with -race.
func TestConcurrentEvaluate(t *testing.T) {
	data, err := os.ReadFile("testdata/bench_role.json")
	if err != nil {
		t.Fatal(err)
	}
	p := mustParse(t, string(data))
	var cur atomic.Pointer[Set]
	cur.Store(NewSet(Entry{Identity, p}))
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req := benchRequest() // each goroutine its own Request and Context
			for i := 0; i < 500; i++ {
				d := cur.Load().Evaluate(req)
				if d.Effect != Allow && d.Effect != ExplicitDeny {
					t.Errorf("unexpected %v", d.Effect)
					return
				}
			}
		}()
	}
	for i := 0; i < 50; i++ {
		if i%2 == 0 {
			cur.Store(NewSet(Entry{Identity, p}))
		} else {
			cur.Store(NewSet(Entry{Identity, p}, Entry{SCP, mustParse(t, denyGet)}))
		}
	}
	wg.Wait()
}
