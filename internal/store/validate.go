package store

import (
	"database/sql"
	"errors"
	"fmt"
	"regexp"
	"time"
)

// Checks every backend applies before writing, so no backend stores a row another
// would refuse. The store is not the place for IAM's naming rules (identity owns
// those); it refuses what no caller should ever write.

const maxNameLen = 256

var sealingKeyIDRe = regexp.MustCompile(`^[A-Za-z0-9._-]{1,32}$`)

// validName accepts 1 to 256 printable ASCII characters without spaces.
func validName(s string) error {
	if s == "" {
		return errors.New("empty")
	}
	if len(s) > maxNameLen {
		return fmt.Errorf("longer than %d bytes", maxNameLen)
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c > '~' {
			return fmt.Errorf("%q contains a character outside printable ASCII", s)
		}
	}
	return nil
}

func validAccessKey(k AccessKey) error {
	if err := validName(k.ID); err != nil {
		return fmt.Errorf("id: %w", err)
	}
	if err := validName(k.User); err != nil {
		return fmt.Errorf("%s: user: %w", k.ID, err)
	}
	if k.Secret == "" {
		return fmt.Errorf("%s: empty secret", k.ID)
	}
	if k.Status != StatusActive && k.Status != StatusInactive {
		return fmt.Errorf("%s: status %q is neither %s nor %s", k.ID, k.Status, StatusActive, StatusInactive)
	}
	return nil
}

func validSealingKey(k SealingKey) error {
	if !sealingKeyIDRe.MatchString(k.ID) {
		return fmt.Errorf("id %q is not 1 to 32 characters of [A-Za-z0-9._-]", k.ID)
	}
	if len(k.Key) != SealingKeySize {
		return fmt.Errorf("%s: key is %d bytes; want %d", k.ID, len(k.Key), SealingKeySize)
	}
	if k.SignerInToken {
		if k.SigningSeed != nil || len(k.PublicKey) != SealingKeySize {
			return fmt.Errorf("%s: a key signing in a token has a %d-byte public key and no seed", k.ID, SealingKeySize)
		}
		return nil
	}
	if (k.SigningSeed == nil) != (k.PublicKey == nil) {
		return fmt.Errorf("%s: a signing key and its public key come together", k.ID)
	}
	if k.SigningSeed != nil && (len(k.SigningSeed) != SealingKeySize || len(k.PublicKey) != SealingKeySize) {
		return fmt.Errorf("%s: signing and public keys must be %d bytes", k.ID, SealingKeySize)
	}
	return nil
}

// Bounds on a TOTP seed: RFC 4226 §4 requires at least 128 bits and recommends 160.
const (
	minMFASeed = 16
	maxMFASeed = 64
)

func validMFADevice(d MFADevice) error {
	if err := validName(d.Serial); err != nil {
		return fmt.Errorf("serial: %w", err)
	}
	if d.User != "" {
		if err := validName(d.User); err != nil {
			return fmt.Errorf("%s: user: %w", d.Serial, err)
		}
	}
	if len(d.Seed) < minMFASeed || len(d.Seed) > maxMFASeed {
		return fmt.Errorf("%s: seed is %d bytes; want %d to %d", d.Serial, len(d.Seed), minMFASeed, maxMFASeed)
	}
	if d.LastStep < 0 || d.Failures < 0 {
		return fmt.Errorf("%s: negative last step or failures", d.Serial)
	}
	return nil
}

// nanos encodes a time as Unix nanoseconds, refusing times that do not round-trip
// (before 1678 or after 2262).
func nanos(t time.Time) (int64, error) {
	n := t.UnixNano()
	if !time.Unix(0, n).Equal(t) {
		return 0, fmt.Errorf("time %s is out of range", t.UTC().Format(time.RFC3339))
	}
	return n, nil
}

// requiredTime encodes t, or now() when t is zero.
func requiredTime(t time.Time, now func() time.Time) (int64, error) {
	if t.IsZero() {
		t = now()
	}
	return nanos(t)
}

// optionalTime encodes t, or NULL when t is zero.
func optionalTime(t time.Time) (sql.NullInt64, error) {
	if t.IsZero() {
		return sql.NullInt64{}, nil
	}
	n, err := nanos(t)
	if err != nil {
		return sql.NullInt64{}, err
	}
	return sql.NullInt64{Int64: n, Valid: true}, nil
}

func fromNanos(n int64) time.Time {
	return time.Unix(0, n).UTC()
}

// revocationRow checks a revocation and names its table, key column and time.
func revocationRow(r Revocation) (table, key string, before int64, err error) {
	switch {
	case r.Role != "" && r.Node != "":
		return "", "", 0, fmt.Errorf("put revocation: role %s and node %s: name one", r.Role, r.Node)
	case r.Node != "":
		table, key = "node_revocations", "node"
		err = validName(r.Node)
	default:
		table, key = "revocations", "role"
		err = validName(r.Role)
	}
	if err != nil {
		return "", "", 0, fmt.Errorf("put revocation: %s: %w", key, err)
	}
	if r.Before.IsZero() {
		return "", "", 0, fmt.Errorf("put revocation %s%s: zero time", r.Role, r.Node)
	}
	if before, err = nanos(r.Before); err != nil {
		return "", "", 0, fmt.Errorf("put revocation %s%s: %w", r.Role, r.Node, err)
	}
	return table, key, before, nil
}

// nodeRow checks a node record and encodes its times.
func nodeRow(n Node, now func() time.Time) (enrolled int64, notAfter sql.NullInt64, err error) {
	if err := validName(n.Name); err != nil {
		return 0, notAfter, fmt.Errorf("put node: name: %w", err)
	}
	if n.CertSerial == "" {
		return 0, notAfter, fmt.Errorf("put node %s: no certificate serial", n.Name)
	}
	if enrolled, err = requiredTime(n.EnrolledAt, now); err != nil {
		return 0, notAfter, fmt.Errorf("put node %s: enrolled: %w", n.Name, err)
	}
	if notAfter, err = optionalTime(n.CertNotAfter); err != nil {
		return 0, notAfter, fmt.Errorf("put node %s: certificate expiry: %w", n.Name, err)
	}
	return enrolled, notAfter, nil
}

// contactRow checks a node contact.
func contactRow(name string, at time.Time, sourceIP string) (int64, error) {
	if err := validName(name); err != nil {
		return 0, fmt.Errorf("touch node: name: %w", err)
	}
	if len(sourceIP) > 64 {
		return 0, fmt.Errorf("touch node %s: source address is %d bytes", name, len(sourceIP))
	}
	n, err := nanos(at)
	if err != nil || at.IsZero() {
		return 0, fmt.Errorf("touch node %s: time %s is not usable", name, at)
	}
	return n, nil
}
