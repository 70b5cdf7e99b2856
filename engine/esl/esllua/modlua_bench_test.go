package esllua

import (
	"context"
	"testing"

	"github.com/switchboard/switchboard/engine/esl"
	"github.com/switchboard/switchboard/luabind"
)

// BenchmarkModLuaFreshState is what a mod_lua-style call costs the engine before its first command: a new
// sandboxed state with freeswitch, argv, require, os and io, the script's chunk run, the state closed.
func BenchmarkModLuaFreshState(b *testing.B) {
	rt, _, _ := newRuntime(b, luabind.DefaultConfig(), map[string]string{"freeswitch/x.lua": "local a = argv[1]\nlocal t = os.time()\n"}, nil)
	g := rt.Current()
	ml := rt.b.modLuaOf(g)
	s := ml.flows["x"]
	cfg := esl.DefaultConfig()
	b.ReportAllocs()
	for b.Loop() {
		vm := g.NewCallVM(context.Background())
		c := &modCall{vm: vm, ml: ml, name: "x", cfg: cfg, log: rt.Log()}
		c.files = &dataFiles{dir: cfg.DataDir}
		setupModCall(vm, c, "x.lua", []string{"1000"})
		vm.L.Push(vm.L.NewFunctionFromProto(s.Proto))
		if err := vm.L.PCall(0, 0, nil); err != nil {
			b.Fatal(err)
		}
		c.end()
		vm.CloseCall()
	}
}
