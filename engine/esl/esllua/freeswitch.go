package esllua

import (
	"bytes"
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/sirupsen/logrus"
	lua "github.com/yuin/gopher-lua"

	"github.com/switchboard/switchboard/engine/esl"
	"github.com/switchboard/switchboard/luabind"
)

// The freeswitch table of mod_lua-style scripts. Its functions are built once per runtime (rt.Shared) and
// find their run with callOf(L); each run sees them through a proxy whose __index names what is missing.

// modProxy returns a fresh empty table reading through the shared table name ("freeswitch", "os", "io").
func modProxy(L *lua.LState, rt *luabind.Runtime, name string) *lua.LTable {
	t := L.CreateTable(0, 0)
	t.Metatable = rt.Shared("modlua.meta."+name, func(B *lua.LState) lua.LValue {
		var fns map[string]lua.LGFunction
		why := ""
		switch name {
		case "freeswitch":
			fns = freeswitchFuncs
			why = "see the mod_lua compatibility table in docs/lua-api.md"
		case "os":
			fns = osFuncs
			why = "the sandbox offers os.date, os.time, os.clock, os.difftime, os.getenv (esl.getenv_allow), os.remove and os.rename (in esl.data_dir)"
		case "io":
			fns = ioFuncs
			why = "the sandbox offers io.write (to the log), io.open and io.lines (in esl.data_dir)"
		}
		lib := B.SetFuncs(B.NewTable(), fns)
		mt := B.NewTable()
		mt.RawSetString("__metatable", lua.LFalse)
		mt.RawSetString("__index", B.NewFunction(func(L *lua.LState) int {
			k := L.Get(2)
			if v := lib.RawGet(k); v != lua.LNil {
				L.Push(v)
				return 1
			}
			L.RaiseError("%s.%s is not available in switchboard: %s", name, lua.LVAsString(k), why)
			return 0
		}))
		return mt
	}).(*lua.LTable)
	return t
}

// sbFreeswitch is the global freeswitch of sb.flow scripts and top levels: indexing it explains where the
// mod_lua table lives instead of failing on a nil.
func sbFreeswitch(vm *luabind.VM) lua.LValue {
	t := vm.L.CreateTable(0, 0)
	t.Metatable = vm.Runtime().Shared("modlua.meta.sbfreeswitch", func(B *lua.LState) lua.LValue {
		mt := B.NewTable()
		mt.RawSetString("__metatable", lua.LFalse)
		mt.RawSetString("__index", B.NewFunction(func(L *lua.LState) int {
			L.RaiseError("freeswitch.%s: the freeswitch table exists only in mod_lua-style scripts (lua.freeswitch_dir, scripts/freeswitch/); in sb.flow use the session's methods and sb.*",
				lua.LVAsString(L.Get(2)))
			return 0
		}))
		// a write would stay in this VM's stub and be seen by the next call the VM serves
		mt.RawSetString("__newindex", B.NewFunction(func(L *lua.LState) int {
			L.RaiseError("freeswitch.%s: the freeswitch table exists only in mod_lua-style scripts (lua.freeswitch_dir, scripts/freeswitch/); it cannot be written in sb.flow",
				lua.LVAsString(L.Get(2)))
			return 0
		}))
		return mt
	}).(*lua.LTable)
	return t
}

func modCallOrRaise(L *lua.LState, what string) *modCall {
	c := callOf(L)
	if c == nil {
		L.RaiseError("%s: only mod_lua-style scripts can use it", what)
	}
	return c
}

