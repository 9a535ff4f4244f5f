package store

import (
	"context"
	"fmt"
	"math"

	"github.com/phantom-perimeter/phantom/internal/keys"
)

// keyChecks is what checkKeys runs against a backend, inside one write transaction
// (SQLite's and PostgreSQL's SQL differ only in placeholders).
type keyChecks interface {
	// legacyCheck and putLegacyCheck read and write master_key_check's one row.
	legacyCheck(ctx context.Context) (sealed []byte, found bool, err error)
	putLegacyCheck(ctx context.Context, sealed []byte) error
	// purposeCheck and putPurposeCheck read and write key_checks' row named name (a
	// purpose generation, purposeGen.String).
	purposeCheck(ctx context.Context, name string) (sealed []byte, found bool, err error)
	putPurposeCheck(ctx context.Context, name string, sealed []byte) error
	// generations reads key_generations; putGeneration inserts or updates one row.
	generations(ctx context.Context) ([]genRow, error)
	putGeneration(ctx context.Context, r genRow) error
	// sealedValues returns every row's id and sealed column of a table of sealedColumns;
	// updateSealed replaces one.
	sealedValues(ctx context.Context, c sealedColumn) (map[string][]byte, error)
	updateSealed(ctx context.Context, c sealedColumn, id string, v []byte) error
	// updateSealedIf replaces one only if it still holds old.
	updateSealedIf(ctx context.Context, c sealedColumn, id string, old, v []byte) (bool, error)
}

// sealedColumn is a column holding sealed values, and the kind they are sealed as.
type sealedColumn struct{ table, id, col, kind string }

// sealedColumns are every sealed column: what a holder of the master key rewraps.
var sealedColumns = []sealedColumn{
	{"access_keys", "id", "secret_sealed", kindAccessKey},
	{"sealing_keys", "id", "key_sealed", kindSealingKey},
	{"sealing_keys", "id", "sign_sealed", kindSigningKey},
	{"mfa_devices", "serial", "seed_sealed", kindMFADevice},
	{"secrets", "name", "sealed", kindSecret},
}

// checkKeys checks, at open, that the keys the process holds are this database's:
//
//   - with the master key: the master key's own check (ErrWrongMasterKey), then each
//     storage purpose's check, recorded on first open; then every value still sealed
//     under the single pre-purpose key is rewrapped under its purpose's key;
//   - with a component key file: each storage purpose it holds must have its check
//     (recorded by a first open with the master key, which `phantom keys export` does)
//     and open it (ErrWrongKey).
func checkKeys(ctx context.Context, kc keyChecks, s *sealer) error {
	if s.legacy != nil {
		sealed, found, err := kc.legacyCheck(ctx)
		switch {
		case err != nil:
			return fmt.Errorf("check master key: %w", err)
		case !found:
			if sealed, err = s.sealLegacyCheck(); err == nil {
				err = kc.putLegacyCheck(ctx, sealed)
			}
			if err != nil {
				return fmt.Errorf("check master key: record: %w", err)
			}
		case !s.openLegacyCheck(sealed):
			return ErrWrongMasterKey
		}
	}
	rows, err := kc.generations(ctx)
	if err != nil {
		return fmt.Errorf("read key generations: %w", err)
	}
	if err := s.loadGenerations(rows, -1); err != nil {
		return err
	}
	for _, pg := range s.liveGenerations() {
		sealed, found, err := kc.purposeCheck(ctx, pg.String())
		switch {
		case err != nil:
			return fmt.Errorf("check %s key: %w", pg, err)
		case !found && s.legacy == nil:
			return fmt.Errorf("check %s key: the store has no check of it yet: open it once with the master key first (phantom keys export does)", pg)
		case !found:
			if sealed, err = s.sealCheck(pg); err == nil {
				err = kc.putPurposeCheck(ctx, pg.String(), sealed)
			}
			if err != nil {
				return fmt.Errorf("check %s key: record: %w", pg, err)
			}
		case !s.openCheck(pg, sealed):
			if s.legacy != nil {
				return ErrWrongMasterKey
			}
			return fmt.Errorf("%s key: %w", pg, ErrWrongKey)
		}
	}
	if s.legacy == nil {
		return nil
	}
	for _, c := range sealedColumns {
		vals, err := kc.sealedValues(ctx, c)
		if err != nil {
			return fmt.Errorf("rewrap %s.%s: %w", c.table, c.col, err)
		}
		for id, v := range vals {
			kind := c.kind
			if c.table == "secrets" {
				kind = secretKind(id)
			}
			nv, err := s.rewrap(kind, id, v)
			if err != nil {
				return fmt.Errorf("rewrap %s %s: %w", kind, id, err)
			}
			if nv == nil {
				continue
			}
			if err := kc.updateSealed(ctx, c, id, nv); err != nil {
				return fmt.Errorf("rewrap %s %s: %w", kind, id, err)
			}
		}
	}
	return nil
}

// genScanner is the rows of a key_generations query (database/sql's and pgx's).
type genScanner interface {
	Next() bool
	Scan(dest ...any) error
	Err() error
}

func scanGenRows(rows genScanner) ([]genRow, error) {
	var out []genRow
	for rows.Next() {
		var (
			r genRow
			p string
			g int64
		)
		if err := rows.Scan(&p, &g, &r.state, &r.at); err != nil {
			return nil, err
		}
		if g < int64(keys.FirstGeneration) || g > math.MaxUint32 {
			return nil, fmt.Errorf("key generation %d of %s out of range", g, p)
		}
		r.p, r.g = keys.Purpose(p), keys.Generation(g)
		out = append(out, r)
	}
	return out, rows.Err()
}
