// Package audit owns Phantom's audit trail: CloudTrail-format events (one per decision,
// allowed or denied) and the tamper-evident log they are written to.
//
// Each writer (a gateway replica, an endpoint, the STS) appends to its own chain, a
// directory of segment files under the audit directory. Every record is one JSON line
// holding the event, its sequence number, the previous record's hash and its own
// SHA-256, so records form a hash chain across segments. Ed25519-signed digests (the
// model is CloudTrail's log file integrity validation) state, at least once a second
// while records arrive and whenever a segment is sealed or the log is closed, exactly
// what each segment holds; they are themselves chained. Verify uses both to find any
// modified, removed, reordered or truncated record and says where; Reader hands records
// to consumers (the detector) in order, with a stable position, as they are written.
// The format is described in format.go.
//
// The package does not decide what goes into an event (the components do), ship logs
// elsewhere, or keep them: deleting the oldest segments is reported by Verify as removal.
package audit
