package store

import (
	"encoding/json"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/tollgate-fw/tollgate/shared"
)

// Rules are stored one per key: the rule's ID -> json.Marshal(shared.Rule),
// so the record uses shared's field names and stays readable in a dump.

// BadRecord is a stored rule record that could not be decoded (a damaged or
// hand-edited file). It stays in the file untouched; DeleteRule(Key) removes it.
type BadRecord struct {
	Key string // the record's key: the rule ID it was stored under
	Err error
}

func (b BadRecord) String() string { return fmt.Sprintf("rule record %q: %v", b.Key, b.Err) }

// Hit is what happened to one rule since the last UpdateHits: Count more
// matches, the last at Last.
type Hit struct {
	Count uint64
	Last  time.Time
}

// Rules returns every stored rule in ID order. Records that do not decode
// (or whose ID differs from their key) are not dropped silently and do not
// fail the load: they come back in bad, each is logged as a warning, and the
// good rules are returned alongside. err is for failures to read at all.
//
// Records are copied out of the file in one read transaction and decoded in
// parallel: decoding is nearly all of the daemon's start-up time at 100k rules.
func (s *Store) Rules() (rules []shared.Rule, bad []BadRecord, err error) {
	var arena []byte
	var recs []record
	err = s.view(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketRules)
		st := b.Stats() // walks page headers only: sizes the copies up front
		arena = make([]byte, 0, st.LeafInuse+st.InlineBucketInuse)
		recs = make([]record, 0, st.KeyN)
		err := b.ForEach(func(k, v []byte) error {
			recs = append(recs, record{off: len(arena), klen: len(k), vlen: len(v)})
			arena = append(arena, k...)
			arena = append(arena, v...)
			return nil
		})
		if err != nil {
			return err
		}
		// Every page of the rules was touched: drop them from the
		// resident set (tens of MB at 100k rules) now they are copied.
		if err := releaseMapped(tx); err != nil {
			s.log.Warn("store: release mapped pages", "path", s.path, "err", err)
		}
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("load rules from %s: %w", s.path, err)
	}
	all := make([]shared.Rule, len(recs))
	errs := make([]error, len(recs))
	parallel(len(recs), func(i int) {
		k, v := recs[i].split(arena)
		errs[i] = decodeRule(k, v, &all[i])
	})
	rules = all[:0]
	for i := range all {
		if errs[i] != nil {
			k, _ := recs[i].split(arena)
			bad = append(bad, BadRecord{Key: string(k), Err: errs[i]})
			s.log.Warn("store: rule record skipped", "path", s.path, "key", string(k), "err", errs[i])
			continue
		}
		rules = append(rules, all[i])
	}
	clear(all[len(rules):]) // drop references held by the tail
	return rules, bad, nil
}

// record locates one key and value copied into an arena.
type record struct{ off, klen, vlen int }

func (r record) split(arena []byte) (k, v []byte) {
	kv := arena[r.off : r.off+r.klen+r.vlen]
	return kv[:r.klen], kv[r.klen:]
}

// parallel calls fn(i) for i in [0, n) on up to GOMAXPROCS goroutines, each
// taking a contiguous share, and returns when all are done.
func parallel(n int, fn func(i int)) {
	const minShare = 512
	workers := min(runtime.GOMAXPROCS(0), (n+minShare-1)/minShare)
	if workers <= 1 {
		for i := range n {
			fn(i)
		}
		return
	}
	var wg sync.WaitGroup
	for w := range workers {
		lo, hi := n*w/workers, n*(w+1)/workers
		wg.Go(func() {
			for i := lo; i < hi; i++ {
				fn(i)
			}
		})
	}
	wg.Wait()
}

// decodeRule decodes one rule record; a panic in the decoder (a bug on
// outside bytes) becomes an error for that record alone.
func decodeRule(k, v []byte, r *shared.Rule) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("decode: panic: %v", p)
		}
	}()
	// Straight to the rule's decoder: json.Unmarshal would scan the record
	// twice before it (validity, then the object's extent); the decoder
	// checks the syntax itself and refuses data after the object.
	if err := r.UnmarshalJSON(v); err != nil {
		return fmt.Errorf("decode: %w", err)
	}
	if r.ID != string(k) {
		return fmt.Errorf("record holds rule ID %q", r.ID)
	}
	return nil
}

