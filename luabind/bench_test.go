package luabind

import (
	"context"
	"fmt"
	"io"
	"testing"
	"testing/fstest"

	"github.com/sirupsen/logrus"
	lua "github.com/yuin/gopher-lua"
)

// BenchmarkDispatch is the short-handler path every part uses: check out a VM, call with 5 positional
// arguments, read the result, return the VM (watchdog deadline included).
func BenchmarkDispatch(b *testing.B) {
	g := benchGeneration(b, `local sb = require "switchboard"
sb.on("pred", function(qty, px, venue, side, live) return qty * px >= 1000000 and venue == "LSE" end)`)
	h, _ := g.Handler("on", "pred")
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		var ok bool
		for pb.Next() {
			err := g.Run(ctx, h, "bench", 0, func(L *lua.LState, f *lua.LFunction) error {
				L.Push(f)
				L.Push(lua.LNumber(1000))
				L.Push(lua.LNumber(2000.5))
				L.Push(lua.LString("LSE"))
				L.Push(lua.LString("buy"))
				L.Push(lua.LTrue)
				if err := L.PCall(5, 1, nil); err != nil {
					return err
				}
				ok = lua.LVAsBool(L.Get(-1))
				return nil
			})
			if err != nil || !ok {
				b.Fatal(err, ok)
			}
		}
	})
}

// BenchmarkGenerationBuild100 loads 100 scripts: compile each, run every top level in a first VM.
func BenchmarkGenerationBuild100(b *testing.B) {
	fsys := fstest.MapFS{}
	for i := 0; i < 100; i++ {
		fsys[fmt.Sprintf("s%03d.lua", i)] = &fstest.MapFile{Data: []byte(fmt.Sprintf(`local sb = require "switchboard"
local function helper(x) return x * %d end
sb.on("event%d", function(a, b) if a then return helper(b) end return sb.json.encode({ n = %d }) end)
sb.on("other%d", function(conn, params) local t = {} for k, v in pairs(params or {}) do t[#t + 1] = k .. "=" .. tostring(v) end return table.concat(t, ",") end)
`, i, i, i, i))}
	}
	l := logrus.New()
	l.SetOutput(io.Discard)
	rt, err := New(Options{Config: DefaultConfig(), FS: fsys, Log: logrus.NewEntry(l)})
	if err != nil {
		b.Fatal(err)
	}
	defer rt.Close()
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if err := rt.Load(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkNewVM is what a call flow pays when the pool has no idle VM (every call beyond lua.pool_size):
// make a VM, run the scripts' top levels in it, close it.
func BenchmarkNewVM(b *testing.B) {
	g := benchGeneration(b, `local sb = require "switchboard"
greeting = "hello"
sb.on("park", function(session) return greeting end)
sb.on("four", function(session) local t = {} for i = 1, 4 do t[i] = i end return table.concat(t, ",") end)`)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		vm, err := newVM(g)
		if err != nil {
			b.Fatal(err)
		}
		vm.close()
	}
}

// benchGeneration loads src as the one script of a runtime that logs nowhere, closed when b ends.
func benchGeneration(b *testing.B, src string) *Generation {
	l := logrus.New()
	l.SetOutput(io.Discard)
	rt, err := New(Options{Config: DefaultConfig(), FS: fstest.MapFS{"a.lua": {Data: []byte(src)}}, Log: logrus.NewEntry(l)})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(rt.Close)
	if err := rt.Load(); err != nil {
		b.Fatal(err)
	}
	return rt.Current()
}
