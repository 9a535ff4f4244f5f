package main

import (
	"slices"
)

// The memory rule. A process's memory is judged from its VmRSS samples, taken every
// second or so over the whole run, split in thirds by time:
//
//   - The first third is warm-up and is ignored: connection pools fill to the load's
//     concurrency, TLS session caches, goroutine stacks and buffer pools grow to their
//     working size, the Go heap grows to its GC target, policies get compiled on first
//     use. All of that is a one-off rise, not a leak.
//   - The median of the last third is compared with the median of the middle third.
//     Medians, because a single sample can land on a GC cycle's high point or just after
//     the scavenger gave pages back; a median of several samples cannot be moved by one.
//   - Growing means the last third's median rose by more than growthRatio AND by more
//     than growthMin. The ratio alone would flag a 20 MiB process for a few MiB of
//     allocator noise; the absolute bound alone would miss nothing in a small process but
//     flag big ones for ordinary heap-target swings (with GOGC=100 a Go heap may reach
//     twice its live size before a collection, and RSS follows it up, and comes back down
//     only as fast as the scavenger returns pages).
//
// What a leak must be to be caught: between the middle of the second third and the
// middle of the last third a third of the run passes. At 1,500 req/s a 40 s run sends
// ~20,000 requests in that time, so a leak of 8 MiB/20,000 ≈ 420 bytes per request is
// caught; a 2 h soak at the same rate sends 3.6 million, so ~2.3 bytes per request is.
// A leak per session renewal, per store notification or per poll is caught in a soak
// long enough for it to add up to 8 MiB.
const (
	growthRatio = 0.20
	growthMin   = 8 << 20
	minSamples  = 6 // at least two samples per third, else no verdict
)

// verdict is the judgment of one process's memory.
type verdict struct {
	middle, last uint64 // median VmRSS of the middle and last thirds
	peak         uint64 // the largest VmHWM seen
	judged       bool   // enough samples for a verdict
	growing      bool
}

func judge(rss []uint64, peak uint64) verdict {
	v := verdict{peak: peak}
	if len(rss) < minSamples {
		return v
	}
	n := len(rss)
	v.middle = median(rss[n/3 : 2*n/3])
	v.last = median(rss[2*n/3:])
	v.judged = true
	v.growing = v.last > v.middle &&
		float64(v.last-v.middle) > growthRatio*float64(v.middle) &&
		v.last-v.middle > growthMin
	return v
}

func (v verdict) change() float64 {
	if v.middle == 0 {
		return 0
	}
	return (float64(v.last) - float64(v.middle)) / float64(v.middle)
}

func (v verdict) String() string {
	switch {
	case !v.judged:
		return "too few samples"
	case v.growing:
		return "GROWING"
	default:
		return "flat"
	}
}

func median(xs []uint64) uint64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return s[len(s)/2-1]/2 + s[len(s)/2]/2
}
