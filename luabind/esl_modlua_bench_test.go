package luabind

import (
	"context"
	"testing"

	"github.com/switchboard/switchboard/engine/esl"
)

// BenchmarkModLuaFreshState is what a mod_lua-style call costs the engine before its first command: a new
// sandboxed state with freeswitch, argv, require, os and io, the script's chunk run, the state closed.
func BenchmarkModLuaFreshState(b *testing.B) {
	rt, err := New(Options{Config: DefaultConfig(), FS: mapFS(map[string]string{"freeswitch/x.lua": "local a = argv[1]\nlocal t = os.time()\n"}), Display: "scripts"})
	if err != nil {
		b.Fatal(err)
	}
	defer rt.Close()
	if err := rt.Load(); err != nil {
		b.Fatal(err)
	}
	g := rt.Current()
	s := g.modLua.flows["x"]
	cfg := esl.DefaultConfig()
	b.ReportAllocs()
	for b.Loop() {
		vm := newCallVM(g)
		vm.startLong(context.Background())
		c := &modCall{vm: vm, g: g, name: "x", cfg: cfg, log: rt.log}
		c.files = &dataFiles{dir: cfg.DataDir}
		setupModCall(vm, c, "x.lua", []string{"1000"})
		vm.L.Push(vm.L.NewFunctionFromProto(s.proto))
		if err := vm.L.PCall(0, 0, nil); err != nil {
			b.Fatal(err)
		}
		c.end()
		vm.endLong()
	}
}
