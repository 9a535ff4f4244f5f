package admin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"time"

	"github.com/phantom-perimeter/phantom/internal/keys"
	"github.com/phantom-perimeter/phantom/internal/store"
)

// Sealing key statuses, as `phantom keys list` shows them.
const (
	// KeyCurrent: seals new session tokens (the newest current key does) and opens them.
	KeyCurrent = "Current"
	// KeyRetiring: rotated out; opens the tokens it sealed until RetireAfter.
	KeyRetiring = "Retiring"
	// KeyRetired: past RetireAfter; opens nothing.
	KeyRetired = "Retired"
	// KeyStaged: a storage key generation carried by key files exported now that seals
	// nothing until `phantom keys rotate --purpose` makes it current.
	KeyStaged = "Staged"
)

// SealingKey describes a token-sealing key. It has no field for the key bytes, so no
// listing can print them.
type SealingKey struct {
	KeyId       string
	Status      string
	CreateDate  Time
	RetireAfter *Time `json:",omitempty"`
}

// ListKeysOutput is `phantom keys list`'s output, newest key first, and the
// generations of the storage keys.
type ListKeysOutput struct {
	SealingKeys []SealingKey
	StorageKeys []StorageKey `json:",omitempty"`
}

// StorageKey is one generation of a storage purpose's key (derived from the master key,
// never printed): Current seals, Retiring still opens what it sealed, Retired opens
// nothing.
type StorageKey struct {
	Purpose    string
	Generation int
	Status     string
	ChangeDate *Time `json:",omitempty"`
}

func (o *ListKeysOutput) writeText(w io.Writer) error {
	for _, k := range o.SealingKeys {
		retire := ""
		if k.RetireAfter != nil {
			retire = k.RetireAfter.String()
		}
		if err := textLine(w, "SealingKeys", k.CreateDate.String(), k.KeyId, retire, k.Status); err != nil {
			return err
		}
	}
	return writeStorageKeys(w, o.StorageKeys)
}

func writeStorageKeys(w io.Writer, ks []StorageKey) error {
	for _, k := range ks {
		changed := ""
		if k.ChangeDate != nil {
			changed = k.ChangeDate.String()
		}
		if err := textLine(w, "StorageKeys", k.Purpose, strconv.Itoa(k.Generation), changed, k.Status); err != nil {
			return err
		}
	}
	return nil
}

// RotateKeysOutput is `phantom keys rotate`'s output: the new key's id and every key.
type RotateKeysOutput struct {
	KeyId       string
	SealingKeys []SealingKey
}

func (o *RotateKeysOutput) writeText(w io.Writer) error {
	if err := textLine(w, "KeyId", o.KeyId); err != nil {
		return err
	}
	return (&ListKeysOutput{SealingKeys: o.SealingKeys}).writeText(w)
}

// ListKeys lists the token-sealing keys (ids and times, never key material).
func (a *Admin) ListKeys(ctx context.Context) (*ListKeysOutput, error) {
	keys, err := a.store.ListSealingKeys(ctx)
	if err != nil {
		return nil, err
	}
	now := a.now()
	out := &ListKeysOutput{SealingKeys: make([]SealingKey, 0, len(keys))}
	for _, k := range keys {
		clear(k.Key)
		sk := SealingKey{KeyId: k.ID, Status: KeyCurrent, CreateDate: Time(k.CreatedAt)}
		if !k.RetireAfter.IsZero() {
			t := Time(k.RetireAfter)
			sk.RetireAfter = &t
			sk.Status = KeyRetiring
			if !now.Before(k.RetireAfter) {
				sk.Status = KeyRetired
			}
		}
		out.SealingKeys = append(out.SealingKeys, sk)
	}
	if out.StorageKeys, err = a.storageKeys(ctx); err != nil {
		return nil, err
	}
	return out, nil
}