// consoleLog writes a mod_lua log line into the engine's log, with the call's uuid and the script line.
func consoleLog(L *lua.LState, level, msg string) {
	msg = strings.TrimRight(msg, "\r\n")
	var e *logrus.Entry
	if c := callOf(L); c != nil {
		e = c.log
	} else if vm := luabind.VMOf(L); vm != nil {
		e = vm.Runtime().Log()
	} else {
		return
	}
	e = e.WithField("script", strings.TrimSuffix(L.Where(1), ":"))
	lvl := strings.ToLower(strings.TrimSpace(level))
	if n, err := strconv.Atoi(lvl); err == nil && n >= 0 && n <= 7 {
		lvl = []string{"console", "alert", "crit", "err", "warning", "notice", "info", "debug"}[n]
	}
	switch lvl {
	case "console", "alert", "crit", "err":
		e.Error(msg)
	case "warning":
		e.Warn(msg)
	case "notice", "info":
		e.Info(msg)
	default: // debug, and what mod_lua does not know (error, warn): debug as in FreeSWITCH
		e.Debug(msg)
	}
}

// globalVar is getGlobalVariable over the call's socket (api global_getvar), asked once per name and run.
func (c *modCall) globalVar(name string) (string, bool) {
	if v, ok := c.globals[name]; ok {
		if v == nil {
			return "", false
		}
		return *v, true
	}
	if c.globals == nil {
		c.globals = map[string]*string{}
	}
	if c.s == nil || !c.s.Info().Full || !c.s.Up() {
		return "", false
	}
	body, err := c.s.API(c.vm.L.Context(), "global_getvar "+name)
	body = strings.TrimRight(body, "\n")
	if err != nil || body == "" || strings.HasPrefix(body, "-ERR") || body == "_undef_" {
		c.globals[name] = nil
		return "", false
	}
	c.globals[name] = &body
	return body, true
}

// apiCall runs an api command for freeswitch.API over the call's socket, mapping FreeSWITCH's replies as
// mod_lua's API object returns them (never nil; "-ERR no reply" is "").
func (c *modCall) apiCall(L *lua.LState, cmd string) string {
	cmd = strings.TrimSpace(cmd)
	if cmd == "" {
		return "-ERR No application specified"
	}
	if c.s == nil {
		return "-ERR " + firstField(cmd) + " Command not found!\n" // no FreeSWITCH behind an API-style run
	}
	body, err := c.s.API(L.Context(), cmd)
	if err != nil {
		if L.Context().Err() != nil {
			L.RaiseError("%v", context.Cause(L.Context()))
		}
		return "-ERR " + err.Error() + "\n"
	}
	if body == "-ERR no reply\n" {
		return ""
	}
	return body
}

func firstField(s string) string { f, _, _ := strings.Cut(s, " "); return f }

