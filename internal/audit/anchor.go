package audit

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"time"
)

// Anchors. A digest proves what a segment held when it was signed, but only while the
// digest itself is there: whoever can write the chain's directory can cut a chain back
// to an earlier digest, delete a whole chain or replace it with a shorter valid one, and
// the chain alone still verifies (CloudTrail's digest files have the same blind spot for
// the newest files). So at every digest the writer also records the chain's head — an
// anchor, the signed digest line itself — in a store outside the chain (package store,
// optionally a second one on another host), and the store keeps the set of chains that
// exist. Verification then checks the directory against the anchors: every anchored
// head must still be there, with the anchored hash. Anchors must be out of the writer's
// reach to mean anything: an INSERT-only role on PostgreSQL (see docs/audit.md); with
// SQLite beside the chains, whoever owns the data directory owns the anchors too.

// Anchor is a chain's head as one of its signed digests stated it.
type Anchor struct {
	Chain   string `json:"chain"`
	Segment uint64 `json:"segment"`
	// Seq and Hash name the last record the digest covers (for the digest that opens a
	// segment, the record before the segment: its first record's seq minus one).
	Seq  uint64 `json:"seq"`
	Hash string `json:"hash"`
	// Bytes is the segment's length up to the end of that record's line.
	Bytes int64     `json:"bytes"`
	KeyID string    `json:"keyId"`
	Time  time.Time `json:"time"`
	// Digest is the signed digest line, so an anchor can be checked without the chain.
	Digest string `json:"digest"`
}

// DigestHash is the hex SHA-256 of the anchor's digest line: the PrevDigest of the digest
// that follows it.
func (a Anchor) DigestHash() string {
	sum := sha256.Sum256([]byte(a.Digest))
	return hex.EncodeToString(sum[:])
}

// anchorOf is the anchor of a digest line (without newline).
func anchorOf(line []byte, b *digestBody) Anchor {
	return Anchor{Chain: b.Chain, Segment: b.Segment, Seq: b.LastSeq, Hash: b.LastHash, Bytes: b.Bytes,
		KeyID: b.KeyID, Time: b.Time, Digest: string(line)}
}

// ParseAnchor checks that a's digest line is a digest of a's chain and that a's fields
// are the ones it states. It does not check the signature (Verify does, with the keys
// it trusts).
func ParseAnchor(a Anchor) error {
	d, err := parseDigest([]byte(a.Digest))
	if err != nil {
		return fmt.Errorf("anchor of chain %s: %w", a.Chain, err)
	}
	if anchorOf(d.Line, &d.digestBody) != a {
		return fmt.Errorf("anchor of chain %s seq %d: its fields are not the ones its digest states", a.Chain, a.Seq)
	}
	return nil
}

// Signer is a writer's certificate: the perimeter CA vouching that the key with KeyID
// signs the digests of Chain.
type Signer struct {
	KeyID string `json:"keyId"`
	Chain string `json:"chain"`
	Cert  []byte `json:"cert"` // DER
}

// Checkpoint records that the records of a chain up to Seq were pruned on purpose
// (`phantom audit prune`): verification reports the gap before the chain's first
// remaining segment as pruned, not as tampering.
type Checkpoint struct {
	Chain string `json:"chain"`
	// Segment is the last segment removed; Seq and Hash the last record removed (the
	// first remaining record's prev).
	Segment uint64    `json:"segment"`
	Seq     uint64    `json:"seq"`
	Hash    string    `json:"hash"`
	Before  time.Time `json:"before"` // what was asked: segments whose records all precede it
	Time    time.Time `json:"time"`   // when it was pruned
}

// AnchorStore keeps a writer's anchors where the writer cannot change them (package
// store: SQLite, PostgreSQL). Every method is an INSERT or a read.
type AnchorStore interface {
	// RegisterAuditChain adds chain to the set of chains (kept if already there).
	RegisterAuditChain(ctx context.Context, chain string, at time.Time) error
	// PutAuditSigner records a writer's certificate (kept if already there).
	PutAuditSigner(ctx context.Context, s Signer) error
	// PutAuditAnchor records an anchor.
	PutAuditAnchor(ctx context.Context, a Anchor) error
	// LatestAuditAnchor returns the anchor of chain with the highest seq (then segment),
	// or false when the chain has none.
	LatestAuditAnchor(ctx context.Context, chain string) (Anchor, bool, error)
}

// AnchorSet is everything verification takes from an anchor store: the chains that
// exist, per chain and segment the anchor with the highest seq, the writers'
// certificates and the prune checkpoints. `phantom audit anchors export` writes it as
// JSON for an offline check.
type AnchorSet struct {
	Chains      []ChainEntry `json:"chains"`
	Anchors     []Anchor     `json:"anchors"`
	Signers     []Signer     `json:"signers"`
	Checkpoints []Checkpoint `json:"checkpoints"`
	// Source says where the set came from, for the report (a store URL without its
	// password, or a file).
	Source string `json:"source,omitempty"`
}

// ChainEntry is one chain of the set, with when it was first registered.
type ChainEntry struct {
	Name    string    `json:"name"`
	Created time.Time `json:"created"`
}
