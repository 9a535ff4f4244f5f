package requestid

import (
	"regexp"
	"sync"
	"testing"
)

var v4 = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

func TestNewIsARandomVersion4UUID(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		id := New()
		if !v4.MatchString(id) {
			t.Fatalf("%q is not a version 4 UUID", id)
		}
		if seen[id] {
			t.Fatalf("%q repeated", id)
		}
		seen[id] = true
	}
}

// TestNewFromManyGoroutines: generators taken from the pool at once are seeded apart.
func TestNewFromManyGoroutines(t *testing.T) {
	ids := make(chan string, 8*500)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 500 {
				ids <- New()
			}
		})
	}
	wg.Wait()
	close(ids)
	seen := map[string]bool{}
	for id := range ids {
		if !v4.MatchString(id) || seen[id] {
			t.Fatalf("%q is not a version 4 UUID or repeated", id)
		}
		seen[id] = true
	}
}

func BenchmarkNew(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		New()
	}
}

func TestTwo(t *testing.T) {
	for range 100 {
		a, b := Two()
		if !v4.MatchString(a) || !v4.MatchString(b) || a == b {
			t.Fatalf("%q %q", a, b)
		}
	}
}

// BenchmarkNewParallel is New from as many goroutines as the gateway's callers.
func BenchmarkNewParallel(b *testing.B) {
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			New()
		}
	})
}

func BenchmarkTwo(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		Two()
	}
}
