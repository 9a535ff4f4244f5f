package store

import (
	"context"
	"crypto/cipher"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/phantom-perimeter/phantom/internal/keys"
)

// Rotation of the storage keys (the store purposes of internal/keys), by the operator:
//
//  0. StageStorageKey adds the purpose's next generation, staged, and records its
//     check: key files exported from then on carry it (components take a new file
//     without a restart), nothing seals under it yet. Needed only where components run
//     with key files: they must hold a generation before values are sealed under it.
//  1. RotateStorageKey makes the staged generation current (staging one if none is; the
//     one before it retiring); every process seals under it within a poll (Version
//     reloads key_generations when the store changed).
//  2. ResealStorageKey re-seals every value of the purpose under the current generation,
//     one column at a time, each row only if it still holds what was read (a writer's
//     change is never overwritten). It is idempotent and resumable: a value already under
//     the current generation is left alone, so running it again after a crash finishes
//     the job. Replicas reading meanwhile open both generations.
//  3. RetireStorageKeys, after the overlap, re-seals once more, marks every generation
//     before the current one retired and re-seals what a process with a stale view
//     sealed meanwhile; from then on no process opens a value under a retired
//     generation (ErrRetiredKey), and key files exported again no longer carry it.
//
// Only a holder of the master key does any of it: a component's key file derives no
// generation it was not given and its store role may not write key_generations.

// KeyGeneration is one generation of a storage purpose's key, as the store records it.
type KeyGeneration struct {
	Purpose    keys.Purpose
	Generation keys.Generation
	State      string // current, retiring or retired
	ChangedAt  time.Time
}

// keyTxRunner runs fn in one write transaction of a backend.
type keyTxRunner func(ctx context.Context, fn func(keyChecks) error) error

// errNeedMaster is why a component cannot rotate: rotation derives new generations.
func errNeedMaster(s *sealer, what string) error {
	return fmt.Errorf("%s: only the operator's master key rotates storage keys (this process is a %s): %w", what, s.keys().Component(), keys.ErrNotHeld)
}

func isStoragePurpose(p keys.Purpose) bool { return slices.Contains(storePurposes, p) }

// storageKeyGenerations lists every purpose's generations: the recorded rows, and
// generation 1, current, of a purpose never rotated (it has no row; a staged generation
// may).
func storageKeyGenerations(rows []genRow) []KeyGeneration {
	var out []KeyGeneration
	for _, p := range storePurposes {
		first := true
		for _, r := range rows {
			if r.p == p && r.g == keys.FirstGeneration {
				first = false
			}
		}
		if first {
			out = append(out, KeyGeneration{Purpose: p, Generation: keys.FirstGeneration, State: genCurrent})
		}
		for _, r := range rows {
			if r.p == p {
				out = append(out, KeyGeneration{Purpose: p, Generation: r.g, State: r.state, ChangedAt: fromNanos(r.at)})
			}
		}
	}
	return out
}

// stageStorageKey adds p's next generation as staged (or returns the one staged):
// key files exported from now on carry it, nothing seals under it yet.
func stageStorageKey(ctx context.Context, run keyTxRunner, s *sealer, p keys.Purpose, now time.Time) (keys.Generation, error) {
	return nextStorageKey(ctx, run, s, p, now, false)
}

// rotateStorageKey makes p's staged generation current, staging one first if none is.
func rotateStorageKey(ctx context.Context, run keyTxRunner, s *sealer, p keys.Purpose, now time.Time) (keys.Generation, error) {
	return nextStorageKey(ctx, run, s, p, now, true)
}

func nextStorageKey(ctx context.Context, run keyTxRunner, s *sealer, p keys.Purpose, now time.Time, promote bool) (keys.Generation, error) {
	what := "stage"
	if promote {
		what = "rotate"
	}
	if !s.keys().HasMaster() {
		return 0, errNeedMaster(s, what+" "+string(p))
	}
	if !isStoragePurpose(p) {
		return 0, fmt.Errorf("%s %s: not a storage purpose (one of %v)", what, p, storePurposes)
	}
	var next keys.Generation
	err := run(ctx, func(kc keyChecks) error {
		rows, err := kc.generations(ctx)
		if err != nil {
			return err
		}
		cur, top, staged := keys.FirstGeneration, keys.FirstGeneration, keys.Generation(0)
		for _, r := range rows {
			if r.p != p {
				continue
			}
			top = max(top, r.g)
			switch r.state {
			case genCurrent:
				cur = r.g
			case genStaged:
				staged = r.g
			}
		}
		next = staged
		if next == 0 {
			next = top + 1
			if err := kc.putGeneration(ctx, genRow{p: p, g: next, state: genStaged, at: now.UnixNano()}); err != nil {
				return err
			}
		}
		if promote {
			if err := kc.putGeneration(ctx, genRow{p: p, g: cur, state: genRetiring, at: now.UnixNano()}); err != nil {
				return err
			}
			if err := kc.putGeneration(ctx, genRow{p: p, g: next, state: genCurrent, at: now.UnixNano()}); err != nil {
				return err
			}
		}
		if rows, err = kc.generations(ctx); err != nil {
			return err
		}
		if err := s.loadGenerations(rows, -1); err != nil {
			return err
		}
		pg := purposeGen{p, next}
		if _, found, err := kc.purposeCheck(ctx, pg.String()); err != nil || found {
			return err
		}
		sealed, err := s.sealCheck(pg)
		if err != nil {
			return err
		}
		return kc.putPurposeCheck(ctx, pg.String(), sealed)
	})
	if err != nil {
		return 0, fmt.Errorf("%s %s: %w", what, p, err)
	}
	return next, nil
}

