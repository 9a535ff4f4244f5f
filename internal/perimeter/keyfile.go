package perimeter

import (
	"context"
	"log/slog"
	"os"
	"time"

	"github.com/phantom-perimeter/phantom/internal/datadir"
	"github.com/phantom-perimeter/phantom/internal/keys"
)

// keyFileInterval is how often a component looks at its key file when the process polls
// nothing faster.
const keyFileInterval = 5 * time.Second

// watchKeyFile reloads the process's component key file when it is replaced (the
// operator exported it again after rotating a storage key: `phantom keys rotate
// --purpose`), so the process opens values under the new generation, and stops holding
// retired ones, without a restart. A file that does not load, or whose keys the store's
// checks refuse, changes nothing: the process keeps the keys it has and says why.
func (p *Perimeter) watchKeyFile(ctx context.Context, path string, c keys.Component, interval time.Duration, log *slog.Logger) {
	if interval <= 0 || interval > keyFileInterval {
		interval = keyFileInterval
	}
	last, _ := os.Stat(path)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		cur, err := os.Stat(path)
		if err != nil || (last != nil && os.SameFile(last, cur) && cur.ModTime().Equal(last.ModTime()) && cur.Size() == last.Size()) {
			continue
		}
		last = cur
		ring, err := datadir.LoadKeys(datadir.StoreOptions{KeysFile: path, Component: c})
		if err == nil {
			err = p.Store.SetKeys(ctx, ring)
		}
		if err != nil {
			log.Error("key file changed but not taken; keeping the keys held", "path", path, "error", err)
			continue
		}
		held := map[string][]keys.Generation{}
		for _, pu := range keys.StoragePurposes() {
			if g := ring.Generations(pu); len(g) > 0 {
				held[string(pu)] = g
			}
		}
		log.Info("key file reloaded", "path", path, "storage_generations", held)
	}
}
