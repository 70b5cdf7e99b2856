package luabind

import lua "github.com/yuin/gopher-lua"

// Binding is one part's Lua surface: the sb.* functions, object metatables and globals its scripts use.
// Bindings live beside their part (engine/<part>/<part>lua), built on the helpers this package exports
// and handed the part's Go object as a typed argument; the runtime knows them only through this
// interface. Register them with Options.Bindings or Runtime.Bind, before the first Load.
type Binding interface {
	// Open is called for every new VM of every generation, before any script runs in it, with the VM's
	// own switchboard module table (scripts read it through a read-only proxy): it sets the part's
	// functions there (mod.RawSetString) and its globals in vm.L. What it builds once per runtime (a
	// metatable, a method table) it gets from Runtime.Shared.
	Open(vm *VM, mod *lua.LTable)
}

// Script is one compiled script of a load.
type Script struct {
	Name   string // as the operator knows it, e.g. scripts/lib/util.lua
	Path   string // relative to the scripts directory, e.g. lib/util.lua
	Proto  *lua.FunctionProto
	Module bool // under lib/: run only through require
}

// Claimer is a Binding with a folder of scripts of its own: they are compiled with every other script at
// each load (so a syntax error refuses the load, and a reload changes them atomically), but not run at
// load; the binding runs them itself (the esl binding runs each mod_lua-style script per call in a fresh
// state).
type Claimer interface {
	Binding
	// Claim is called at each load with every compiled script, sorted by path, before any runs. It returns
	// the scripts it takes, which do not run at load; what it keeps for the generation (Generation.Claimed);
	// and errors that refuse the load (a script outside its folder that only it could run, say).
	Claim(display string, scripts []*Script) (taken []*Script, state any, errs []*ScriptError)
	// Check is called once the generation's handlers are known (the first VM ran every other script's top
	// level), with the state Claim returned; errors refuse the load (a name claimed twice, say).
	Check(g *Generation, state any) []*ScriptError
}

// Claimed is what the Claimer b kept for this generation at load (nil when b claimed nothing).
func (g *Generation) Claimed(b Claimer) any { return g.claims[b] }

// Scripts lists every compiled script of the generation, claimed ones included (what require may load).
func (g *Generation) AllScripts() []*Script { return g.all }
