// Package esllua is call control's Lua binding: sb.flow and the session object of flows (docs/lua-api.md,
// "Call flows"), and mod_lua-style scripts (lua.freeswitch_dir) run unmodified per call in a state of their
// own, with FreeSWITCH's freeswitch table (Dbh on engine/esl/dbh, IVRMenu on engine/esl/ivrmenu, os and
// io confined to esl.data_dir), and as API commands (RunAPIScript: `switchboard run-script`, admin POST
// /lua). The Binding claims the mod_lua folder at each load (luabind.Claimer) and resolves calls to flows
// (Flows, the esl.FlowResolver of the server).
package esllua

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/sirupsen/logrus"
	lua "github.com/yuin/gopher-lua"

	"github.com/switchboard/switchboard/engine/esl"
	"github.com/switchboard/switchboard/luabind"
)

const (
	kindFlow        = "flow"
	sessionTypeName = "switchboard.esl.session"
	// hungUpMessage is the error value blocking session methods raise once the caller is gone; pcall
	// returns it unchanged (no position prefix) so scripts can compare it.
	hungUpMessage = "hung up"
	exitMessage   = "switchboard: flow exit"
)

// Options configure the binding.
type Options struct {
	// Dir holds the mod_lua-style scripts, relative to the scripts folder (lua.freeswitch_dir); "" turns
	// them off.
	Dir string
	// RequireRoot is where their require "a.b" looks for a/b.lua, relative to the scripts folder
	// (lua.freeswitch_require_root); "" means Dir.
	RequireRoot string
}

// OptionsFrom reads the binding's options from the lua: section (lua.freeswitch_dir,
// lua.freeswitch_require_root).
func OptionsFrom(cfg luabind.Config) Options {
	return Options{Dir: cfg.FreeSWITCHDir, RequireRoot: cfg.FreeSWITCHRequireRoot}
}

// Binding adds sb.flow and the global freeswitch (which explains where mod_lua's table lives) to every VM,
// and claims the mod_lua-style scripts at each load (luabind.Binding, luabind.Claimer).
type Binding struct {
	opts Options
}

// New returns call control's binding. It needs no server: each call's session comes with the call.
func New(opts Options) *Binding { return &Binding{opts: opts} }

// Open adds sb.flow and the global freeswitch to a VM.
func (b *Binding) Open(vm *luabind.VM, mod *lua.LTable) {
	L := vm.L
	// Through _G's metatable, to the VM's top-level globals (luabind's isolation): a raw write to _G would be
	// moved there when the scripts have loaded, but would leave _G holding a map for good.
	L.SetGlobal("freeswitch", sbFreeswitch(vm))
	mod.RawSetString("flow", L.NewFunction(func(L *lua.LState) int {
		name := L.CheckString(1)
		fn := L.CheckFunction(2)
		if name == "" {
			return luabind.Raise(L, "sb.flow: name must be a non-empty string")
		}
		if _, err := vm.Register(kindFlow, name, fn, nil); err != nil {
			return luabind.Raise(L, "sb.flow: %v", err)
		}
		return 0
	}))
}

// sessionMetatable is the metatable of session objects, built once per runtime and shared by its VMs (the
// methods take the session from their first argument, never from a VM).
func sessionMetatable(rt *luabind.Runtime) lua.LValue {
	return rt.Shared(sessionTypeName, func(L *lua.LState) lua.LValue {
		mt := L.NewTable()
		methods := L.SetFuncs(L.NewTable(), sessionMethods)
		mt.RawSetString("__metatable", lua.LFalse)
		mod := L.SetFuncs(L.NewTable(), modSessionMethods)
		mt.RawSetString("__index", L.NewFunction(func(L *lua.LState) int {
			ls := checkSession(L)
			switch key := L.CheckString(2); key {
			case "uuid":
				L.Push(lua.LString(ls.uuid()))
			case "flow":
				if ls.s == nil {
					L.Push(lua.LNil)
				} else {
					L.Push(lua.LString(ls.s.Info().Flow))
				}
			default:
				if ls.mod {
					if m := mod.RawGetString(key); m != lua.LNil {
						L.Push(m)
						return 1
					}
				}
				L.Push(methods.RawGetString(key))
			}
			return 1
		}))
		mt.RawSetString("__tostring", L.NewFunction(func(L *lua.LState) int {
			L.Push(lua.LString("session " + checkSession(L).uuid()))
			return 1
		}))
		return mt
	})
}