var freeswitchFuncs = map[string]lua.LGFunction{
	"consoleLog": func(L *lua.LState) int {
		consoleLog(L, mOptStr(L, 1, "debug"), mOptStr(L, 2, ""))
		return 0
	},
	"console_log": func(L *lua.LState) int {
		consoleLog(L, mOptStr(L, 1, "debug"), mOptStr(L, 2, ""))
		return 0
	},
	"consoleCleanLog": func(L *lua.LState) int {
		consoleLog(L, "info", mOptStr(L, 1, ""))
		return 0
	},
	"consoleLog2": func(L *lua.LState) int {
		consoleLog(L, mOptStr(L, 1, "debug"), mOptStr(L, 5, ""))
		return 0
	},
	"msleep": func(L *lua.LState) int {
		n, ok := toInt(L.Get(1))
		if !ok {
			L.RaiseError("freeswitch.msleep: argument #1 expected a number of milliseconds, got %s", describe(L.Get(1)))
		}
		if n <= 0 {
			return 0
		}
		t := time.NewTimer(ms(n))
		defer t.Stop()
		select {
		case <-t.C:
		case <-L.Context().Done():
			L.RaiseError("freeswitch.msleep interrupted: %v", context.Cause(L.Context()))
		}
		return 0
	},
	"getGlobalVariable": func(L *lua.LState) int {
		c := modCallOrRaise(L, "freeswitch.getGlobalVariable")
		if v, ok := c.globalVar(mStrF(L, 1, "getGlobalVariable")); ok {
			L.Push(lua.LString(v))
		} else {
			L.Push(lua.LNil)
		}
		return 1
	},
	"setGlobalVariable": func(L *lua.LState) int {
		c := modCallOrRaise(L, "freeswitch.setGlobalVariable")
		name, value := mStrF(L, 1, "setGlobalVariable"), mOptStr(L, 2, "")
		value = strings.ReplaceAll(value, "${", "%{")
		c.apiCall(L, "global_setvar "+name+"="+value)
		if c.globals == nil {
			c.globals = map[string]*string{}
		}
		if value == "" {
			c.globals[name] = nil
		} else {
			c.globals[name] = &value
		}
		return 0
	},
	"running": func(L *lua.LState) int {
		c := callOf(L)
		L.Push(lua.LBool(c != nil && (c.s == nil || c.s.Up())))
		return 1
	},
	"API": func(L *lua.LState) int {
		ud := L.NewUserData()
		ud.Value = &luaAPI{}
		ud.Metatable = apiMeta(L)
		L.Push(ud)
		return 1
	},
	"Event": func(L *lua.LState) int {
		typ := eventType(mOptStr(L, 1, "MESSAGE"))
		ev := &luaEvent{typ: typ, created: true}
		if sub := mOptStr(L, 2, ""); sub != "" {
			if strings.EqualFold(mOptStr(L, 1, ""), "json") {
				L.RaiseError("freeswitch.Event(\"json\", text) is not supported: build the event with addHeader")
			}
			ev.typ = "CUSTOM"
			ev.headers = append(ev.headers, esl.Header{Name: "Event-Subclass", Value: sub})
		}
		ev.headers = append(esl.Headers{{Name: "Event-Name", Value: ev.typ}}, ev.headers...)
		L.Push(newEventUD(L, ev))
		return 1
	},
	"Session": func(L *lua.LState) int {
		c := modCallOrRaise(L, "freeswitch.Session")
		ls := &luaSession{s: c.s, vm: c.vm, mod: true, unbound: true}
		ud := L.NewUserData()
		ud.Value = ls
		L.SetMetatable(ud, sessionMetatable(c.vm.Runtime()))
		ls.ud = ud
		arg := mOptStr(L, 1, "")
		switch {
		case arg == "":
		case c.s != nil && arg == c.s.UUID():
			L.Push(c.ls.ud) // the call itself
			return 1
		default:
			if c.s == nil {
				L.RaiseError("freeswitch.Session(%q): originating needs a call (an API-style run has no FreeSWITCH connection)", arg)
			}
			originateInto(L, ls, arg, c.cfg.OriginateTimeout)
			ls.legAutoHangup = ls.leg != nil // mod_lua: a session that originated hangs up at script end
		}
		L.Push(ud)
		return 1
	},
	"bridge": func(L *lua.LState) int {
		c := modCallOrRaise(L, "freeswitch.bridge")
		a, b := checkSession2(L, 1), checkSession2(L, 2)
		if c.s == nil || a.unbound || b.unbound {
			L.RaiseError("freeswitch.bridge: both sessions must be bound and ready")
		}
		if _, err := c.s.API(L.Context(), "uuid_bridge "+a.uuid()+" "+b.uuid()); err != nil && L.Context().Err() != nil {
			L.RaiseError("%v", context.Cause(L.Context()))
		}
		// Until one side hangs up (the bridge ends with it).
		for a.alive() && b.alive() {
			t := time.NewTimer(100 * time.Millisecond)
			select {
			case <-t.C:
			case <-L.Context().Done():
				t.Stop()
				L.RaiseError("%v", context.Cause(L.Context()))
			}
		}
		return 0
	},
	"Dbh": func(L *lua.LState) int {
		return openDbh(L)
	},
	"Stream": func(L *lua.LState) int {
		L.Push(newStreamUD(L, &luaStream{}))
		return 1
	},
	"JSON": func(L *lua.LState) int {
		t := L.CreateTable(0, 2)
		t.RawSetString("encode", L.NewFunction(func(L *lua.LState) int {
			b, err := luabind.EncodeJSON(L.CheckAny(2))
			if err != nil {
				L.Push(lua.LNil)
				return 1
			}
			L.Push(lua.LString(b))
			return 1
		}))
		t.RawSetString("decode", L.NewFunction(func(L *lua.LState) int {
			v, err := luabind.DecodeJSON(L, []byte(L.CheckString(2)))
			if err != nil {
				L.Push(lua.LNil)
				return 1
			}
			L.Push(v)
			return 1
		}))
		L.Push(t)
		return 1
	},
	"IVRMenu":       newIVRMenu,
	"EventConsumer": notAvailable("freeswitch.EventConsumer", "it reads switch-wide events, which an outbound socket does not carry; subscribe in an inbound connection instead"),
	"email":         notAvailable("freeswitch.email", "FreeSWITCH's mailer is not reachable over the event socket"),
	"getTime":       func(L *lua.LState) int { L.Push(lua.LString(strconv.FormatInt(time.Now().UnixMilli(), 10))); return 1 },
}

