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
	key  string
	val  V
	gone bool // evicted: a handle on it (getRef) no longer finds it
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

// getRef is get that also returns a handle on the entry, for byRef.
func (c *lru[V]) getRef(key string) (V, *list.Element, bool) {
	if e, ok := c.items[key]; ok {
		c.order.MoveToFront(e)
		return e.Value.(*lruEntry[V]).val, e, true
	}
	var zero V
	return zero, nil, false
}

// byRef is get by a handle from getRef or putRef, without hashing the key: false once
// the entry was evicted.
func (c *lru[V]) byRef(e *list.Element) (V, bool) {
	if en := e.Value.(*lruEntry[V]); !en.gone {
		c.order.MoveToFront(e)
		return en.val, true
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
func (c *lru[V]) put(key string, v V) { c.putRef(key, v) }

// putRef is put returning a handle on the entry, for byRef.
func (c *lru[V]) putRef(key string, v V) *list.Element {
	if e, ok := c.items[key]; ok {
		e.Value.(*lruEntry[V]).val = v
		c.order.MoveToFront(e)
		return e
	}
	e := c.order.PushFront(&lruEntry[V]{key: key, val: v})
	c.items[key] = e
	for len(c.items) > c.max {
		last := c.order.Back()
		c.order.Remove(last)
		en := last.Value.(*lruEntry[V])
		en.gone = true
		delete(c.items, en.key)
	}
	return e
}

func (c *lru[V]) len() int { return len(c.items) }
