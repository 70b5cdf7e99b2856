package relay

import (
	"math/rand/v2"
	"sort"
	"strings"
	"testing"
)

// TestObjectShardModel drives one shard's table with random inserts, updates
// and deletes by two owners (keys from a small space so probe runs collide
// and wrap, and the same key often belongs to both owners) and compares it
// with a map plus an insertion-order ring.
func TestObjectShardModel(t *testing.T) {
	type object struct {
		key   uint64
		owner uint32
	}
	for _, max := range []int{1, 2, 3, 7, 64} {
		x := NewObjectIndex(max)
		sh := &x.shards[0]
		type entry struct {
			set  CenterSet
			slot int
		}
		model := map[object]entry{}
		var ring []object
		pos := 0
		rng := rand.New(rand.NewPCG(1, uint64(max)))
		for step := 0; step < 20000; step++ {
			// keys whose table homes crowd a few entries
			key := uint64(rng.IntN(3*max+3)+1)<<8 | uint64(rng.IntN(2))
			obj := object{key, uint32(rng.IntN(2) + 1)}
			del := rng.IntN(3) == 0
			set := CenterSet(rng.IntN(4))
			want := set
			e, found := model[obj]
			if found {
				want |= e.set
			}
			switch {
			case del:
				if found {
					ring[e.slot] = object{}
					delete(model, obj)
				}
			case found:
				model[obj] = entry{want, e.slot}
			case want != 0:
				slot := len(ring)
				if len(ring) < max {
					ring = append(ring, obj)
				} else {
					slot = pos
					pos = (pos + 1) % max
					if old := ring[slot]; old.key != 0 {
						delete(model, old)
					}
					ring[slot] = obj
				}
				model[obj] = entry{want, slot}
			}
			if got := sh.follow(obj.key, obj.owner, del, set, nil); got != want {
				t.Fatalf("max %d step %d: %+v del %v: got %b, want %b", max, step, obj, del, got, want)
			}
			if sh.n != len(model) {
				t.Fatalf("max %d step %d: %d entries, model %d", max, step, sh.n, len(model))
			}
		}
		for o, e := range model {
			if i, ok := sh.find(o.key, o.owner); !ok || sh.tab[i].set != e.set {
				t.Fatalf("max %d: %+v lost", max, o)
			}
		}
	}
}

// TestObjectOwners: OwnersOf names the application that sent an object
// (whatever form its id took), both when two applications sent the same type
// and id, none after a delete or eviction, and logins past maxOwners are
// followed but own nothing.
func TestObjectOwners(t *testing.T) {
	x := NewObjectIndex(3)
	a, b := x.Owner("app-a"), x.Owner("app-b")
	if again := x.Owner("app-a"); again != a {
		t.Fatalf("owner not stable: %+v %+v", a, again)
	}
	send := func(o Owner, line string, set CenterSet) CenterSet {
		m, err := Parse([]byte(line))
		if err != nil {
			t.Fatal(err)
		}
		return x.Follow(o, &m, set, FollowUpdates)
	}
	owners := func(typ string, id Value) string {
		got := x.OwnersOf(typ, &id)
		sort.Strings(got)
		return strings.Join(got, ",")
	}
	str := func(s string) Value { return Value{Kind: KindString, S: s} }
	send(a, `O|T="Order"|I="o1"|qty=1`, 1)
	send(b, `O|T="Order"|I=7L|qty=1`, 2)
	if got := owners("Order", str("o1")); got != "app-a" {
		t.Fatalf("o1 owners %q", got)
	}
	if got := owners("Order", str("7")); got != "app-b" {
		t.Fatalf("7 owners %q", got)
	}
	if got := owners("Fill", str("o1")); got != "" {
		t.Fatalf("other type owners %q", got)
	}
	// the same (T, I) from another application is another object
	if got := send(b, `O|T="Order"|I="o1"`, 4); got != 4 {
		t.Fatalf("b's o1 went to %b (a's centers leaked)", got)
	}
	if got := owners("Order", str("o1")); got != "app-a,app-b" {
		t.Fatalf("shared o1 owners %q", got)
	}
	if got := send(a, `D|T="Order"|I="o1"`, 0); got != 1 {
		t.Fatalf("a's delete went to %b", got)
	}
	if got := owners("Order", str("o1")); got != "app-b" {
		t.Fatalf("after a's delete %q", got)
	}
	// eviction (max 3): n1 takes the ring slot a's delete freed, n2 evicts the oldest, 7
	send(a, `O|T="Order"|I="n1"`, 1)
	send(a, `O|T="Order"|I="n2"`, 1)
	if x.Len() != 3 {
		t.Fatalf("len %d", x.Len())
	}
	if got := owners("Order", str("7")); got != "" {
		t.Fatalf("evicted object still owned by %q", got)
	}
	if got := owners("Order", str("o1")); got != "app-b" {
		t.Fatalf("o1 after eviction %q", got)
	}
	// logins past maxOwners: followed, not owned
	x.ownerMu.Lock()
	for len(x.names) < maxOwners {
		x.names = append(x.names, "")
	}
	x.ownerMu.Unlock()
	c := x.Owner("app-c")
	if c.id != 0 {
		t.Fatalf("owner past the cap got id %d", c.id)
	}
	send(c, `O|T="Order"|I="n9"`, 8)
	if got := send(c, `D|T="Order"|I="n9"`, 0); got != 8 {
		t.Fatalf("unowned delete went to %b", got)
	}
	send(c, `O|T="Order"|I="n2"`, 8)
	if got := owners("Order", str("n2")); got != "app-a" {
		t.Fatalf("n2 owners %q", got)
	}
	var nilIndex *ObjectIndex
	if nilIndex.OwnersOf("Order", &Value{Kind: KindString, S: "n2"}) != nil {
		t.Fatal("disabled index names owners")
	}
}

func BenchmarkObjectIndexNew(b *testing.B) {
	x := NewObjectIndex(10000)
	m, _ := Parse([]byte(`O|T="NewOrder"|I="o1234567"|Symbol="AAPL"|qty=100|px=12.5D`))
	ids := make([]Value, 1<<16)
	for i := range ids {
		ids[i] = Value{Kind: KindString, S: "o" + string(rune('a'+i%26)) + string(rune('a'+i/26%26)) + string(rune('a'+i/676%26))}
	}
	owner := x.Owner("bench-1")
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		m.Params[1].Val = ids[i&(len(ids)-1)]
		i++
		x.Follow(owner, &m, 1, FollowUpdates)
	}
}

// BenchmarkObjectIndexUpdate: updates of objects already remembered (the
// common case for AMI rows), from two applications sharing the index.
func BenchmarkObjectIndexUpdate(b *testing.B) {
	x := NewObjectIndex(10000)
	m, _ := Parse([]byte(`O|T="NewOrder"|I="o1234567"|Symbol="AAPL"|qty=100|px=12.5D`))
	ids := make([]Value, 4096)
	for i := range ids {
		ids[i] = Value{Kind: KindString, S: "o" + string(rune('a'+i%26)) + string(rune('a'+i/26%26)) + string(rune('a'+i/676%26))}
	}
	owners := []Owner{x.Owner("bench-1"), x.Owner("bench-2")}
	for i := range ids {
		m.Params[1].Val = ids[i]
		x.Follow(owners[i&1], &m, 1, FollowUpdates)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		m.Params[1].Val = ids[i&(len(ids)-1)]
		x.Follow(owners[i&1], &m, 2, FollowUpdates)
		i++
	}
}
