package proctest

import (
	"context"
	"encoding/base64"
	"fmt"

	"github.com/phantom-perimeter/phantom/internal/audit"
	"github.com/phantom-perimeter/phantom/internal/detect/consume"
	"github.com/phantom-perimeter/phantom/internal/events"
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

// OpenStore opens the cluster's store as its operator.
func (c *Cluster) OpenStore(ctx context.Context) (store.Store, error) {
	mk, err := base64.StdEncoding.DecodeString(c.masterKey)
	if err != nil {
		return nil, err
	}
	return store.Open(ctx, store.OpenConfig{URL: c.cfg.StoreURL, MasterKey: mk})
}

// StreamCursors returns how many records of each audit chain the detector replicas have
// consumed from the audit stream, summed over the partitions, as committed in the store.
func (c *Cluster) StreamCursors(ctx context.Context) (map[string]int64, error) {
	mk, err := base64.StdEncoding.DecodeString(c.masterKey)
	if err != nil {
		return nil, err
	}
	st, err := store.Open(ctx, store.OpenConfig{URL: c.cfg.StoreURL, MasterKey: mk})
	if err != nil {
		return nil, fmt.Errorf("open the cluster's store: %w", err)
	}
	defer st.Close()
	m := map[string]int64{}
	for n := range events.Partitions {
		cs, err := st.ListAuditCursors(ctx, consume.PartitionConsumer(n))
		if err != nil {
			return nil, err
		}
		for _, cur := range cs {
			m[cur.Chain] += cur.Events
		}
	}
	return m, nil
}

// ChainRecords counts the records of process name's audit chain (named name too).
func (c *Cluster) ChainRecords(name string) (int64, error) {
	var n int64
	err := audit.ReadChain(c.ProcAuditDir(name), name, 0, func(audit.Entry) error { n++; return nil })
	return n, err
}
