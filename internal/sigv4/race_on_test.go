//go:build race

package sigv4

// raceEnabled: the race detector instruments allocations, so allocation counts differ.
const raceEnabled = true
