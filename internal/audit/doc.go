// Package audit owns Phantom's audit trail: CloudTrail-format events (one per decision)
// and the tamper-evident log they are written to.
package audit