// Flows resolves calls to the sb.flow handlers and mod_lua-style scripts of the generation serving when
// the call arrives (esl.Options.Flows); the call runs to its end on that generation even if scripts are
// reloaded meanwhile.
func (b *Binding) Flows(rt *luabind.Runtime) esl.FlowResolver {
	return func(call *esl.CallInfo) (esl.Flow, error) {
		g := rt.Current()
		if g == nil {
			return nil, errors.New("no scripts loaded")
		}
		h, ok := g.Handler(kindFlow, call.Flow)
		if !ok {
			ml := b.modLuaOf(g)
			if f := ml.flowFor(g, call); f != nil {
				return f, nil
			}
			if ml.dir != "" {
				return nil, fmt.Errorf("no flow %q registered with sb.flow and no %s/%s.lua", call.Flow, ml.display, call.Flow)
			}
			return nil, fmt.Errorf("no flow %q registered with sb.flow", call.Flow)
		}
		return &luaFlow{g: g, h: h}, nil
	}
}

type luaFlow struct {
	g *luabind.Generation
	h *luabind.Handler
}

// Run owns a VM of the flow's generation for the whole call.
func (f *luaFlow) Run(ctx context.Context, s *esl.Session) error {
	vm, err := f.g.Acquire(ctx)
	if err != nil {
		return err
	}
	defer vm.Release()
	L := vm.L
	ls := newLuaSession(L, vm, s, false)
	L.Push(vm.Func(f.h))
	L.Push(ls.ud)
	err = L.PCall(1, 0, nil)
	if err == nil && ls.hookFn != nil && ls.hookFn != lua.LNil && s.Ready() && s.AutoHangup() {
		// The engine hangs up at the end of the flow; do it now so the hook sees it, exactly once.
		_ = s.Hangup(ctx, "NORMAL_CLEARING")
	}
	if err == nil || !isExit(err) {
		ls.runHook(L, "hangup", true)
	}
	if err == nil || isExit(err) {
		return nil
	}
	if isHungUp(err) {
		return esl.ErrHungUp
	}
	return graceError(vm.LongError(err, "esl.flow "+f.h.Name+" uuid "+s.UUID()))
}

func errValue(err error) (lua.LValue, bool) {
	var ae *lua.ApiError
	if errors.As(err, &ae) {
		return ae.Object, true
	}
	return nil, false
}

func isHungUp(err error) bool {
	v, ok := errValue(err)
	return ok && v.String() == hungUpMessage
}

func isExit(err error) bool {
	v, ok := errValue(err)
	return ok && v.String() == exitMessage
}

// luaSession is the `session` a flow receives (and, in mod_lua-style flows, a freeswitch.Session object).
type luaSession struct {
	s  *esl.Session
	vm *luabind.VM
	ud *lua.LUserData

	inputFn, inputArg lua.LValue
	hookFn, hookArg   lua.LValue
	hookRan           bool
	transferred       bool
	ttsEngine         string
	ttsVoice          string

	// mod_lua-style flows
	mod           bool   // mod_lua semantics: blocking calls return on hangup, mod_lua's return values
	inputName     string // setInputCallback's global names, resolved at each call as mod_lua does
	inputArgName  string
	hookName      string
	hookArgName   string
	termsSet      bool     // playback_terminators=none sent
	divertOn      bool     // divert_events on sent
	leg           *esl.Leg // an originated leg (freeswitch.Session(dial_string))
	legAutoHangup bool     // hang the leg up when the script ends
	unbound       bool     // freeswitch.Session() before originate, or after destroy()
	failCause     string   // a failed originate's cause
	private       map[string]lua.LValue
}

func newLuaSession(L *lua.LState, vm *luabind.VM, s *esl.Session, mod bool) *luaSession {
	ls := &luaSession{s: s, vm: vm, mod: mod}
	ud := L.NewUserData()
	ud.Value = ls
	L.SetMetatable(ud, sessionMetatable(vm.Runtime()))
	ls.ud = ud
	return ls
}

func (ls *luaSession) uuid() string {
	switch {
	case ls.leg != nil:
		return ls.leg.UUID
	case ls.unbound || ls.s == nil:
		return ""
	}
	return ls.s.UUID()
}

func checkSession(L *lua.LState) *luaSession {
	ud := L.CheckUserData(1)
	ls, ok := ud.Value.(*luaSession)
	if !ok {
		L.ArgError(1, "session expected")
	}
	return ls
}

