package relay

import (
	"encoding/binary"
	"hash/maphash"
	"math"
	"strconv"
	"sync"
)

// ObjectIndex remembers where each object (login I, T, I) was sent so that
// its deletes, or updates and deletes, can follow it (relay.follow_objects), and which
// application sent it, so that a center's E naming the object (O and T)
// reaches that application (OwnersOf). It holds at most max objects; past
// that the oldest remembered object is forgotten.
//
// An object's table key is a 64-bit hash of (T, I) and its entry holds the
// owner's id (Owner, interned per login): entries match on both, so the same
// (T, I) sent by two applications are two objects, and OwnersOf finds every
// application that sent (T, I) in one probe run. A hash collision (odds
// about n²/2⁶⁵) can only add a center to a message, never remove one.
//
// Each shard is an open-addressing hash table (linear probing, at most half
// full, backward-shift deletion) plus a ring of keys in insertion order for
// eviction: a new object costs two short probes and no allocation.
type ObjectIndex struct {
	seed   maphash.Seed
	shards []objShard // 1 for small indexes (exact oldest-first eviction), else objShards

	ownerMu sync.Mutex
	owners  map[string]uint32 // login -> owner id (1-based; 0 = not interned)
	names   []string          // owner id - 1 -> login

	// sink, when set (relay.journal = jetstream), hears every change of an entry, to keep the index in a
	// KV bucket; set before the index is used, never changed after.
	sink *objectSink
}

const objShards = 16

// maxOwners bounds the distinct application ids the index interns. The ids
// of AMI applications are stable names (a few per deployment); past this
// many, the objects of a new login are still followed (keyed with the login
// itself) but have no known owner, so their E lines go by command owner.
const maxOwners = 1 << 16

type objShard struct {
	mu   sync.Mutex
	max  int
	n    int
	mask uint64
	tab  []objEntry
	ring []uint64   // keys by insertion; 0 = slot freed by a delete
	pos  int        // next ring slot to reuse once the ring is full
	kv   [][16]byte // the KV key of each ring slot's object (only with a sink)
}

// objEntry is one table entry (24 bytes: one cache line holds a few, probes
// stay local).
type objEntry struct {
	key   uint64 // 0 = empty
	set   CenterSet
	owner uint32 // Owner id; 0 = a login past maxOwners (its key hashes the login too)
	slot  uint32 // ring slot of the entry
}

// Owner is an application as the index records it: get it once per login
// with (*ObjectIndex).Owner.
type Owner struct {
	id    uint32
	login string
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
	x := &ObjectIndex{seed: maphash.MakeSeed(), shards: make([]objShard, n), owners: map[string]uint32{}}
	per := (max + n - 1) / n
	size := 4 // at most half full: a new object probes ~1.5 entries on a full index instead of ~4 at 3/4
	// (24 bytes an entry, so 48-96 bytes of table per object; docs/configuration.md)
	for size < 2*per {
		size <<= 1
	}
	for i := range x.shards {
		x.shards[i] = objShard{max: per, mask: uint64(size - 1), tab: make([]objEntry, size),
			ring: make([]uint64, 0, min(per, 4096))}
	}
	return x
}

