package store

import (
	"database/sql"
	"fmt"
	"time"
)

// The row encoding both backends share: validation, time columns and sealing on the
// way in, unsealing on the way out. Only the SQL around them differs per backend.

// scanner is a row to scan (database/sql's *Row and *Rows, pgx's rows).
type scanner interface{ Scan(dest ...any) error }

const accessKeyCols = `id, user_name, secret_sealed, status, created_at, last_used_at`

// accessKeyValues validates k and returns the values of accessKeyCols, secret sealed.
func accessKeyValues(seal *sealer, now func() time.Time, k AccessKey) ([]any, error) {
	if err := validAccessKey(k); err != nil {
		return nil, err
	}
	created, err := requiredTime(k.CreatedAt, now)
	if err != nil {
		return nil, fmt.Errorf("access key %s: created: %w", k.ID, err)
	}
	lastUsed, err := optionalTime(k.LastUsedAt)
	if err != nil {
		return nil, fmt.Errorf("access key %s: last used: %w", k.ID, err)
	}
	sealed, err := seal.seal(kindAccessKey, k.ID, []byte(k.Secret))
	if err != nil {
		return nil, fmt.Errorf("access key %s: %w", k.ID, err)
	}
	return []any{k.ID, k.User, sealed, k.Status, created, lastUsed}, nil
}

// scanAccessKey reads a row of accessKeyCols and opens its secret.
func scanAccessKey(seal *sealer, sc scanner) (AccessKey, error) {
	var (
		k        AccessKey
		sealed   []byte
		created  int64
		lastUsed sql.NullInt64
	)
	if err := sc.Scan(&k.ID, &k.User, &sealed, &k.Status, &created, &lastUsed); err != nil {
		return AccessKey{}, err
	}
	secret, err := seal.open(kindAccessKey, k.ID, sealed)
	if err != nil {
		return AccessKey{}, fmt.Errorf("access key %s: secret: %w", k.ID, err)
	}
	k.Secret = string(secret)
	k.CreatedAt = fromNanos(created)
	if lastUsed.Valid {
		k.LastUsedAt = fromNanos(lastUsed.Int64)
	}
	return k, nil
}

// sealingKeyCols are the columns a sealing key is written with. A process without the
// token-signing storage key reads sealingKeyReadCols, leaving the signing seed unselected
// (with PostgreSQL roles it may not select it: phantom store roles).
// Whether a signing seed is stored (not its value) tells every reader a file key from
// one whose signing key is in a PKCS#11 token (SealingKey.SignerInToken).
const (
	sealingKeyCols         = `id, key_sealed, created_at, retire_after, public_key, sign_sealed`
	sealingKeyReadCols     = `id, key_sealed, created_at, retire_after, public_key, sign_sealed IS NOT NULL`
	sealingKeyPlaceholders = 6
)

// sealingKeySelect is the column list ListSealingKeys selects.
func sealingKeySelect(seal *sealer) string {
	if seal.holds(kindSigningKey) {
		return sealingKeyReadCols + `, sign_sealed`
	}
	return sealingKeyReadCols
}

// sealingKeyValues validates k and returns the values of sealingKeyCols, keys sealed.
func sealingKeyValues(seal *sealer, now func() time.Time, k SealingKey) ([]any, error) {
	if err := validSealingKey(k); err != nil {
		return nil, err
	}
	created, err := requiredTime(k.CreatedAt, now)
	if err != nil {
		return nil, fmt.Errorf("sealing key %s: created: %w", k.ID, err)
	}
	retire, err := optionalTime(k.RetireAfter)
	if err != nil {
		return nil, fmt.Errorf("sealing key %s: retire after: %w", k.ID, err)
	}
	sealed, err := seal.seal(kindSealingKey, k.ID, k.Key)
	if err != nil {
		return nil, fmt.Errorf("sealing key %s: %w", k.ID, err)
	}
	var pub, signSealed []byte
	if k.SigningSeed != nil {
		if signSealed, err = seal.seal(kindSigningKey, k.ID, k.SigningSeed); err != nil {
			return nil, fmt.Errorf("sealing key %s: %w", k.ID, err)
		}
	}
	if k.SigningSeed != nil || k.SignerInToken {
		pub = k.PublicKey
	}
	return []any{k.ID, sealed, created, retire, pub, signSealed}, nil
}