// fnArg accepts a function or, as mod_lua does, the name of a global function.
func fnArg(L *lua.LState, n int) lua.LValue {
	switch v := L.Get(n).(type) {
	case *lua.LFunction:
		return v
	case lua.LString:
		f, ok := L.GetGlobal(string(v)).(*lua.LFunction)
		if !ok {
			L.ArgError(n, fmt.Sprintf("no global function %q", string(v)))
		}
		return f
	case *lua.LNilType:
		return lua.LNil
	}
	L.ArgError(n, "function or global function name expected")
	return nil
}

// runHook runs the hangup hook once, when the call is down (deferred as in mod_lua: at the next session
// call, ready(), or the end of the flow). A hook returning "exit" or "die" ends the flow.
func (ls *luaSession) runHook(L *lua.LState, why string, atEnd bool) {
	if ls.hookRan || ((ls.hookFn == nil || ls.hookFn == lua.LNil) && ls.hookName == "") || ls.s == nil || ls.s.Ready() {
		return
	}
	ls.hookRan = true
	if ls.transferred || ls.s.Transferred() {
		why = "transfer"
	}
	fn, arg := ls.hookFn, ls.hookArg
	if ls.hookName != "" {
		// mod_lua: names of globals, looked up when the hook runs
		fn = L.GetGlobal(ls.hookName)
		arg = lua.LNil
		if ls.hookArgName != "" {
			arg = L.GetGlobal(ls.hookArgName)
		}
	}
	if arg == nil {
		arg = lua.LNil
	}
	L.Push(fn)
	L.Push(ls.ud)
	L.Push(lua.LString(why))
	L.Push(arg)
	if err := L.PCall(3, 1, nil); err != nil {
		ls.s.Log().WithError(err).Error("hangup hook failed")
		return
	}
	ret := L.Get(-1)
	L.Pop(1)
	if r := strings.ToLower(lua.LVAsString(ret)); (r == "exit" || r == "die") && !atEnd {
		L.Error(lua.LString(exitMessage), 0)
	}
}

// call wraps each session method: it runs a due hangup hook first and turns Go errors into Lua errors.
func call(fn func(L *lua.LState, ls *luaSession) (int, error)) lua.LGFunction {
	return func(L *lua.LState) int {
		ls := checkSession(L)
		ls.runHook(L, "hangup", false)
		done := ls.vm.Blocking() // mostly waiting for FreeSWITCH: the memory guard cancels computing handlers first
		n, err := fn(L, ls)
		done()
		if err != nil {
			if errors.Is(err, esl.ErrHungUp) {
				ls.runHook(L, "hangup", false)
				L.Error(lua.LString(hungUpMessage), 0)
			}
			L.RaiseError("%v", err)
		}
		return n
	}
}

func (ls *luaSession) ctx() context.Context { return ls.vm.L.Context() }

// onDTMF feeds digits to the input callback: fn(session, "dtmf", {digit=, duration=}, arg); "break" stops.
func (ls *luaSession) onDTMF(L *lua.LState) func(esl.DTMF) bool {
	if ls.inputFn == nil || ls.inputFn == lua.LNil {
		return nil
	}
	return func(d esl.DTMF) bool {
		t := L.NewTable()
		t.RawSetString("digit", lua.LString(d.Digit))
		dur, _ := strconv.Atoi(d.Duration)
		t.RawSetString("duration", lua.LNumber(dur))
		L.Push(ls.inputFn)
		L.Push(ls.ud)
		L.Push(lua.LString("dtmf"))
		L.Push(t)
		L.Push(ls.inputArg)
		if err := L.PCall(4, 1, nil); err != nil {
			ls.s.Log().WithError(err).Error("input callback failed")
			return true
		}
		ret := L.Get(-1)
		L.Pop(1)
		switch strings.ToLower(lua.LVAsString(ret)) {
		case "", "true", "continue":
			return false
		}
		return true
	}
}

func exec(L *lua.LState, ls *luaSession, app, arg string) (int, error) {
	e, err := ls.s.Execute(ls.ctx(), app, arg, esl.ExecOptions{})
	if err != nil {
		return 0, err
	}
	L.Push(lua.LString(e.Get("Application-Response")))
	return 1, nil
}