// storageKeys lists the storage keys' generations.
func (a *Admin) storageKeys(ctx context.Context) ([]StorageKey, error) {
	gens, err := a.store.StorageKeyGenerations(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]StorageKey, 0, len(gens))
	for _, g := range gens {
		k := StorageKey{Purpose: string(g.Purpose), Generation: int(g.Generation), Status: storageKeyStatus[g.State]}
		if !g.ChangedAt.IsZero() {
			t := Time(g.ChangedAt)
			k.ChangeDate = &t
		}
		out = append(out, k)
	}
	return out, nil
}

var storageKeyStatus = map[string]string{"staged": KeyStaged, "current": KeyCurrent, "retiring": KeyRetiring, "retired": KeyRetired}

// liveGenerations are the generations of each storage purpose not retired: what a key
// file exported now carries.
func (a *Admin) liveGenerations(ctx context.Context) (map[keys.Purpose][]keys.Generation, error) {
	gens, err := a.store.StorageKeyGenerations(ctx)
	if err != nil {
		return nil, err
	}
	out := map[keys.Purpose][]keys.Generation{}
	for _, g := range gens {
		if g.State != "retired" {
			out[g.Purpose] = append(out[g.Purpose], g.Generation)
		}
	}
	return out, nil
}

// RotateStorageKeyOutput is `phantom keys rotate --purpose`'s output.
type RotateStorageKeyOutput struct {
	Purpose     string
	Generation  int
	Resealed    int
	StorageKeys []StorageKey
}

func (o *RotateStorageKeyOutput) writeText(w io.Writer) error {
	if err := textLine(w, "Generation", o.Purpose, strconv.Itoa(o.Generation), strconv.Itoa(o.Resealed)); err != nil {
		return err
	}
	return writeStorageKeys(w, o.StorageKeys)
}

// storagePurpose checks that p names a storage purpose.
func storagePurpose(p string) (keys.Purpose, error) {
	if slices.Contains(keys.StoragePurposes(), keys.Purpose(p)) {
		return keys.Purpose(p), nil
	}
	return "", validation(p, "purpose", fmt.Sprintf("Member must be a storage purpose: one of %v", keys.StoragePurposes()))
}

// RotateStorageKey makes the next generation of storage purpose p current and re-seals
// every value of p under it (idempotent: run it again, or ResealStorageKey, to finish an
// interrupted re-seal). Processes holding the master key seal under it within a poll;
// component key files must be exported again to carry it (they keep opening what the
// generations they hold sealed until those are retired).
func (a *Admin) RotateStorageKey(ctx context.Context, p string) (*RotateStorageKeyOutput, error) {
	pu, err := storagePurpose(p)
	if err != nil {
		return nil, err
	}
	g, err := a.store.RotateStorageKey(ctx, pu)
	if err != nil {
		return nil, err
	}
	out := &RotateStorageKeyOutput{Purpose: p, Generation: int(g)}
	out.Resealed, err = a.store.ResealStorageKey(ctx, pu)
	if rerr := a.record(ctx, "RotateStorageKey", map[string]any{"purpose": p}, map[string]any{"generation": int(g), "resealed": out.Resealed}); rerr != nil && err == nil {
		err = fmt.Errorf("rotated, but the audit record failed: %w", rerr)
	}
	if err != nil {
		return nil, fmt.Errorf("generation %d of %s is current; re-seal it again (phantom keys rotate --purpose %s --reseal-only): %w", g, p, p, err)
	}
	if out.StorageKeys, err = a.storageKeys(ctx); err != nil {
		return nil, err
	}
	return out, nil
}

// StageStorageKey adds the next generation of storage purpose p, staged: key files
// exported from now on carry it, nothing seals under it until RotateStorageKey. Where
// components run with key files, stage, export their files, then rotate: they hold the
// new generation before any value is sealed under it.
func (a *Admin) StageStorageKey(ctx context.Context, p string) (*RotateStorageKeyOutput, error) {
	pu, err := storagePurpose(p)
	if err != nil {
		return nil, err
	}
	g, err := a.store.StageStorageKey(ctx, pu)
	if err != nil {
		return nil, err
	}
	out := &RotateStorageKeyOutput{Purpose: p, Generation: int(g)}
	if out.StorageKeys, err = a.storageKeys(ctx); err != nil {
		return nil, err
	}
	if err := a.record(ctx, "StageStorageKey", map[string]any{"purpose": p}, map[string]any{"generation": int(g)}); err != nil {
		return out, fmt.Errorf("staged, but the audit record failed: %w", err)
	}
	return out, nil
}

