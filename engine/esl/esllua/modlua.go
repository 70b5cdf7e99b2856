package esllua

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"path"
	"sort"
	"strings"

	"github.com/sirupsen/logrus"
	lua "github.com/yuin/gopher-lua"

	"github.com/switchboard/switchboard/engine/esl"
	"github.com/switchboard/switchboard/engine/esl/dbh"
	"github.com/switchboard/switchboard/luabind"
)

// modLua is the mod_lua side of a generation (what the Binding's Claim keeps for it): the scripts under
// lua.freeswitch_dir, compiled once with the rest and run per call, top to bottom, in a state of their own
// (mod_lua makes a new lua_State per run).
type modLua struct {
	dir            string                     // "freeswitch/" (the folder, with its slash); "" = off
	display        string                     // "scripts/freeswitch"
	scriptsDisplay string                     // "scripts"
	root           string                     // where require looks, relative to the scripts folder, with its slash ("" = the folder itself)
	flows          map[string]*luabind.Script // flow name (path below dir, without .lua) -> script
	files          map[string]*luabind.Script // every compiled script by its path in the scripts folder (what require may load)
}

// noModLua is the state of a generation loaded without the binding's Claim (never, in the engine).
var noModLua = &modLua{flows: map[string]*luabind.Script{}, files: map[string]*luabind.Script{}}

// modLuaOf is the mod_lua side of g.
func (b *Binding) modLuaOf(g *luabind.Generation) *modLua {
	if ml, ok := g.Claimed(b).(*modLua); ok {
		return ml
	}
	return noModLua
}

// Claim takes the mod_lua-style scripts (below lua.freeswitch_dir) out of the ones run at load, and refuses
// a top-level script that reads the global session only mod_lua provides (it would fail at load with a
// puzzling nil index). luabind.Claimer.
func (b *Binding) Claim(display string, scripts []*luabind.Script) ([]*luabind.Script, any, []*luabind.ScriptError) {
	ml := &modLua{flows: map[string]*luabind.Script{}, files: map[string]*luabind.Script{}, scriptsDisplay: display}
	if d := strings.Trim(path.Clean("/"+strings.ReplaceAll(b.opts.Dir, "\\", "/")), "/"); b.opts.Dir != "" && d != "" {
		ml.dir = d + "/"
		ml.display = path.Join(display, d)
	}
	root := b.opts.RequireRoot
	if root == "" {
		root = b.opts.Dir
	}
	if r := strings.Trim(path.Clean("/"+strings.ReplaceAll(root, "\\", "/")), "/"); r != "" {
		ml.root = r + "/"
	}
	var taken []*luabind.Script
	var errs []*luabind.ScriptError
	for _, s := range scripts {
		ml.files[s.Path] = s
		if ml.dir != "" && strings.HasPrefix(s.Path, ml.dir) {
			ml.flows[strings.TrimSuffix(strings.TrimPrefix(s.Path, ml.dir), ".lua")] = s
			taken = append(taken, s)
			continue
		}
		if !s.Module && ml.dir != "" {
			if line, name := modLuaGlobal(s.Proto); line > 0 {
				errs = append(errs, &luabind.ScriptError{File: s.Name, Line: line,
					Message: fmt.Sprintf("uses the global %s: mod_lua-style flows belong in %s/", name, ml.display)})
			}
		}
	}
	return taken, ml, errs
}

// modLuaGlobal finds the first line reading the global session in a chunk or its functions (sb scripts get
// their session as an argument; a global one means a file written for mod_lua). The global freeswitch is
// left to run time, where indexing it says where the mod_lua table lives.
func modLuaGlobal(p *lua.FunctionProto) (int, string) {
	line, name := 0, ""
	var walk func(p *lua.FunctionProto)
	walk = func(p *lua.FunctionProto) {
		for pc, inst := range p.Code {
			if int(inst>>26) != lua.OP_GETGLOBAL {
				continue
			}
			k, ok := p.Constants[int(inst&0x3ffff)].(lua.LString)
			if !ok || k != "session" {
				continue
			}
			if pc < len(p.DbgSourcePositions) {
				if l := p.DbgSourcePositions[pc]; l > 0 && (line == 0 || l < line) {
					line, name = l, string(k)
				}
			}
		}
		for _, c := range p.FunctionPrototypes {
			walk(c)
		}
	}
	walk(p)
	return line, name
}