var sessionMethods = map[string]lua.LGFunction{
	"answer":    call(func(L *lua.LState, ls *luaSession) (int, error) { return exec(L, ls, "answer", "") }),
	"preAnswer": call(func(L *lua.LState, ls *luaSession) (int, error) { return exec(L, ls, "pre_answer", "") }),
	"hangup": func(L *lua.LState) int {
		ls := checkSession(L)
		if err := ls.s.Hangup(ls.ctx(), mOptStr(L, 2, "NORMAL_CLEARING")); err != nil && !errors.Is(err, esl.ErrHungUp) {
			L.RaiseError("%v", err)
		}
		ls.runHook(L, "hangup", false)
		return 0
	},
	"ready": func(L *lua.LState) int {
		ls := checkSession(L)
		ls.runHook(L, "hangup", false)
		L.Push(lua.LBool(ls.s.Ready()))
		return 1
	},
	"answered":   func(L *lua.LState) int { L.Push(lua.LBool(checkSession(L).s.Answered())); return 1 },
	"bridged":    func(L *lua.LState) int { L.Push(lua.LBool(checkSession(L).s.Bridged())); return 1 },
	"mediaReady": func(L *lua.LState) int { L.Push(lua.LBool(checkSession(L).s.MediaReady())); return 1 },
	"getState":   func(L *lua.LState) int { L.Push(lua.LString(checkSession(L).s.State())); return 1 },
	"hangupCause": func(L *lua.LState) int {
		L.Push(lua.LString(checkSession(L).s.HangupCause()))
		return 1
	},
	"get_uuid": func(L *lua.LState) int { L.Push(lua.LString(checkSession(L).s.UUID())); return 1 },
	"getVariable": func(L *lua.LState) int {
		v, ok := checkSession(L).s.Variable(mStr(L, 2, "getVariable"))
		if !ok {
			L.Push(lua.LNil)
		} else {
			L.Push(lua.LString(v))
		}
		return 1
	},
	"setVariable": call(func(L *lua.LState, ls *luaSession) (int, error) {
		return 0, ls.s.SetVariable(ls.ctx(), mStr(L, 2, "setVariable"), mOptStr(L, 3, ""))
	}),
	"execute": call(func(L *lua.LState, ls *luaSession) (int, error) {
		return exec(L, ls, mStr(L, 2, "execute"), mOptStr(L, 3, ""))
	}),
	"streamFile": call(func(L *lua.LState, ls *luaSession) (int, error) {
		r, err := ls.s.StreamFile(ls.ctx(), mStr(L, 2, "streamFile"), ls.onDTMF(L))
		L.Push(lua.LString(r))
		return 1, err
	}),
	"sleep": call(func(L *lua.LState, ls *luaSession) (int, error) {
		return 0, ls.s.Sleep(ls.ctx(), mInt(L, 2, "sleep"), ls.onDTMF(L))
	}),
	"getDigits": call(func(L *lua.LState, ls *luaSession) (int, error) {
		ms := func(n int) time.Duration { return time.Duration(mOptInt(L, n, 0, "getDigits")) * time.Millisecond }
		d, _, err := ls.s.GetDigits(ls.ctx(), mInt(L, 2, "getDigits"), mOptStr(L, 3, ""), time.Duration(mInt(L, 4, "getDigits"))*time.Millisecond, ms(5), ms(6))
		L.Push(lua.LString(d))
		return 1, err
	}),
	"read": call(func(L *lua.LState, ls *luaSession) (int, error) {
		d, err := ls.s.Read(ls.ctx(), mInt(L, 2, "read"), mInt(L, 3, "read"), mOptStr(L, 4, ""), mInt(L, 5, "read"), mOptStr(L, 6, "#"), mOptInt(L, 7, 0, "read"))
		L.Push(lua.LString(d))
		return 1, err
	}),
	"playAndGetDigits": call(func(L *lua.LState, ls *luaSession) (int, error) {
		d, err := ls.s.PlayAndGetDigits(ls.ctx(), mInt(L, 2, "playAndGetDigits"), mInt(L, 3, "playAndGetDigits"), mInt(L, 4, "playAndGetDigits"), mInt(L, 5, "playAndGetDigits"), mOptStr(L, 6, ""),
			mOptStr(L, 7, ""), mOptStr(L, 8, ""), mOptStr(L, 9, ""), mOptStr(L, 10, ""), mOptInt(L, 11, 0, "playAndGetDigits"), mOptStr(L, 12, ""))
		L.Push(lua.LString(d))
		return 1, err
	}),
	"say": call(func(L *lua.LState, ls *luaSession) (int, error) {
		text, module, typ, method := mStr(L, 2, "say"), mStr(L, 3, "say"), mStr(L, 4, "say"), mStr(L, 5, "say")
		arg := module + " " + typ + " " + method
		if g := mOptStr(L, 6, ""); g != "" {
			arg += " " + g
		}
		return exec(L, ls, "say", arg+" "+text)
	}),
	"sayPhrase": call(func(L *lua.LState, ls *luaSession) (int, error) {
		arg := mStr(L, 2, "sayPhrase")
		if d, lang := mOptStr(L, 3, ""), mOptStr(L, 4, ""); d != "" || lang != "" {
			arg += "," + d
			if lang != "" {
				arg += "," + lang
			}
		}
		return exec(L, ls, "phrase", arg)
	}),
	"set_tts_params": func(L *lua.LState) int {
		ls := checkSession(L)
		ls.ttsEngine, ls.ttsVoice = mStr(L, 2, "set_tts_params"), mStr(L, 3, "set_tts_params")
		return 0
	},
	"speak": call(func(L *lua.LState, ls *luaSession) (int, error) {
		if ls.ttsEngine == "" {
			return 0, errors.New("session:speak: call session:set_tts_params(engine, voice) first")
		}
		return exec(L, ls, "speak", ls.ttsEngine+"|"+ls.ttsVoice+"|"+mStr(L, 2, "speak"))
	}),
	"recordFile": call(func(L *lua.LState, ls *luaSession) (int, error) {
		arg := mStr(L, 2, "recordFile")
		for i := 3; i <= 5; i++ {
			if L.Get(i) == lua.LNil {
				break
			}
			arg += " " + strconv.Itoa(L.CheckInt(i))
		}
		return exec(L, ls, "record", arg)
	}),
	"transfer": call(func(L *lua.LState, ls *luaSession) (int, error) {
		arg := strings.TrimSpace(strings.Join([]string{mStr(L, 2, "transfer"), mOptStr(L, 3, ""), mOptStr(L, 4, "")}, " "))
		ls.transferred = true
		// The dialplan takes the call back: ready() is false from now on and the engine will not hang up.
		if err := ls.s.Transfer(ls.ctx(), arg); err != nil {
			return 0, err
		}
		L.Push(lua.LString("_none_"))
		return 1, nil
	}),
	"bridge":      call(func(L *lua.LState, ls *luaSession) (int, error) { return exec(L, ls, "bridge", mStr(L, 2, "bridge")) }),
	"flushDigits": func(L *lua.LState) int { checkSession(L).s.FlushDigits(); return 0 },
	"flushEvents": func(L *lua.LState) int { return 0 },
	"setInputCallback": func(L *lua.LState) int {
		ls := checkSession(L)
		ls.inputFn, ls.inputArg = fnArg(L, 2), L.Get(3)
		return 0
	},
	"unsetInputCallback": func(L *lua.LState) int { checkSession(L).inputFn = nil; return 0 },
	"setHangupHook": func(L *lua.LState) int {
		ls := checkSession(L)
		ls.hookFn, ls.hookArg = fnArg(L, 2), L.Get(3)
		return 0
	},
	"setAutoHangup": func(L *lua.LState) int { checkSession(L).s.SetAutoHangup(L.ToBool(2)); return 0 },
	"consoleLog": func(L *lua.LState) int {
		ls := checkSession(L)
		level, msg := strings.ToLower(mStr(L, 2, "consoleLog")), strings.TrimRight(mStr(L, 3, "consoleLog"), "\n")
		entry := ls.s.Log().WithField("where", L.Where(1))
		switch level {
		case "err", "error", "crit", "alert":
			entry.Error(msg)
		case "warning", "warn":
			entry.Warn(msg)
		case "debug":
			entry.Debug(msg)
		default:
			entry.Log(logrus.InfoLevel, msg)
		}
		return 0
	},
	"api": call(func(L *lua.LState, ls *luaSession) (int, error) {
		cmd := strings.TrimSpace(mStr(L, 2, "api") + " " + mOptStr(L, 3, ""))
		r, err := ls.s.API(ls.ctx(), cmd)
		L.Push(lua.LString(r))
		return 1, err
	}),
	"bgapi": call(func(L *lua.LState, ls *luaSession) (int, error) {
		cmd := strings.TrimSpace(mStr(L, 2, "bgapi") + " " + mOptStr(L, 3, ""))
		r, err := ls.s.BgAPI(ls.ctx(), cmd)
		L.Push(lua.LString(r))
		return 1, err
	}),
	"sendmsg": call(func(L *lua.LState, ls *luaSession) (int, error) {
		t := L.CheckTable(2)
		var h esl.Headers
		t.ForEach(func(k, v lua.LValue) {
			h = append(h, esl.Header{Name: k.String(), Value: v.String()})
		})
		var body []byte
		if b := mOptStr(L, 3, ""); b != "" {
			body = []byte(b)
		}
		r, err := ls.s.SendMsg(ls.ctx(), h, body)
		L.Push(lua.LString(r))
		return 1, err
	}),
}
