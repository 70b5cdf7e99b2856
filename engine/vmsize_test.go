package engine

import (
	"context"
	"io"
	"runtime"
	"testing"

	"github.com/sirupsen/logrus"

	"github.com/switchboard/switchboard/luabind"
)

// TestVMSizeShippedScripts reports the heap of one VM with every part's binding and the shipped scripts
// (go test -run VMSize -v ./engine/): each Acquire with an empty pool makes a VM and runs every script's
// top level in it. luabind's TestVMSize measures the layers below.
func TestVMSizeShippedScripts(t *testing.T) {
	if testing.Short() {
		t.Skip()
	}
	l := logrus.New()
	l.SetOutput(io.Discard)
	cfg := DefaultConfig()
	cfg.Lua.ScriptsDir = "../scripts"
	rt, _, err := ScriptRuntime(cfg, nil, "scripts", logrus.NewEntry(l))
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()
	if err := rt.Load(); err != nil {
		t.Fatal(err)
	}
	g := rt.Current()
	const n = 500
	vms := make([]*luabind.VM, 0, n)
	before := heapNow()
	for i := 0; i < n; i++ {
		vm, err := g.Acquire(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		vms = append(vms, vm)
	}
	after := heapNow()
	t.Logf("%-40s %7d B per VM", "full VM with shipped scripts", int(after-before)/n)
	for _, vm := range vms {
		vm.Release()
	}
}

// heapNow is the live heap after two collections.
func heapNow() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}
