package proctest

import (
	"context"
	"encoding/base64"
	"fmt"

	"github.com/phantom-perimeter/phantom/internal/store"
)

// DetectorCursors returns how many records of each audit chain the detector has
// consumed, as committed in the store.
func (c *Cluster) DetectorCursors(ctx context.Context) (map[string]int64, error) {
	mk, err := base64.StdEncoding.DecodeString(c.masterKey)
	if err != nil {
		return nil, err
	}
	st, err := store.Open(ctx, store.OpenConfig{URL: c.cfg.StoreURL, MasterKey: mk})
	if err != nil {
		return nil, fmt.Errorf("open the cluster's store: %w", err)
	}
	defer st.Close()
	cs, err := st.ListAuditCursors(ctx, "detector")
	if err != nil {
		return nil, err
	}
	m := make(map[string]int64, len(cs))
	for _, cur := range cs {
		m[cur.Chain] = cur.Events
	}
	return m, nil
}
