package relay

import (
	"encoding/binary"
	"hash/maphash"
	"math"
	"sync"
)

// ObjectIndex remembers where each object (login I, T, I) was sent so that
// its updates and deletes follow it (deletes-follow-inserts). It holds at
// most max objects; past that the oldest remembered object is forgotten.
// Objects are keyed by a 64-bit hash of (login, T, I): a collision (odds
// about n²/2⁶⁵) can only add a center to a message, never remove one.
//
// Each shard is an open-addressing hash table (linear probing, at most half
// full, backward-shift deletion) plus a ring of keys in insertion order for
// eviction: a new object costs two short probes and no allocation.
type ObjectIndex struct {
	seed   maphash.Seed
	shards []objShard // 1 for small indexes (exact oldest-first eviction), else objShards
}

const objShards = 16

type objShard struct {
	mu   sync.Mutex
	max  int
	n    int
	mask uint64
	tab  []objEntry
	ring []uint64 // keys by insertion; 0 = slot freed by a delete
	pos  int      // next ring slot to reuse once the ring is full
}

// objEntry is one table entry (one cache line holds a few, probes stay local).
type objEntry struct {
	key  uint64 // 0 = empty
	set  CenterSet
	slot int // ring slot of the entry
}

// NewObjectIndex returns an index of at most max objects; max <= 0 disables it.
func NewObjectIndex(max int) *ObjectIndex {
	if max <= 0 {
		return nil
	}
	n := objShards
	if max < 1024 {
		n = 1
	}
	x := &ObjectIndex{seed: maphash.MakeSeed(), shards: make([]objShard, n)}
	per := (max + n - 1) / n
	size := 4 // at most 3/4 full (probes stay short, the table stays small in cache)
	for size < per+per/3+1 {
		size <<= 1
	}
	for i := range x.shards {
		x.shards[i] = objShard{max: per, mask: uint64(size - 1), tab: make([]objEntry, size),
			ring: make([]uint64, 0, min(per, 4096))}
	}
	return x
}

// Len is the number of remembered objects.
func (x *ObjectIndex) Len() int {
	if x == nil {
		return 0
	}
	n := 0
	for i := range x.shards {
		x.shards[i].mu.Lock()
		n += x.shards[i].n
		x.shards[i].mu.Unlock()
	}
	return n
}

// Follow returns set widened by where the object of m went before, and
// records the result (O) or forgets the object (D). Messages other than O and
// D, and objects without I, pass through unchanged.
func (x *ObjectIndex) Follow(login string, m *Message, set CenterSet) CenterSet {
	if x == nil || (m.Type != 'O' && m.Type != 'D') {
		return set
	}
	id := m.lookup("I")
	if id == nil || id.Kind == KindNull {
		return set
	}
	typ, _ := m.Text("T")
	var kb [128]byte
	b := append(kb[:0], login...)
	b = append(b, 0)
	b = append(b, typ...)
	b = append(b, 0)
	b = appendIDKey(b, id)
	key := maphash.Bytes(x.seed, b)
	if key == 0 {
		key = 1 // 0 marks an empty table entry
	}
	sh := &x.shards[key&uint64(len(x.shards)-1)] // 1 or objShards, a power of two
	sh.mu.Lock()
	set = sh.follow(key, m.Type == 'D', set)
	sh.mu.Unlock()
	return set
}

// appendIDKey encodes an object id unambiguously (kind, then its value).
func appendIDKey(b []byte, v *Value) []byte {
	b = append(b, byte(v.Kind))
	switch v.Kind {
	case KindString, KindEnum, KindJSON, KindBinary:
		return append(b, v.S...)
	case KindFloat, KindDouble:
		return binary.LittleEndian.AppendUint64(b, math.Float64bits(v.F))
	case KindUTC:
		if v.Pattern != "" {
			b = append(b, v.S...)
			b = append(b, 0)
			return append(b, v.Pattern...)
		}
	}
	return binary.LittleEndian.AppendUint64(b, uint64(v.I))
}

// find returns the table position of key, or of the empty entry where it
// would go.
func (sh *objShard) find(key uint64) (int, bool) {
	i := (key >> 8) & sh.mask // the low bits chose the shard
	for {
		k := sh.tab[i].key
		if k == key {
			return int(i), true
		}
		if k == 0 {
			return int(i), false
		}
		i = (i + 1) & sh.mask
	}
}

// remove empties table entry i and shifts later entries of its probe run back.
func (sh *objShard) remove(i int) {
	mask := int(sh.mask)
	sh.n--
	for {
		sh.tab[i].key = 0
		j := i
		for {
			j = (j + 1) & mask
			k := sh.tab[j].key
			if k == 0 {
				return
			}
			// k moves into the hole at i unless its home lies cyclically in (i, j]
			home := int((k >> 8) & sh.mask)
			var stays bool
			if i < j {
				stays = i < home && home <= j
			} else {
				stays = home > i || home <= j
			}
			if !stays {
				sh.tab[i] = sh.tab[j]
				i = j
				break
			}
		}
	}
}

// follow is Follow's part under the shard lock.
func (sh *objShard) follow(key uint64, del bool, set CenterSet) CenterSet {
	i, found := sh.find(key)
	if found {
		set |= sh.tab[i].set
	}
	if del {
		if found {
			sh.ring[sh.tab[i].slot] = 0
			sh.remove(i)
		}
		return set
	}
	if found {
		sh.tab[i].set = set
		return set
	}
	if set == 0 {
		return set
	}
	var slot int
	if len(sh.ring) < sh.max {
		sh.ring = append(sh.ring, key)
		slot = len(sh.ring) - 1
	} else {
		slot = sh.pos
		sh.pos = (sh.pos + 1) % sh.max
		if old := sh.ring[slot]; old != 0 {
			if j, ok := sh.find(old); ok {
				sh.remove(j)
				// the removal may have shifted key's empty entry
				i, _ = sh.find(key)
			}
		}
		sh.ring[slot] = key
	}
	sh.tab[i] = objEntry{key: key, set: set, slot: slot}
	sh.n++
	return set
}
