package luabind

import (
	"io"
	"runtime"
	"testing"
	"testing/fstest"

	"github.com/sirupsen/logrus"
	lua "github.com/yuin/gopher-lua"
)

// heapNow is the live heap after two collections.
func heapNow() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// TestVMSize reports the heap of one VM: a bare state, the state a VM starts from (newState), the sandbox,
// the sandbox with the core module (no part's binding) (go test -run VMSize -v ./luabind/). engine's
// TestVMSizeShippedScripts measures a VM with every binding and the shipped scripts.
func TestVMSize(t *testing.T) {
	if testing.Short() {
		t.Skip()
	}
	const n = 500
	measure := func(name string, mk func() any) int {
		keep := make([]any, 0, n)
		before := heapNow()
		for i := 0; i < n; i++ {
			keep = append(keep, mk())
		}
		after := heapNow()
		per := int(after-before) / n
		t.Logf("%-40s %7d B per VM", name, per)
		runtime.KeepAlive(keep)
		return per
	}
	bare := measure("bare NewState (skip libs, tiny opts)", func() any {
		return lua.NewState(lua.Options{SkipOpenLibs: true, CallStackSize: 200, RegistrySize: 256, RegistryMaxSize: 256 * 1024, MinimizeStackMemory: true})
	})
	small := measure("newState (small globals and registry)", func() any { return newState() })
	// gopher-lua's globals (64-entry hint) and registry (32) tables are 7.5 KB of empty maps; newState's
	// hold one map group each. A state that keeps them would show here.
	if bare-small < 6000 {
		t.Errorf("newState holds %d B, lua.NewState %d B: the small globals and registry tables are not in place", small, bare)
	}
	l := logrus.New()
	l.SetOutput(io.Discard)
	rt, err := New(Options{Config: DefaultConfig(), FS: fstest.MapFS{"a.lua": {Data: []byte(echoScript)}}, Log: logrus.NewEntry(l)})
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()
	if err := rt.Load(); err != nil {
		t.Fatal(err)
	}
	g := rt.Current()
	measure("sandbox only", func() any {
		L := newState()
		vm := &VM{L: L, gen: g, rt: rt}
		openSandbox(vm)
		return vm
	})
	measure("sandbox + module", func() any {
		L := newState()
		vm := &VM{L: L, gen: g, rt: rt}
		openSandbox(vm)
		vm.mod = openModule(vm)
		return vm
	})
}