func mStrF(L *lua.LState, n int, fn string) string {
	switch v := L.Get(n).(type) {
	case lua.LString:
		return string(v)
	case lua.LNumber:
		return v.String()
	default:
		L.RaiseError("freeswitch.%s: argument #%d expected a string, got %s", fn, n, describe(v))
	}
	return ""
}

func checkSession2(L *lua.LState, n int) *luaSession {
	ud, ok := L.Get(n).(*lua.LUserData)
	if ok {
		if ls, ok := ud.Value.(*luaSession); ok {
			return ls
		}
	}
	L.RaiseError("argument #%d: expected a session, got %s", n, describe(L.Get(n)))
	return nil
}

func (ls *luaSession) alive() bool {
	switch {
	case ls.unbound:
		return false
	case ls.leg != nil:
		return ls.leg.Ready()
	}
	return ls.s.Ready()
}

// originateInto dials dest as a second leg and binds ls to it; false (ls stays unbound, hangupCause is
// the reason) when it failed.
func originateInto(L *lua.LState, ls *luaSession, dest string, timeout time.Duration) bool {
	c := modCallOrRaise(L, "originate")
	if c.s == nil {
		L.RaiseError("originate: an API-style run has no FreeSWITCH connection")
	}
	leg, err := c.s.Originate(L.Context(), dest, timeout)
	if err != nil {
		if L.Context().Err() != nil {
			L.RaiseError("%v", context.Cause(L.Context()))
		}
		ls.failCause = "NORMAL_TEMPORARY_FAILURE"
		c.log.WithError(err).WithField("dial", dest).Error("originate failed")
		return false
	}
	if !leg.Ready() {
		ls.failCause = leg.HangupCause()
		return false
	}
	ls.leg, ls.unbound, ls.s = leg, false, c.s
	c.legs = append(c.legs, ls)
	return true
}

// nestedLua runs session:execute("lua", "script args") in the same state: the named mod_lua-style script
// as a function of this run, with argv set for it (mod_lua would start a new state; globals are shared here).
func (ls *luaSession) nestedLua(L *lua.LState, data string) int {
	c := modCallOrRaise(L, "session:execute(\"lua\")")
	args := esl.SplitArgs(data)
	if len(args) == 0 {
		L.RaiseError("session:execute(\"lua\"): no script named")
	}
	s, name, rest := c.ml.resolve(args[0])
	if s == nil {
		L.RaiseError("session:execute(\"lua\", %q): no script %s.lua in %s", data, strings.TrimSuffix(args[0], ".lua"), c.ml.display)
	}
	argv := L.CreateTable(len(args), 1)
	argv.RawSetInt(0, lua.LString(name+".lua"))
	for _, a := range append(rest, args[1:]...) {
		argv.Append(lua.LString(a))
	}
	old := L.GetGlobal("argv")
	L.G.Global.RawSetString("argv", argv)
	L.Push(L.NewFunctionFromProto(s.Proto))
	L.Call(0, 0)
	L.G.Global.RawSetString("argv", old)
	return 0
}

// luaAPI is freeswitch.API().
type luaAPI struct{}