// Check refuses a flow name that is both an sb.flow and a mod_lua-style file. luabind.Claimer.
func (b *Binding) Check(g *luabind.Generation, state any) []*luabind.ScriptError {
	ml, _ := state.(*modLua)
	if ml == nil {
		return nil
	}
	var errs []*luabind.ScriptError
	for _, h := range g.Handlers(kindFlow) {
		if s, ok := ml.flows[h.Name]; ok {
			errs = append(errs, &luabind.ScriptError{File: s.Name, Message: fmt.Sprintf("flow %q is also registered with sb.flow at %s: rename one", h.Name, h.Where)})
		}
	}
	return errs
}

// resolve finds the mod_lua-style script for a flow name, splitting arguments off a socket path:
// "voicemail/check/default" runs voicemail.lua with argv {"check", "default"} when no longer name exists.
func (ml *modLua) resolve(name string) (*luabind.Script, string, []string) {
	name = strings.TrimSuffix(name, ".lua")
	if s, ok := ml.flows[name]; ok {
		return s, name, nil
	}
	segs := strings.Split(name, "/")
	for i := len(segs) - 1; i > 0; i-- {
		n := strings.TrimSuffix(strings.Join(segs[:i], "/"), ".lua")
		if s, ok := ml.flows[n]; ok {
			args := make([]string, 0, len(segs)-i)
			for _, a := range segs[i:] {
				if u, err := url.PathUnescape(a); err == nil {
					a = u
				}
				args = append(args, a)
			}
			return s, n, args
		}
	}
	return nil, "", nil
}

