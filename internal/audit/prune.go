package audit

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/phantom-perimeter/phantom/internal/atomicfile"
)

// Retention. Old segments leave a chain only as a prefix (the oldest first, never the
// newest), only sealed (a final digest), and only once the whole chain verifies: prune
// never removes evidence of tampering. What goes is described by a Checkpoint — the
// last removed record's seq and hash, which the first remaining segment's opening
// digest names — that the caller records in the anchor store before removing anything
// (Prune does it through record), so verification reports the gap as pruned; the chain
// directory keeps a copy (pruned.json), which without anchors is only a claim.

// PrunePlan is what Prune would remove from one chain.
type PrunePlan struct {
	Chain      string
	Segments   []uint64 // ascending, contiguous from the chain's first remaining
	FirstSeq   uint64   // the first record removed
	Checkpoint Checkpoint
}

// PlanPrune returns what pruning chain in dir of the segments sealed before before would
// remove: the sealed segments from the oldest on whose final digest was signed before
// before, the newest segment never. ok is false when nothing would go.
func PlanPrune(dir, chain string, before time.Time) (PrunePlan, bool, error) {
	cdir := filepath.Join(dir, chain)
	segs, _, _, err := chainFiles(os.DirFS(cdir), ".")
	if err != nil {
		return PrunePlan{}, false, fmt.Errorf("prune audit chain %s: %w", chain, err)
	}
	plan := PrunePlan{Chain: chain}
	for i, n := range segs {
		if i == len(segs)-1 || i > 0 && n != segs[i-1]+1 {
			break // the newest segment, or a gap: stop
		}
		ds, _, _, err := readDigests(filepath.Join(cdir, digestName(n)))
		if err != nil {
			return PrunePlan{}, false, fmt.Errorf("prune audit chain %s: %w", chain, err)
		}
		if len(ds) == 0 {
			break
		}
		last := ds[len(ds)-1]
		if !last.Final || !last.Time.Before(before) {
			break
		}
		if len(plan.Segments) == 0 {
			plan.FirstSeq = ds[0].FirstSeq
		}
		plan.Segments = append(plan.Segments, n)
		plan.Checkpoint = Checkpoint{Chain: chain, Segment: n, Seq: last.LastSeq, Hash: last.LastHash, Before: before.UTC()}
	}
	return plan, len(plan.Segments) > 0 && plan.Checkpoint.Seq > 0, nil
}

// Prune removes plan's segments from the chain in dir: it records the checkpoint with
// record (the anchor store) first and writes the chain's pruned.json, then moves each
// segment's files to archive/<chain>/ (when archive is not "") or deletes them. It
// does not verify the chain: the caller does, before.
func Prune(dir string, plan PrunePlan, archive string, now time.Time, record func(Checkpoint) error) error {
	cdir := filepath.Join(dir, plan.Chain)
	cp := plan.Checkpoint
	cp.Time = now.UTC()
	if err := record(cp); err != nil {
		return fmt.Errorf("prune audit chain %s: record the checkpoint: %w", plan.Chain, err)
	}
	b, err := json.MarshalIndent(cp, "", "  ")
	if err != nil {
		return err
	}
	if err := atomicfile.Write(filepath.Join(cdir, prunedFile), append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("prune audit chain %s: %w", plan.Chain, err)
	}
	if archive != "" {
		if err := os.MkdirAll(filepath.Join(archive, plan.Chain), 0o700); err != nil {
			return fmt.Errorf("prune audit chain %s: %w", plan.Chain, err)
		}
	}
	for _, n := range plan.Segments {
		for _, name := range []string{digestName(n), segmentName(n)} {
			path := filepath.Join(cdir, name)
			if archive != "" {
				if err := moveFile(path, filepath.Join(archive, plan.Chain, name)); err != nil {
					return fmt.Errorf("prune audit chain %s: archive %s: %w", plan.Chain, name, err)
				}
				continue
			}
			if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("prune audit chain %s: %w", plan.Chain, err)
			}
		}
	}
	return syncDir(cdir)
}

// moveFile renames src to dst, copying (and syncing) when they are on different file
// systems.
func moveFile(src, dst string) error {
	if err := os.Rename(src, dst); err == nil {
		return nil
	}
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Sync(); err != nil {
		out.Close()
		return err
	}
	if err := out.Close(); err != nil {
		return err
	}
	return os.Remove(src)
}
