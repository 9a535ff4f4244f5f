package identity

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/phantom-perimeter/phantom/internal/store"
)

var errNotFound = errors.New("fake store: not found")

// fakeStore is an in-memory store implementing every interface identity consumes, with a
// version counter bumped by each write and an injectable failure.
type fakeStore struct {
	mu      sync.Mutex
	version int64
	keys    map[string]AccessKey
	sealing []SealingKey // insertion order; listed newest first
	revs    map[string]time.Time
	nodeRev map[string]time.Time
	nodes   map[string]store.Node
	fail    error // returned by every read when set
	polls   int   // Version calls
}

func newFakeStore() *fakeStore {
	return &fakeStore{keys: map[string]AccessKey{}, revs: map[string]time.Time{}, nodeRev: map[string]time.Time{}, nodes: map[string]store.Node{}}
}

func (f *fakeStore) setFail(err error) { f.mu.Lock(); f.fail = err; f.mu.Unlock() }

func (f *fakeStore) PutAccessKey(_ context.Context, k AccessKey) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, dup := f.keys[k.ID]; dup {
		return fmt.Errorf("fake store: access key %s exists", k.ID)
	}
	f.keys[k.ID] = k
	f.version++
	return nil
}

func (f *fakeStore) GetAccessKey(_ context.Context, id string) (AccessKey, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	k, ok := f.keys[id]
	if !ok {
		return AccessKey{}, fmt.Errorf("get access key %s: %w", id, errNotFound)
	}
	return k, nil
}

func (f *fakeStore) ListAccessKeys(_ context.Context, user string) ([]AccessKey, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail != nil {
		return nil, f.fail
	}
	var out []AccessKey
	for _, k := range f.keys {
		if user == "" || k.User == user {
			out = append(out, k)
		}
	}
	return out, nil
}

func (f *fakeStore) UpdateAccessKeyStatus(_ context.Context, id, status string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	k, ok := f.keys[id]
	if !ok {
		return fmt.Errorf("update access key %s: %w", id, errNotFound)
	}
	k.Status = status
	f.keys[id] = k
	f.version++
	return nil
}

func (f *fakeStore) DeleteAccessKey(_ context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.keys[id]; !ok {
		return fmt.Errorf("delete access key %s: %w", id, errNotFound)
	}
	delete(f.keys, id)
	f.version++
	return nil
}

func (f *fakeStore) PutSealingKey(_ context.Context, k SealingKey) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, e := range f.sealing {
		if e.ID == k.ID {
			return fmt.Errorf("fake store: sealing key %s exists", k.ID)
		}
	}
	k.Key = slices.Clone(k.Key)
	f.sealing = append(f.sealing, k)
	f.version++
	return nil
}

func (f *fakeStore) ListSealingKeys(context.Context) ([]SealingKey, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail != nil {
		return nil, f.fail
	}
	out := slices.Clone(f.sealing)
	slices.Reverse(out)
	for i := range out {
		out[i].Key = slices.Clone(out[i].Key)
	}
	return out, nil
}

func (f *fakeStore) RetireSealingKey(_ context.Context, id string, after time.Time) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := range f.sealing {
		if f.sealing[i].ID == id {
			f.sealing[i].RetireAfter = after
			f.version++
			return nil
		}
	}
	return fmt.Errorf("retire sealing key %s: %w", id, errNotFound)
}

func (f *fakeStore) PutRevocation(_ context.Context, r Revocation) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	m, k := f.revs, r.Role
	if r.Node != "" {
		m, k = f.nodeRev, r.Node
	}
	if prev, ok := m[k]; !ok || r.Before.After(prev) {
		m[k] = r.Before
	}
	f.version++
	return nil
}

func (f *fakeStore) putNode(n store.Node) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.nodes[n.Name] = n
	f.version++
}

func (f *fakeStore) ListNodes(context.Context) ([]store.Node, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail != nil {
		return nil, f.fail
	}
	var out []store.Node
	for _, n := range f.nodes {
		out = append(out, n)
	}
	return out, nil
}

func (f *fakeStore) ListRevocations(context.Context) ([]Revocation, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail != nil {
		return nil, f.fail
	}
	var out []Revocation
	for role, before := range f.revs {
		out = append(out, Revocation{Role: role, Before: before})
	}
	for node, before := range f.nodeRev {
		out = append(out, Revocation{Node: node, Before: before})
	}
	return out, nil
}

func (f *fakeStore) Version(context.Context) (int64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.polls++
	if f.fail != nil {
		return 0, f.fail
	}
	return f.version, nil
}

func (f *fakeStore) versionCalls() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.polls
}

func (f *fakeStore) deps() Deps {
	return Deps{AccessKeys: f, SealingKeys: f, Revocations: f, Nodes: f, Changes: f}
}
