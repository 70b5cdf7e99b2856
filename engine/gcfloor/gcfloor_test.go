package gcfloor

import (
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"testing"
)

func TestPercentFor(t *testing.T) {
	const mb = 1 << 20
	cases := []struct {
		floor, live uint64
		base, want  int
	}{
		{32 * mb, 1 * mb, 100, 800},    // the runtime's 4 MB minimum, scaled to 32 MB, is the goal
		{32 * mb, 10 * mb, 100, 220},   // growth of the live heap reaches the floor first: 10 × 3.2 = 32
		{32 * mb, 16 * mb, 100, 100},   // live × 2 = the floor: GOGC as it is
		{32 * mb, 40 * mb, 100, 100},   // above the floor: GOGC as it is
		{32 * mb, 1 * mb, 1000, 1000},  // a GOGC above what the floor needs stays
		{32 * mb, 0, 100, 800},         // nothing measured yet
		{8 * mb, 1 * mb, 50, 200},      // GOGC=50
		{1 << 60, 1, 100, maxPercent},  // bounded
		{4 * mb, 1 * mb, 100, 100},     // the runtime's own minimum already is the floor
		{6 * mb, 5 * mb, 100, 100},     // 5 MB × 2 > 6 MB
		{33 * mb, 11 * mb, 100, 200},   // exactly 3×
		{32*mb + 1, 0, 100, 801},       // rounded up: the goal is at least the floor
		{64 * mb, 3 * mb, 100, 1600},   // 4 MB × 16 = 64 MB, before 3 MB × 22.3
		{64 * mb, 30 * mb, 100, 114},   // ceil((64/30 - 1) × 100)
		{64 * mb, 30 * mb, 200, 200},   // GOGC=200 already reaches 90 MB
		{64 * mb, 63 * mb, 100, 100},   // near the floor
		{64 * mb, 64 * mb, 100, 100},   // at the floor
		{64 * mb, 128 * mb, 100, 100},  // far above
		{64 * mb, 128 * mb, 25, 25},    // a low GOGC stays low above the floor
		{64 * mb, 1 * mb, 2000, 2000},  // and a high one stays high
		{16 * mb, 2 * mb, 100, 400},    // 4 MB × 4
		{16 * mb, 8 * mb, 100, 100},    // 8 MB × 2
		{16 * mb, 7 * mb, 100, 129},    // ceil((16/7 - 1) × 100) = 128.57…
		{2 * mb, 1 * mb, 100, 100},     // a floor under the runtime's minimum changes nothing
		{100 * mb, 1 * mb, 100, 2500},  // 4 MB × 25
		{100 * mb, 50 * mb, 100, 100},  // 50 × 2
		{100 * mb, 40 * mb, 100, 150},  // 40 × 2.5
		{100 * mb, 20 * mb, 100, 400},  // 20 × 5
		{100 * mb, 4 * mb, 100, 2400},  // 4 × 25 (growth) before the minimum's 2500
		{100 * mb, 5 * mb, 100, 1900},  // 5 × 20
		{100 * mb, 3 * mb, 100, 2500},  // minimum 2500 before growth's 3234
		{100 * mb, 100 * mb, 100, 100}, // at the floor
	}
	for _, c := range cases {
		if got := percentFor(c.floor, c.live, c.base); got != c.want {
			t.Errorf("percentFor(floor %d MB, live %.2f MB, GOGC %d) = %d, want %d",
				c.floor/mb, float64(c.live)/mb, c.base, got, c.want)
		}
	}
}

func TestBasePercent(t *testing.T) {
	for env, want := range map[string]struct {
		p  int
		ok bool
	}{"": {100, true}, "off": {0, false}, "200": {200, true}, "-1": {0, false}, "x": {100, true}} {
		if p, ok := basePercent(env); p != want.p || ok != want.ok {
			t.Errorf("basePercent(%q) = %d, %v; want %d, %v", env, p, ok, want.p, want.ok)
		}
	}
}

// Start raises the collector's goal to the floor, keeps it there across collections, and Stop gives
// the process its GOGC back.
func TestStartStop(t *testing.T) {
	t.Setenv("GOGC", "")
	if Start(0) != nil {
		t.Fatal("a zero floor started a tuner")
	}
	const floor = 48 << 20
	tu := Start(floor)
	if tu == nil {
		t.Fatal("no tuner")
	}
	goal := []metrics.Sample{{Name: "/gc/heap/goal:bytes"}}
	for i := 0; i < 3; i++ {
		runtime.GC()
		runtime.GC() // the finalizer of the first collection's sentinel has run by the second
		metrics.Read(goal)
		if g := goal[0].Value.Uint64(); g < floor {
			t.Fatalf("after collection %d: heap goal %d MB, want at least the floor of %d MB (percent %d)",
				i, g>>20, floor>>20, tu.Percent())
		}
	}
	if tu.Percent() <= 100 {
		t.Fatalf("percent %d: the floor was not applied to a small heap", tu.Percent())
	}
	tu.Stop()
	tu.Stop() // idempotent
	if p := debug.SetGCPercent(100); p != 100 {
		t.Fatalf("after Stop the GC percent is %d, want GOGC's 100", p)
	}
	runtime.GC()
	runtime.GC()
	if p := debug.SetGCPercent(100); p != 100 {
		t.Fatalf("a collection after Stop changed the GC percent to %d", p)
	}
	var nilTuner *Tuner
	nilTuner.Stop()
}

func TestGOGCOff(t *testing.T) {
	t.Setenv("GOGC", "off")
	if Start(32<<20) != nil {
		t.Fatal("GOGC=off started a tuner")
	}
}