func apiMeta(L *lua.LState) *lua.LTable {
	return luabind.VMOf(L).Runtime().Shared("modlua.meta.api", func(B *lua.LState) lua.LValue {
		methods := B.SetFuncs(B.NewTable(), map[string]lua.LGFunction{
			"execute": func(L *lua.LState) int {
				c := modCallOrRaise(L, "freeswitch.API:execute")
				cmd := strings.TrimSpace(mOptStr(L, 2, "") + " " + strings.TrimSpace(mOptStr(L, 3, "")))
				L.Push(lua.LString(c.apiCall(L, cmd)))
				return 1
			},
			"executeString": func(L *lua.LState) int {
				c := modCallOrRaise(L, "freeswitch.API:executeString")
				L.Push(lua.LString(c.apiCall(L, mOptStr(L, 2, ""))))
				return 1
			},
			"getTime": func(L *lua.LState) int {
				L.Push(lua.LString(strconv.FormatInt(time.Now().UnixMilli(), 10)))
				return 1
			},
		})
		mt := B.NewTable()
		mt.RawSetString("__metatable", lua.LFalse)
		mt.RawSetString("__index", methods)
		return mt
	}).(*lua.LTable)
}

// luaEvent is a freeswitch.Event (or an event handed to an input callback, which cannot be fired).
type luaEvent struct {
	typ      string
	headers  esl.Headers
	body     string
	created  bool // made by the script: fire() sends it
	received bool
}

func newEventUD(L *lua.LState, ev *luaEvent) *lua.LUserData {
	ud := L.NewUserData()
	ud.Value = ev
	ud.Metatable = eventMeta(L)
	return ud
}

func checkEvent(L *lua.LState, n int) *luaEvent {
	if ud, ok := L.Get(n).(*lua.LUserData); ok {
		if ev, ok := ud.Value.(*luaEvent); ok {
			return ev
		}
	}
	L.RaiseError("argument #%d: expected an event, got %s", n-1, describe(L.Get(n)))
	return nil
}

// knownEvents are the event names freeswitch.Event accepts; others become MESSAGE, as in FreeSWITCH.
var knownEvents = map[string]bool{"CUSTOM": true, "MESSAGE": true, "NOTIFY": true, "PRESENCE_IN": true, "PRESENCE_OUT": true,
	"PRESENCE_PROBE": true, "MESSAGE_WAITING": true, "MESSAGE_QUERY": true, "ROSTER": true, "SEND_MESSAGE": true, "RECV_MESSAGE": true,
	"REQUEST_PARAMS": true, "CHANNEL_DATA": true, "GENERAL": true, "COMMAND": true, "SESSION_HEARTBEAT": true, "CLIENT_DISCONNECTED": true,
	"SERVER_DISCONNECTED": true, "SEND_INFO": true, "RECV_INFO": true, "PHONE_FEATURE": true, "TALK": true, "NOTALK": true,
	"DTMF": true, "CALL_UPDATE": true, "API": true, "BACKGROUND_JOB": true, "RELOADXML": true, "LOG": true, "TRAP": true}

func eventType(t string) string {
	u := strings.ToUpper(strings.TrimSpace(t))
	u = strings.TrimPrefix(u, "SWITCH_EVENT_")
	if knownEvents[u] || strings.HasPrefix(u, "CHANNEL_") {
		return u
	}
	return "MESSAGE"
}

func eventMeta(L *lua.LState) *lua.LTable {
	return luabind.VMOf(L).Runtime().Shared("modlua.meta.event", func(B *lua.LState) lua.LValue {
		methods := B.SetFuncs(B.NewTable(), eventMethods)
		mt := B.NewTable()
		mt.RawSetString("__metatable", lua.LFalse)
		mt.RawSetString("__index", methods)
		return mt
	}).(*lua.LTable)
}