// resealStorageKey re-seals every value of p not under its current generation, a
// column per transaction. With rescue, values under retired generations are opened too
// (by the master key, which derives them): what a stale writer sealed during
// retirement.
func resealStorageKey(ctx context.Context, run keyTxRunner, s *sealer, p keys.Purpose, rescue bool) (int, error) {
	if !s.keys().HasMaster() {
		return 0, errNeedMaster(s, "re-seal "+string(p))
	}
	if !isStoragePurpose(p) {
		return 0, fmt.Errorf("re-seal %s: not a storage purpose", p)
	}
	open := s.openingAEAD
	if rescue {
		open = func(kind string, g keys.Generation) (cipher.AEAD, error) {
			k, err := s.keys().KeyGeneration(kindPurpose[kind], g)
			if err != nil {
				return nil, err
			}
			return newAEAD(k)
		}
	}
	n := 0
	for _, c := range sealedColumns {
		err := run(ctx, func(kc keyChecks) error {
			rows, err := kc.generations(ctx)
			if err != nil {
				return err
			}
			if err := s.loadGenerations(rows, -1); err != nil {
				return err
			}
			cur := s.gens.Load().currentOf(p)
			vals, err := kc.sealedValues(ctx, c)
			if err != nil {
				return err
			}
			for _, id := range slices.Sorted(maps.Keys(vals)) {
				v, kind := vals[id], c.kind
				if c.table == "secrets" {
					kind = secretKind(id)
				}
				if kindPurpose[kind] != p {
					continue
				}
				if g, ok := sealedGeneration(v); ok && g == cur {
					continue
				}
				pt, err := s.openWith(kind, id, v, open)
				if err != nil {
					return fmt.Errorf("%s %s: %w", kind, id, err)
				}
				nv, err := s.seal(kind, id, pt)
				if err != nil {
					return fmt.Errorf("%s %s: %w", kind, id, err)
				}
				ok, err := kc.updateSealedIf(ctx, c, id, v, nv)
				if err != nil {
					return fmt.Errorf("%s %s: %w", kind, id, err)
				}
				if ok {
					n++
				}
			}
			return nil
		})
		if err != nil {
			return n, fmt.Errorf("re-seal %s in %s.%s: %w", p, c.table, c.col, err)
		}
	}
	return n, nil
}

// retireStorageKeys retires p's generations that stopped being current at least overlap
// ago, re-sealing before and after; it returns the generations retired.
func retireStorageKeys(ctx context.Context, run keyTxRunner, s *sealer, p keys.Purpose, overlap time.Duration, now time.Time) ([]keys.Generation, int, error) {
	n, err := resealStorageKey(ctx, run, s, p, false)
	if err != nil {
		return nil, n, err
	}
	var retired []keys.Generation
	var young []string
	err = run(ctx, func(kc keyChecks) error {
		rows, err := kc.generations(ctx)
		if err != nil {
			return err
		}
		for _, r := range rows {
			if r.p != p || r.state != genRetiring {
				continue
			}
			if since := now.Sub(fromNanos(r.at)); since < overlap {
				young = append(young, fmt.Sprintf("generation %d (retiring for %s)", r.g, since.Round(time.Second)))
				continue
			}
			if err := kc.putGeneration(ctx, genRow{p: p, g: r.g, state: genRetired, at: now.UnixNano()}); err != nil {
				return err
			}
			retired = append(retired, r.g)
		}
		if rows, err = kc.generations(ctx); err != nil {
			return err
		}
		return s.loadGenerations(rows, -1)
	})
	if err != nil {
		return nil, n, fmt.Errorf("retire %s: %w", p, err)
	}
	m, err := resealStorageKey(ctx, run, s, p, true)
	n += m
	if err != nil {
		return retired, n, err
	}
	if len(young) > 0 {
		return retired, n, &OverlapError{Purpose: p, Waiting: young, Overlap: overlap}
	}
	return retired, n, nil
}

// OverlapError says some generations were not retired: they stopped being current less
// than the overlap ago.
type OverlapError struct {
	Purpose keys.Purpose
	Waiting []string
	Overlap time.Duration
}

func (e *OverlapError) Error() string {
	return fmt.Sprintf("retire %s: not yet retired, within the %s overlap: %v", e.Purpose, e.Overlap, e.Waiting)
}

// setKeys replaces a component's key file ring with ring, a newer export of the same
// component's file, once the store's checks of every generation it carries pass: a
// process takes new generations without a restart.
func setKeys(ctx context.Context, run keyTxRunner, s *sealer, ring *keys.Ring) error {
	cur := s.keys()
	switch {
	case cur.HasMaster():
		return errors.New("replace keys: this process holds the master key")
	case ring == nil || ring.HasMaster() || ring.Component() != cur.Component():
		return fmt.Errorf("replace keys: not a %s's key file", cur.Component())
	}
	ns, err := newSealer(ring)
	if err != nil {
		return err
	}
	if err := run(ctx, func(kc keyChecks) error { return checkKeys(ctx, kc, ns) }); err != nil {
		return fmt.Errorf("replace keys: %w", err)
	}
	s.ring.Store(ring)
	s.gens.Store(ns.gens.Load())
	return nil
}
