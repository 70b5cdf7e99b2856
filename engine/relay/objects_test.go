package relay

import (
	"math/rand/v2"
	"testing"
)

// TestObjectShardModel drives one shard's table with random inserts, updates
// and deletes (keys from a small space so probe runs collide and wrap) and
// compares it with a map plus an insertion-order ring.
func TestObjectShardModel(t *testing.T) {
	for _, max := range []int{1, 2, 3, 7, 64} {
		x := NewObjectIndex(max)
		sh := &x.shards[0]
		type entry struct {
			set  CenterSet
			slot int
		}
		model := map[uint64]entry{}
		var ring []uint64
		pos := 0
		rng := rand.New(rand.NewPCG(1, uint64(max)))
		for step := 0; step < 20000; step++ {
			// keys whose table homes crowd a few entries
			key := uint64(rng.IntN(3*max+3)+1)<<8 | uint64(rng.IntN(2))
			del := rng.IntN(3) == 0
			set := CenterSet(rng.IntN(4))
			want := set
			e, found := model[key]
			if found {
				want |= e.set
			}
			switch {
			case del:
				if found {
					ring[e.slot] = 0
					delete(model, key)
				}
			case found:
				model[key] = entry{want, e.slot}
			case want != 0:
				slot := len(ring)
				if len(ring) < max {
					ring = append(ring, key)
				} else {
					slot = pos
					pos = (pos + 1) % max
					if old := ring[slot]; old != 0 {
						delete(model, old)
					}
					ring[slot] = key
				}
				model[key] = entry{want, slot}
			}
			if got := sh.follow(key, del, set); got != want {
				t.Fatalf("max %d step %d: key %x del %v: got %b, want %b", max, step, key, del, got, want)
			}
			if sh.n != len(model) {
				t.Fatalf("max %d step %d: %d entries, model %d", max, step, sh.n, len(model))
			}
		}
		for k, e := range model {
			if i, ok := sh.find(k); !ok || sh.tab[i].set != e.set {
				t.Fatalf("max %d: key %x lost", max, k)
			}
		}
	}
}

func BenchmarkObjectIndexNew(b *testing.B) {
	x := NewObjectIndex(10000)
	m, _ := Parse([]byte(`O|T="NewOrder"|I="o1234567"|Symbol="AAPL"|qty=100|px=12.5D`))
	ids := make([]Value, 1<<16)
	for i := range ids {
		ids[i] = Value{Kind: KindString, S: "o" + string(rune('a'+i%26)) + string(rune('a'+i/26%26)) + string(rune('a'+i/676%26))}
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		m.Params[1].Val = ids[i&(len(ids)-1)]
		i++
		x.Follow("bench-1", &m, 1)
	}
}
