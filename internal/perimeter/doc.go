// Package perimeter is Phantom's runtime: what a process of the perimeter opens and runs,
// for the CLI, tests and benches alike. Open opens a process's state (the store and
// identity service through internal/datadir, a sealing key when it may sign, the CA, the
// message sealer). RunGateway, RunSTS, RunEndpoint, RunEgress, RunDetector, RunConsole and
// RunAgent run one component's process: the spec watcher and the spec tracker, enrollment
// at STS for a host without the CA's issuing key, the CA bundle, its audit chain, the ops
// listener (/metrics, /healthz, /readyz), the loops that keep its state current (identity,
// risk levels, the CA, the replay guard, audit writers' certificates) with their
// freshness bounds, certificates renewed at half life, and a graceful shutdown. Up runs
// every component in one process (phantom up, the demo perimeter).
//
// It does not own the components themselves (internal/gateway, endpoint, sts, egress,
// agent, console, detect), the store or the spec; cmd/phantom keeps the commands, their
// flags, their validation and exit codes.
package perimeter

// UsageError is an error in what the operator asked for (a flag's value that cannot be
// used), as opposed to a failure while running: the CLI exits 2 on it.
type UsageError struct{ Err error }

func (e *UsageError) Error() string { return e.Err.Error() }
func (e *UsageError) Unwrap() error { return e.Err }