// Owner interns login (an application id) for Follow. The same login always
// gets the same Owner, across reconnects.
func (x *ObjectIndex) Owner(login string) Owner {
	if x == nil {
		return Owner{login: login}
	}
	x.ownerMu.Lock()
	defer x.ownerMu.Unlock()
	id, ok := x.owners[login]
	if !ok && len(x.names) < maxOwners {
		x.names = append(x.names, login)
		id = uint32(len(x.names))
		x.owners[login] = id
	}
	return Owner{id: id, login: login}
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

// objectKey hashes (T, I); an owner that is not interned (id 0) hashes its
// login in too, so its objects stay apart from everyone else's.
func (x *ObjectIndex) objectKey(o *Owner, typ string, id *Value) uint64 {
	var kb [128]byte
	b := kb[:0]
	if o != nil && o.id == 0 {
		b = append(b, o.login...)
		b = append(b, 0)
	}
	b = append(b, typ...)
	b = append(b, 0)
	b = appendIDKey(b, id)
	return x.hashKey(b)
}

// rawKey is objectKey of an id already in its key form (appendIDKey).
func (x *ObjectIndex) rawKey(o *Owner, typ string, idKey []byte) uint64 {
	b := make([]byte, 0, len(o.login)+len(typ)+len(idKey)+2)
	if o != nil && o.id == 0 {
		b = append(b, o.login...)
		b = append(b, 0)
	}
	b = append(b, typ...)
	b = append(b, 0)
	return x.hashKey(append(b, idKey...))
}

func (x *ObjectIndex) hashKey(b []byte) uint64 {
	key := maphash.Bytes(x.seed, b)
	if key == 0 {
		key = 1 // 0 marks an empty table entry
	}
	return key
}

// FollowMode says which messages of an object go where the object went
// before, on top of the centers the rules choose (relay.follow_objects).
type FollowMode uint8

// The follow modes.
const (
	FollowOff     FollowMode = iota // the rules alone (3forge's documented routing)
	FollowDeletes                   // a D also goes everywhere its object went
	FollowUpdates                   // updates (O of a known object) and deletes do
)

// ParseFollowMode reads relay.follow_objects.
func ParseFollowMode(s string) (FollowMode, bool) {
	switch s {
	case "off", "":
		return FollowOff, true
	case "deletes":
		return FollowDeletes, true
	case "updates_and_deletes":
		return FollowUpdates, true
	}
	return 0, false
}

// Follow records where the object of m goes (O: the centers it has reached so
// far, set included; D: the object is forgotten) and returns the centers m
// goes to: set, widened by where the object went before when mode says so.
// Messages other than O and D, and objects without I, pass through
// unchanged.
func (x *ObjectIndex) Follow(owner Owner, m *Message, set CenterSet, mode FollowMode) CenterSet {
	if x == nil || (m.Type != 'O' && m.Type != 'D') {
		return set
	}
	id := m.lookup("I")
	if id == nil || id.Kind == KindNull {
		return set
	}
	typ, _ := m.Text("T")
	key := x.objectKey(&owner, typ, id)
	sh := &x.shards[key&uint64(len(x.shards)-1)] // 1 or objShards, a power of two
	var went CenterSet
	if x.sink == nil {
		sh.mu.Lock()
		went = sh.follow(key, owner.id, m.Type == 'D', set, nil)
		sh.mu.Unlock()
	} else {
		var idKey [128]byte
		ch := objChange{login: owner.login, typ: typ, idKey: appendIDKey(idKey[:0], id)}
		ch.kv = objectKVKey(owner.login, typ, ch.idKey)
		sh.mu.Lock()
		went = sh.follow(key, owner.id, m.Type == 'D', set, &ch)
		x.sink.record(&ch) // under the shard lock: the sink sees an object's changes in order
		sh.mu.Unlock()
	}
	if mode == FollowUpdates || mode == FollowDeletes && m.Type == 'D' {
		return went
	}
	return set
}

// OwnersOf returns the logins of the applications that sent the object
// (typ, id) and have not deleted it since (usually one; several when
// different applications used the same type and id), in no particular
// order. Nothing is returned for an object that was never sent, was
// deleted, or was forgotten (the index is full).
func (x *ObjectIndex) OwnersOf(typ string, id *Value) []string {
	if x == nil || id == nil || id.Kind == KindNull {
		return nil
	}
	key := x.objectKey(nil, typ, id)
	sh := &x.shards[key&uint64(len(x.shards)-1)]
	var ids []uint32
	sh.mu.Lock()
	for i := (key >> 8) & sh.mask; sh.tab[i].key != 0; i = (i + 1) & sh.mask {
		if e := &sh.tab[i]; e.key == key && e.owner != 0 {
			ids = append(ids, e.owner)
		}
	}
	sh.mu.Unlock()
	if len(ids) == 0 {
		return nil
	}
	out := make([]string, len(ids))
	x.ownerMu.Lock()
	for i, o := range ids {
		out[i] = x.names[o-1]
	}
	x.ownerMu.Unlock()
	return out
}

// appendIDKey encodes an object id as AMI sees it, as text: a string or
// enum by its text, an integer by its digits (I="5", I='5', I=5 and I=5L
// name the same object, so a center's E with O="5" finds it), anything else
// by its kind and strict form.
func appendIDKey(b []byte, v *Value) []byte {
	switch v.Kind {
	case KindString, KindEnum:
		return append(b, v.S...)
	case KindInt, KindLong:
		return strconv.AppendInt(b, v.I, 10)
	case KindFloat, KindDouble:
		b = append(b, 0, byte(v.Kind))
		return binary.LittleEndian.AppendUint64(b, math.Float64bits(v.F))
	}
	b = append(b, 0, byte(v.Kind))
	return AppendValue(b, *v)
}

// find returns the table position of (key, owner), or of the empty entry
// where it would go.
func (sh *objShard) find(key uint64, owner uint32) (int, bool) {
	i := (key >> 8) & sh.mask // the low bits chose the shard
	for {
		e := &sh.tab[i]
		if e.key == key && e.owner == owner {
			return int(i), true
		}
		if e.key == 0 {
			return int(i), false
		}
		i = (i + 1) & sh.mask
	}
}

// findSlot returns the table position of the entry with key whose ring slot
// is slot (eviction knows the ring slot, not the owner).
func (sh *objShard) findSlot(key uint64, slot uint32) (int, bool) {
	for i := (key >> 8) & sh.mask; sh.tab[i].key != 0; i = (i + 1) & sh.mask {
		if sh.tab[i].key == key && sh.tab[i].slot == slot {
			return int(i), true
		}
	}
	return 0, false
}

// remove empties table entry i and shifts later entries of its probe run back; it returns the entry left
// empty in the end (i, or where the last entry moved back came from).
func (sh *objShard) remove(i int) int {
	mask := int(sh.mask)
	sh.n--
	for {
		sh.tab[i].key = 0
		j := i
		for {
			j = (j + 1) & mask
			k := sh.tab[j].key
			if k == 0 {
				return i
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

// objChange is what Follow did to an entry, for the sink (relay.journal = jetstream).
type objChange struct {
	login, typ string
	idKey      []byte
	kv         [16]byte  // the object's KV key
	put        bool      // the entry is new or its centers changed: set is its centers
	del        bool      // the entry is gone
	set        CenterSet // the relay's center indexes
	evicted    bool      // another object was forgotten to make room: evictedKV is its KV key
	evictedKV  [16]byte
}

// follow is Follow's part under the shard lock: it returns set widened by
// where the object went before. ch (nil without a sink) is told what changed.
func (sh *objShard) follow(key uint64, owner uint32, del bool, set CenterSet, ch *objChange) CenterSet {
	i, found := sh.find(key, owner)
	if found {
		set |= sh.tab[i].set
	}
	if del {
		if found {
			sh.ring[sh.tab[i].slot] = 0
			sh.remove(i)
			if ch != nil {
				ch.del = true
			}
		}
		return set
	}
	if found {
		if ch != nil && sh.tab[i].set != set {
			ch.put, ch.set = true, set
		}
		sh.tab[i].set = set
		return set
	}
	if set == 0 {
		return set
	}
	if ch != nil {
		ch.put, ch.set = true, set
	}
	var slot int
	if len(sh.ring) < sh.max {
		sh.ring = append(sh.ring, key)
		slot = len(sh.ring) - 1
		if ch != nil {
			sh.kv = append(sh.kv, ch.kv)
		}
	} else {
		slot = sh.pos
		sh.pos = (sh.pos + 1) % sh.max
		if old := sh.ring[slot]; old != 0 {
			if j, ok := sh.findSlot(old, uint32(slot)); ok {
				// the removal leaves one new empty entry (entries in between only move back); it is where
				// the new object goes when it lies on its probe run, before i (which stays empty)
				hole := uint64(sh.remove(j))
				if home := (key >> 8) & sh.mask; (hole-home)&sh.mask < (uint64(i)-home)&sh.mask {
					i = int(hole)
				}
				if ch != nil && slot < len(sh.kv) {
					ch.evicted, ch.evictedKV = true, sh.kv[slot]
				}
			}
		}
		sh.ring[slot] = key
		if ch != nil {
			for len(sh.kv) <= slot {
				sh.kv = append(sh.kv, [16]byte{})
			}
			sh.kv[slot] = ch.kv
		}
	}
	sh.tab[i] = objEntry{key: key, set: set, owner: owner, slot: uint32(slot)}
	sh.n++
	return set
}

// restore puts an entry read back from the KV bucket (relay.journal = jetstream, when a node becomes
// active): the sink is not told, the bucket has it.
func (x *ObjectIndex) restore(login, typ string, idKey []byte, set CenterSet, kv [16]byte) {
	if x == nil || set == 0 {
		return
	}
	owner := x.Owner(login)
	key := x.rawKey(&owner, typ, idKey)
	sh := &x.shards[key&uint64(len(x.shards)-1)]
	ch := objChange{kv: kv}
	sh.mu.Lock()
	sh.follow(key, owner.id, false, set, &ch)
	if ch.evicted && x.sink != nil {
		x.sink.record(&objChange{evicted: true, evictedKV: ch.evictedKV})
	}
	sh.mu.Unlock()
}

// reset forgets every object (a node that becomes active restores the index from the bucket).
func (x *ObjectIndex) reset() {
	if x == nil {
		return
	}
	for i := range x.shards {
		sh := &x.shards[i]
		sh.mu.Lock()
		clear(sh.tab)
		sh.ring, sh.kv, sh.pos, sh.n = sh.ring[:0], sh.kv[:0], 0, 0
		sh.mu.Unlock()
	}
}