// ModLuaFlows lists the mod_lua-style flows of the generation, sorted.
func (b *Binding) ModLuaFlows(g *luabind.Generation) []string {
	var out []string
	for n := range b.modLuaOf(g).flows {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// HasFlow reports whether name (possibly with arguments after it in a socket path) names a flow:
// sb.flow or a mod_lua-style script.
func (b *Binding) HasFlow(g *luabind.Generation, name string) bool {
	if _, ok := g.Handler(kindFlow, name); ok {
		return true
	}
	s, _, _ := b.modLuaOf(g).resolve(name)
	return s != nil
}

// modLuaFlow runs one mod_lua-style script for a call.
type modLuaFlow struct {
	g    *luabind.Generation
	ml   *modLua
	s    *luabind.Script
	name string
	args []string
}

const modCallKey = "switchboard.modlua.call"

// modCall is what a mod_lua-style run knows: its call (nil for an API-style run), its objects and its
// confinement. It lives in the state's registry; the shared functions find it with callOf(L).
type modCall struct {
	vm     *luabind.VM
	ml     *modLua
	name   string // script name below lua.freeswitch_dir
	cfg    esl.Config
	s      *esl.Session // nil in API mode
	ls     *luaSession  // the session global
	log    *logrus.Entry
	stream *luaStream // API mode
	db     *dbh.Pools
	ownDB  bool // db belongs to this run (API mode)
	loaded *lua.LTable
	files  *dataFiles

	globals map[string]*string // global_getvar answers (nil = unset)
	legs    []*luaSession
	dbhs    []*dbh.Handle
}

func callOf(L *lua.LState) *modCall {
	ud, ok := L.G.Registry.RawGetString(modCallKey).(*lua.LUserData)
	if !ok {
		return nil
	}
	c, _ := ud.Value.(*modCall)
	return c
}

// setupModCall gives a fresh state mod_lua's globals: freeswitch, argv, require and package, the os and
// io subsets, and the call's session when there is one.
func setupModCall(vm *luabind.VM, c *modCall, argv0 string, args []string) {
	L := vm.L
	ud := L.NewUserData()
	ud.Value = c
	L.G.Registry.RawSetString(modCallKey, ud)
	G := L.G.Global
	rt := vm.Runtime()
	G.RawSetString("freeswitch", modProxy(L, rt, "freeswitch"))
	G.RawSetString("os", modProxy(L, rt, "os"))
	G.RawSetString("io", modProxy(L, rt, "io"))
	argv := L.CreateTable(len(args), 1)
	argv.RawSetInt(0, lua.LString(argv0))
	for _, a := range args {
		argv.Append(lua.LString(a))
	}
	G.RawSetString("argv", argv)
	c.loaded = L.CreateTable(0, 4)
	pkg := L.CreateTable(0, 3)
	pkg.RawSetString("loaded", c.loaded)
	pkg.RawSetString("path", lua.LString(c.ml.root+"?.lua"))
	pkg.RawSetString("cpath", lua.LString(""))
	G.RawSetString("package", pkg)
	G.RawSetString("require", L.NewFunction(modRequire))
}

// modRequire is require for mod_lua-style scripts: "a.b.c" loads a/b/c.lua (or a/b/c/init.lua) under
// lua.freeswitch_require_root, compiled at load; nothing outside the scripts folder.
func modRequire(L *lua.LState) int {
	name := L.CheckString(1)
	c := callOf(L)
	if v := c.loaded.RawGetString(name); v != lua.LNil {
		L.Push(v)
		return 1
	}
	ml := c.ml
	base := ml.root + strings.ReplaceAll(name, ".", "/")
	var s *luabind.Script
	for _, rel := range []string{base + ".lua", base + "/init.lua"} {
		if found, ok := ml.files[rel]; ok {
			s = found
			break
		}
	}
	if s == nil {
		return luabind.Raise(L, "module %q not found: require looks for %s.lua under %s (compiled when scripts load; nothing outside lua.scripts_dir)",
			name, strings.ReplaceAll(name, ".", "/"), path.Join(ml.scriptsDisplay, strings.TrimSuffix(ml.root, "/")))
	}
	c.loaded.RawSetString(name, lua.LTrue) // a module that requires itself sees true, as in Lua
	L.Push(L.NewFunctionFromProto(s.Proto))
	L.Push(lua.LString(name))
	L.Call(1, 1)
	v := L.Get(-1)
	L.Pop(1)
	if v == lua.LNil {
		v = c.loaded.RawGetString(name) // the module may have set package.loaded[name] itself
	}
	c.loaded.RawSetString(name, v)
	L.Push(v)
	return 1
}

// Run runs the script for the call, top to bottom, as mod_lua's lua application does.
func (f *modLuaFlow) Run(ctx context.Context, s *esl.Session) error {
	s.SetModLua()
	vm := f.g.NewCallVM(ctx)
	defer vm.CloseCall()
	L := vm.L
	c := &modCall{vm: vm, ml: f.ml, name: f.name, cfg: s.Config(), s: s, log: s.Log(), db: s.DB()}
	c.files = &dataFiles{dir: c.cfg.DataDir}
	setupModCall(vm, c, f.name+".lua", f.args)
	ls := newLuaSession(L, vm, s, true)
	c.ls = ls
	L.G.Global.RawSetString("session", ls.ud)
	L.G.Global.RawSetString(s.UUID(), ls.ud)
	L.Push(L.NewFunctionFromProto(f.s.Proto))
	err := L.PCall(0, 0, nil)
	c.end()
	if err == nil || isExit(err) {
		return nil
	}
	return graceError(vm.LongError(err, "esl.flow "+f.name+" uuid "+s.UUID()))
}

// graceError words a flow cancelled by esl.flow_grace as such (not "context canceled").
func graceError(err error) error {
	var se *luabind.ScriptError
	if errors.As(err, &se) && errors.Is(se.Cause, esl.ErrFlowGrace) {
		se.Message = "cancelled: " + esl.ErrFlowGrace.Error()
	}
	return err
}

// end is mod_lua's end of a run: the session drops its hook and input callback (neither runs now),
// originated legs still up with auto-hangup are hung up, database handles and files are released.
func (c *modCall) end() {
	ctx, cancel := context.WithTimeout(context.Background(), c.cfg.CommandTimeout)
	defer cancel()
	if c.ls != nil {
		c.ls.inputFn, c.ls.hookFn, c.ls.inputName, c.ls.hookName = nil, nil, "", ""
	}
	for _, leg := range c.legs {
		if leg.leg != nil && leg.legAutoHangup && !leg.transferred {
			_ = leg.leg.Hangup(ctx, "NORMAL_CLEARING")
		}
	}
	for _, h := range c.dbhs {
		h.Release()
	}
	c.files.close()
	if c.ownDB && c.db != nil {
		c.db.Close()
	}
}

// flowFor resolves a call to a mod_lua-style script of g, or nil.
func (ml *modLua) flowFor(g *luabind.Generation, call *esl.CallInfo) esl.Flow {
	s, name, args := ml.resolve(call.Flow)
	if s == nil {
		return nil
	}
	call.Flow = name
	if len(args) > 0 {
		call.Args = append(args, call.Args...)
	}
	return &modLuaFlow{g: g, ml: ml, s: s, name: name, args: call.Args}
}