// scanSealingKey reads a row of sealingKeySelect(seal) and opens its keys.
func scanSealingKey(seal *sealer, sc scanner) (SealingKey, error) {
	var (
		k          SealingKey
		sealed     []byte
		created    int64
		retire     sql.NullInt64
		signSealed []byte
		hasSeed    bool
	)
	dest := []any{&k.ID, &sealed, &created, &retire, &k.PublicKey, &hasSeed}
	withSeed := seal.holds(kindSigningKey)
	if withSeed {
		dest = append(dest, &signSealed)
	}
	if err := sc.Scan(dest...); err != nil {
		return SealingKey{}, err
	}
	key, err := seal.open(kindSealingKey, k.ID, sealed)
	if err != nil {
		return SealingKey{}, fmt.Errorf("key %s: %w", k.ID, err)
	}
	if len(key) != SealingKeySize {
		return SealingKey{}, fmt.Errorf("key %s is %d bytes", k.ID, len(key))
	}
	k.Key = key
	if len(k.PublicKey) == 0 {
		k.PublicKey = nil
	} else if len(k.PublicKey) != SealingKeySize {
		return SealingKey{}, fmt.Errorf("key %s: public key is %d bytes", k.ID, len(k.PublicKey))
	}
	// A public key without a stored seed: the signing key is in a token.
	k.SignerInToken = k.PublicKey != nil && !hasSeed
	if withSeed && signSealed != nil {
		seed, err := seal.open(kindSigningKey, k.ID, signSealed)
		if err != nil {
			return SealingKey{}, fmt.Errorf("key %s: signing key: %w", k.ID, err)
		}
		if len(seed) != SealingKeySize {
			return SealingKey{}, fmt.Errorf("key %s: signing key is %d bytes", k.ID, len(seed))
		}
		k.SigningSeed = seed
	}
	k.CreatedAt = fromNanos(created)
	if retire.Valid {
		k.RetireAfter = fromNanos(retire.Int64)
	}
	return k, nil
}

const mfaDeviceCols = `serial, user_name, seed_sealed, created_at, enabled_at, last_step, failures`

// mfaDeviceValues validates d and returns the values of mfaDeviceCols, seed sealed.
func mfaDeviceValues(seal *sealer, now func() time.Time, d MFADevice) ([]any, error) {
	if err := validMFADevice(d); err != nil {
		return nil, err
	}
	created, err := requiredTime(d.CreatedAt, now)
	if err != nil {
		return nil, fmt.Errorf("mfa device %s: created: %w", d.Serial, err)
	}
	enabled, err := optionalTime(d.EnabledAt)
	if err != nil {
		return nil, fmt.Errorf("mfa device %s: enabled: %w", d.Serial, err)
	}
	sealed, err := seal.seal(kindMFADevice, d.Serial, d.Seed)
	if err != nil {
		return nil, fmt.Errorf("mfa device %s: %w", d.Serial, err)
	}
	return []any{d.Serial, d.User, sealed, created, enabled, d.LastStep, d.Failures}, nil
}

// scanMFADevice reads a row of mfaDeviceCols and opens its seed.
func scanMFADevice(seal *sealer, sc scanner) (MFADevice, error) {
	var (
		d       MFADevice
		sealed  []byte
		created int64
		enabled sql.NullInt64
	)
	if err := sc.Scan(&d.Serial, &d.User, &sealed, &created, &enabled, &d.LastStep, &d.Failures); err != nil {
		return MFADevice{}, err
	}
	seed, err := seal.open(kindMFADevice, d.Serial, sealed)
	if err != nil {
		return MFADevice{}, fmt.Errorf("mfa device %s: seed: %w", d.Serial, err)
	}
	d.Seed = seed
	d.CreatedAt = fromNanos(created)
	if enabled.Valid {
		d.EnabledAt = fromNanos(enabled.Int64)
	}
	return d, nil
}
