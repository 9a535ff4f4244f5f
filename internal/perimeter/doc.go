// Package perimeter is Phantom's runtime: what a process of the perimeter opens and runs,
// for the CLI, tests and benches alike. It opens the data directory's store and identity
// service (through internal/datadir) with the CA and message sealer (Open); keeps them
// current (the risk, CA and replay-guard loops, with freshness bounds); builds the
// components over them (NewGateway, NewEndpoint, NewResponder); renews their certificates
// (CertSource); serves the operations listener (/metrics, /healthz, /readyz: Ops);
// opens and renews audit chain sets (Chains) and tracks the spec each process enforces
// (SpecTracker).
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