var eventMethods = map[string]lua.LGFunction{
	"addHeader": func(L *lua.LState) int {
		ev := checkEvent(L, 1)
		name, value := mOptStr(L, 2, ""), mOptStr(L, 3, "")
		if name == "" {
			L.Push(lua.LFalse)
			return 1
		}
		if value == "" {
			ev.del(name)
		} else {
			ev.headers = append(ev.headers, esl.Header{Name: name, Value: value})
		}
		L.Push(lua.LTrue)
		return 1
	},
	"delHeader": func(L *lua.LState) int {
		L.Push(lua.LBool(checkEvent(L, 1).del(mOptStr(L, 2, ""))))
		return 1
	},
	"getHeader": func(L *lua.LState) int {
		ev := checkEvent(L, 1)
		name := mOptStr(L, 2, "")
		if name == "_body" {
			L.Push(lua.LString(ev.body))
			return 1
		}
		if v, ok := ev.headers.Lookup(name); ok {
			L.Push(lua.LString(v))
		} else {
			L.Push(lua.LNil)
		}
		return 1
	},
	"addBody": func(L *lua.LState) int {
		checkEvent(L, 1).body = mOptStr(L, 2, "")
		L.Push(lua.LTrue)
		return 1
	},
	"getBody": func(L *lua.LState) int {
		ev := checkEvent(L, 1)
		if ev.body == "" {
			L.Push(lua.LNil)
		} else {
			L.Push(lua.LString(ev.body))
		}
		return 1
	},
	"getType": func(L *lua.LState) int {
		ev := checkEvent(L, 1)
		if ev.typ == "" {
			L.Push(lua.LString("invalid"))
		} else {
			L.Push(lua.LString(ev.typ))
		}
		return 1
	},
	"serialize": func(L *lua.LState) int {
		ev := checkEvent(L, 1)
		e := &esl.Event{Headers: ev.headers, Body: ev.body}
		switch strings.ToLower(mOptStr(L, 2, "")) {
		case "json":
			L.Push(lua.LString(esl.AppendJSONEvent(nil, e)))
		default:
			L.Push(lua.LString(esl.AppendPlainEvent(nil, e)))
		}
		return 1
	},
	"fire": func(L *lua.LState) int {
		ev := checkEvent(L, 1)
		c := callOf(L)
		if !ev.created || c == nil || c.s == nil {
			L.Push(lua.LFalse)
			return 1
		}
		var h esl.Headers
		for _, x := range ev.headers {
			if !strings.EqualFold(x.Name, "Event-Name") {
				h = append(h, x)
			}
		}
		_, err := c.s.SendEvent(L.Context(), ev.typ, h, ev.body)
		if err != nil && L.Context().Err() != nil {
			L.RaiseError("%v", context.Cause(L.Context()))
		}
		if err != nil {
			c.log.WithError(err).Warn("freeswitch.Event:fire failed")
		}
		L.Push(lua.LBool(err == nil))
		return 1
	},
	"merge": func(L *lua.LState) int {
		ev, other := checkEvent(L, 1), checkEvent(L, 2)
		for _, h := range other.headers {
			if _, ok := ev.headers.Lookup(h.Name); !ok {
				ev.headers = append(ev.headers, h)
			}
		}
		return 0
	},
	"setPriority": func(L *lua.LState) int { return 0 },
}

func (ev *luaEvent) del(name string) bool {
	kept := ev.headers[:0]
	found := false
	for _, h := range ev.headers {
		if strings.EqualFold(h.Name, name) {
			found = true
			continue
		}
		kept = append(kept, h)
	}
	ev.headers = kept
	return found
}

// luaStream is the stream of API-style runs: what the script writes is the command's reply.
type luaStream struct {
	buf bytes.Buffer
}

const maxStreamBytes = 16 << 20

