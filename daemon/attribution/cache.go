package attribution

// genCache is a map bounded by keeping two generations: when the current
// one fills up it becomes the old one and the previous old one is dropped.
// An entry read from the old generation moves back to the current one, so
// entries in use survive and idle ones age out, at O(1) per operation.
// It is not safe for concurrent use.
type genCache[K comparable, V any] struct {
	cur, old map[K]V
	max      int // entries per generation
}

func newGenCache[K comparable, V any](max int) *genCache[K, V] {
	if max < 1 {
		max = 1
	}
	return &genCache[K, V]{cur: make(map[K]V), old: make(map[K]V), max: max}
}

func (c *genCache[K, V]) get(k K) (V, bool) {
	if v, ok := c.cur[k]; ok {
		return v, true
	}
	v, ok := c.old[k]
	if ok {
		delete(c.old, k)
		c.put(k, v)
	}
	return v, ok
}

func (c *genCache[K, V]) put(k K, v V) {
	c.cur[k] = v
	if len(c.cur) >= c.max {
		c.old = c.cur
		c.cur = make(map[K]V, c.max/4)
	}
}

func (c *genCache[K, V]) delete(k K) {
	delete(c.cur, k)
	delete(c.old, k)
}

func (c *genCache[K, V]) len() int { return len(c.cur) + len(c.old) }

// each calls fn for every entry (both generations).
func (c *genCache[K, V]) each(fn func(K, V)) {
	for k, v := range c.cur {
		fn(k, v)
	}
	for k, v := range c.old {
		fn(k, v)
	}
}
