package detect

import "container/list"

// lru is a map with a bound: past max entries the least recently used one is dropped,
// so no stream of distinct principals, keys or addresses can grow the detector's memory
// without bound.
type lru[V any] struct {
	max   int
	items map[string]*list.Element
	order list.List // front = most recent
}

type lruEntry[V any] struct {
	key string
	val V
}

func newLRU[V any](max int) *lru[V] {
	return &lru[V]{max: max, items: make(map[string]*list.Element)}
}

// get returns the value for key, marking it used.
func (c *lru[V]) get(key string) (V, bool) {
	if e, ok := c.items[key]; ok {
		c.order.MoveToFront(e)
		return e.Value.(*lruEntry[V]).val, true
	}
	var zero V
	return zero, false
}

// peek returns the value for key without marking it used.
func (c *lru[V]) peek(key string) (V, bool) {
	if e, ok := c.items[key]; ok {
		return e.Value.(*lruEntry[V]).val, true
	}
	var zero V
	return zero, false
}

// getOrAdd returns the value for key, creating it with mk when absent.
func (c *lru[V]) getOrAdd(key string, mk func() V) V {
	if v, ok := c.get(key); ok {
		return v
	}
	v := mk()
	c.put(key, v)
	return v
}

// put sets key's value, evicting the least recently used entry past the bound.
func (c *lru[V]) put(key string, v V) {
	if e, ok := c.items[key]; ok {
		e.Value.(*lruEntry[V]).val = v
		c.order.MoveToFront(e)
		return
	}
	c.items[key] = c.order.PushFront(&lruEntry[V]{key: key, val: v})
	for len(c.items) > c.max {
		last := c.order.Back()
		c.order.Remove(last)
		delete(c.items, last.Value.(*lruEntry[V]).key)
	}
}

func (c *lru[V]) len() int { return len(c.items) }
