package pki

import (
	"crypto/x509"
	"errors"
	"fmt"
	"math/big"
	"time"
)

// Revocation refuses certificates before they expire: one by its serial number, or every
// certificate of an identity issued before a time (what a compromised host's identity
// needs: it enrolls again afterwards and gets new ones). Every Verifier checks them, on
// every verification (revocation lists and OCSP are for verifiers that cannot share the
// issuer's store; Phantom's can).
type Revocation struct {
	// Serial is the certificate's serial number in lower-case hexadecimal, or "".
	Serial string
	// Identity and IssuedBefore, when Serial is "", refuse the identity's certificates
	// whose validity started before IssuedBefore.
	Identity     Identity
	IssuedBefore time.Time
	RevokedAt    time.Time
	Reason       string
}

// ID is the revocation's key in the store: "serial:<hex>" or "identity:<uri>".
func (r Revocation) ID() string {
	if r.Serial != "" {
		return "serial:" + r.Serial
	}
	return "identity:" + r.Identity.String()
}

// Validate checks the revocation's fields.
func (r Revocation) Validate() error {
	switch {
	case r.Serial != "" && (r.Identity != Identity{} || !r.IssuedBefore.IsZero()):
		return errors.New("revocation: a serial, or an identity and a time, not both")
	case r.Serial != "":
		if n, ok := new(big.Int).SetString(r.Serial, 16); !ok || n.Sign() <= 0 || n.Text(16) != r.Serial {
			return fmt.Errorf("revocation: serial %q is not lower-case hexadecimal", r.Serial)
		}
	default:
		if err := r.Identity.Validate(); err != nil {
			return fmt.Errorf("revocation: %w", err)
		}
		if r.IssuedBefore.IsZero() {
			return errors.New("revocation: an identity's revocation needs the time before which its certificates are refused")
		}
	}
	if r.RevokedAt.IsZero() {
		return errors.New("revocation: no revocation time")
	}
	return nil
}

// Revocations is an immutable set of revocations, as a Verifier checks them.
type Revocations struct {
	serials    map[string]struct{}
	identities map[Identity]time.Time
}

// NewRevocations indexes rs.
func NewRevocations(rs []Revocation) Revocations {
	out := Revocations{serials: map[string]struct{}{}, identities: map[Identity]time.Time{}}
	for _, r := range rs {
		if r.Serial != "" {
			out.serials[r.Serial] = struct{}{}
			continue
		}
		if cur, ok := out.identities[r.Identity]; !ok || r.IssuedBefore.After(cur) {
			out.identities[r.Identity] = r.IssuedBefore
		}
	}
	return out
}

// Len is the number of revocations in the set.
func (rs Revocations) Len() int { return len(rs.serials) + len(rs.identities) }

// ErrRevoked is returned (wrapped) for a revoked certificate.
var ErrRevoked = errors.New("certificate revoked")

// check refuses cert (naming id) if a revocation covers it. A certificate's validity
// starts backdate before its issue, so "issued before T" compares NotBefore+backdate.
func (rs Revocations) check(cert *x509.Certificate, id Identity) error {
	if _, ok := rs.serials[cert.SerialNumber.Text(16)]; ok {
		return fmt.Errorf("%w: serial %s", ErrRevoked, cert.SerialNumber.Text(16))
	}
	if before, ok := rs.identities[id]; ok && cert.NotBefore.Add(backdate).Before(before) {
		return fmt.Errorf("%w: %s's certificates issued before %s", ErrRevoked, id, before.UTC().Format(time.RFC3339))
	}
	return nil
}