// ResealStorageKey re-seals every value of storage purpose p under its current
// generation: what finishes an interrupted rotation.
func (a *Admin) ResealStorageKey(ctx context.Context, p string) (*RotateStorageKeyOutput, error) {
	pu, err := storagePurpose(p)
	if err != nil {
		return nil, err
	}
	n, err := a.store.ResealStorageKey(ctx, pu)
	if err != nil {
		return nil, err
	}
	out := &RotateStorageKeyOutput{Purpose: p, Resealed: n}
	if out.StorageKeys, err = a.storageKeys(ctx); err != nil {
		return nil, err
	}
	for _, k := range out.StorageKeys {
		if k.Purpose == p && k.Status == KeyCurrent {
			out.Generation = k.Generation
		}
	}
	if err := a.record(ctx, "ResealStorageKey", map[string]any{"purpose": p}, map[string]any{"resealed": n}); err != nil {
		return out, fmt.Errorf("re-sealed, but the audit record failed: %w", err)
	}
	return out, nil
}

// RetireStorageKeysOutput is `phantom keys retire`'s output.
type RetireStorageKeysOutput struct {
	Purpose     string
	Retired     []int
	Resealed    int
	StorageKeys []StorageKey
}

func (o *RetireStorageKeysOutput) writeText(w io.Writer) error {
	for _, g := range o.Retired {
		if err := textLine(w, "Retired", o.Purpose, strconv.Itoa(g)); err != nil {
			return err
		}
	}
	return writeStorageKeys(w, o.StorageKeys)
}

// RetireStorageKeys retires the generations of storage purpose p that stopped being
// current at least overlap ago: every value is re-sealed under the current one first,
// and from then on no process opens a value under a retired generation. Key files
// exported afterwards no longer carry them.
func (a *Admin) RetireStorageKeys(ctx context.Context, p string, overlap time.Duration) (*RetireStorageKeysOutput, error) {
	pu, err := storagePurpose(p)
	if err != nil {
		return nil, err
	}
	if overlap < 0 {
		return nil, validation(overlap.String(), "overlap", "Member must not be negative")
	}
	gens, n, err := a.store.RetireStorageKeys(ctx, pu, overlap)
	out := &RetireStorageKeysOutput{Purpose: p, Resealed: n}
	for _, g := range gens {
		out.Retired = append(out.Retired, int(g))
	}
	if len(gens) > 0 || n > 0 {
		if rerr := a.record(ctx, "RetireStorageKeys", map[string]any{"purpose": p, "overlap": overlap.String()}, map[string]any{"retired": out.Retired, "resealed": n}); rerr != nil && err == nil {
			err = fmt.Errorf("retired, but the audit record failed: %w", rerr)
		}
	}
	var oe *store.OverlapError
	if errors.As(err, &oe) {
		return nil, &Error{Code: CodeValidationError, Message: err.Error()}
	}
	if err != nil {
		return nil, err
	}
	if out.StorageKeys, err = a.storageKeys(ctx); err != nil {
		return nil, err
	}
	return out, nil
}

// RotateKeys adds a new current sealing key; the previous current keys keep opening the
// tokens they sealed until the longest session they can have sealed has expired
// (identity.DefaultMaxSessionDuration after now). With no key yet it creates the first.
func (a *Admin) RotateKeys(ctx context.Context) (*RotateKeysOutput, error) {
	id, err := a.ids.RotateSealingKey(ctx)
	if err != nil {
		return nil, err
	}
	list, err := a.ListKeys(ctx)
	if err != nil {
		return nil, err
	}
	return &RotateKeysOutput{KeyId: id, SealingKeys: list.SealingKeys}, nil
}