func encodeRule(r shared.Rule) ([]byte, error) {
	if r.ID == "" {
		return nil, fmt.Errorf("%w: empty ID", ErrInvalidRule)
	}
	v, err := json.Marshal(r)
	if err != nil {
		return nil, fmt.Errorf("encode rule %q: %w", r.ID, err)
	}
	return v, nil
}

// PutRule inserts r, or replaces the stored rule with r's ID. It is on disk
// (committed and fsynced) when PutRule returns nil.
func (s *Store) PutRule(r shared.Rule) error {
	v, err := encodeRule(r)
	if err != nil {
		return fmt.Errorf("store rule: %w", err)
	}
	err = s.update(func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketRules).Put([]byte(r.ID), v)
	})
	if err != nil {
		return fmt.Errorf("store rule %q in %s: %w", r.ID, s.path, err)
	}
	return nil
}

// PutRules inserts or replaces every rule in rs in one transaction: all of
// them are stored, or (on any error, including two rules with one ID) none.
func (s *Store) PutRules(rs []shared.Rule) error {
	vs := make([][]byte, len(rs))
	seen := make(map[string]int, len(rs))
	for i, r := range rs {
		if j, dup := seen[r.ID]; dup {
			return fmt.Errorf("store rules: %w: rules %d and %d both have ID %q", ErrInvalidRule, j, i, r.ID)
		}
		seen[r.ID] = i
		v, err := encodeRule(r)
		if err != nil {
			return fmt.Errorf("store rules: rule %d: %w", i, err)
		}
		vs[i] = v
	}
	// Put in key order: bbolt inserts into sorted pages, and unsorted keys
	// (random IDs) make it move most of a page's elements on every Put.
	order := make([]int, len(rs))
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int { return strings.Compare(rs[a].ID, rs[b].ID) })
	err := s.update(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketRules)
		if k, _ := b.Cursor().First(); k == nil {
			// Into an empty bucket sorted keys only append: fill the
			// pages rather than split them half full.
			b.FillPercent = 0.9
		}
		for _, i := range order {
			if err := b.Put([]byte(rs[i].ID), vs[i]); err != nil {
				return fmt.Errorf("rule %d (%q): %w", i, rs[i].ID, err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("store %d rules in %s: %w", len(rs), s.path, err)
	}
	return nil
}

// DeleteRule removes the rule (or bad record) stored under id; ErrNotFound
// when there is none.
func (s *Store) DeleteRule(id string) error {
	err := s.update(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketRules)
		if id == "" || b.Get([]byte(id)) == nil {
			return ErrNotFound
		}
		return b.Delete([]byte(id))
	})
	if err != nil {
		return fmt.Errorf("delete rule %q from %s: %w", id, s.path, err)
	}
	return nil
}

// UpdateHits adds the batched hit counts to the stored rules, and moves each
// rule's LastHit forward to Hit.Last when that is later. IDs with no stored
// rule (rules from files, session rules, rules deleted meanwhile) are ignored,
// and so are bad records, which stay as they are.
func (s *Store) UpdateHits(h map[string]Hit) error {
	if len(h) == 0 {
		return nil
	}
	ids := make([]string, 0, len(h))
	for id := range h {
		ids = append(ids, id)
	}
	slices.Sort(ids) // bbolt writes sorted keys fastest
	err := s.update(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketRules)
		for _, id := range ids {
			if id == "" {
				continue
			}
			old := b.Get([]byte(id))
			if old == nil {
				continue
			}
			var r shared.Rule
			if err := decodeRule([]byte(id), old, &r); err != nil {
				continue // reported by Rules; not ours to repair
			}
			hit := h[id]
			r.Hits += hit.Count
			if hit.Last.After(r.LastHit) {
				r.LastHit = hit.Last
			}
			v, err := json.Marshal(r)
			if err != nil {
				return fmt.Errorf("encode rule %q: %w", id, err)
			}
			if err := b.Put([]byte(id), v); err != nil {
				return fmt.Errorf("rule %q: %w", id, err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("update hit counts in %s: %w", s.path, err)
	}
	return nil
}