func newStreamUD(L *lua.LState, st *luaStream) *lua.LUserData {
	ud := L.NewUserData()
	ud.Value = st
	ud.Metatable = luabind.VMOf(L).Runtime().Shared("modlua.meta.stream", func(B *lua.LState) lua.LValue {
		check := func(L *lua.LState) *luaStream {
			if ud, ok := L.Get(1).(*lua.LUserData); ok {
				if st, ok := ud.Value.(*luaStream); ok {
					return st
				}
			}
			L.RaiseError("expected a stream")
			return nil
		}
		write := func(L *lua.LState, st *luaStream, s string) {
			if st.buf.Len()+len(s) > maxStreamBytes {
				L.RaiseError("stream:write: the reply would exceed %d bytes", maxStreamBytes)
			}
			st.buf.WriteString(s)
		}
		methods := B.SetFuncs(B.NewTable(), map[string]lua.LGFunction{
			"write": func(L *lua.LState) int {
				write(L, check(L), mOptStr(L, 2, ""))
				return 0
			},
			"raw_write": func(L *lua.LState) int {
				st := check(L)
				s := mOptStr(L, 2, "")
				if n, ok := toInt(L.Get(3)); ok && n >= 0 && n < len(s) {
					s = s[:n]
				}
				write(L, st, s)
				return 0
			},
			"get_data": func(L *lua.LState) int {
				L.Push(lua.LString(check(L).buf.String()))
				return 1
			},
			"read": func(L *lua.LState) int {
				L.Push(lua.LNil)
				L.Push(lua.LNumber(0))
				return 2
			},
		})
		mt := B.NewTable()
		mt.RawSetString("__metatable", lua.LFalse)
		mt.RawSetString("__index", methods)
		return mt
	}).(*lua.LTable)
	return ud
}

// APIScriptResult is what an API-style run wrote to its stream.
type APIScriptResult struct {
	Output string
	Err    error // a script error; Output then ends with "-ERR Cannot execute script\n", as mod_lua's does
}

// RunAPIScript runs a mod_lua-style script as FreeSWITCH's `lua` API command does: globals stream, env
// (the API request event: API-Command, API-Command-Argument) and argv, no session. cmdline is
// "<script> [args]". db may be nil (freeswitch.Dbh then opens pools of its own for the run).
func (b *Binding) RunAPIScript(ctx context.Context, g *luabind.Generation, cmdline string, cfg esl.Config, log *logrus.Entry) APIScriptResult {
	ml := b.modLuaOf(g)
	args := esl.SplitArgs(cmdline)
	if len(args) == 0 {
		return APIScriptResult{Output: "-ERR no script given\n", Err: fmt.Errorf("lua: no script given")}
	}
	s, name, rest := ml.resolve(args[0])
	if s == nil {
		err := fmt.Errorf("lua: no script %s.lua in %s (scripts: %s)", strings.TrimSuffix(args[0], ".lua"), ml.display, strings.Join(b.ModLuaFlows(g), ", "))
		return APIScriptResult{Output: "-ERR " + err.Error() + "\n", Err: err}
	}
	if log == nil {
		log = g.Runtime().Log()
	}
	vm := g.NewCallVM(ctx)
	defer vm.CloseCall()
	L := vm.L
	c := &modCall{vm: vm, ml: ml, name: name, cfg: cfg, log: log.WithField("script_run", name), stream: &luaStream{}}
	c.files = &dataFiles{dir: cfg.DataDir}
	c.ownDB = true
	setupModCall(vm, c, name+".lua", append(rest, args[1:]...))
	L.G.Global.RawSetString("stream", newStreamUD(L, c.stream))
	env := &luaEvent{typ: "API", headers: esl.Headers{{Name: "Event-Name", Value: "API"}, {Name: "API-Command", Value: "lua"},
		{Name: "API-Command-Argument", Value: cmdline}}}
	L.G.Global.RawSetString("env", newEventUD(L, env))
	L.Push(L.NewFunctionFromProto(s.Proto))
	err := L.PCall(0, 0, nil)
	c.end()
	out := c.stream.buf.String()
	if err != nil && !isExit(err) {
		serr := vm.LongError(err, "lua api "+name)
		c.log.Error(serr.Error())
		return APIScriptResult{Output: out + "-ERR Cannot execute script\n", Err: serr}
	}
	return APIScriptResult{Output: out}
}
