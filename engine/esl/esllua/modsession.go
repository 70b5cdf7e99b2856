package esllua

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/sirupsen/logrus"
	lua "github.com/yuin/gopher-lua"

	"github.com/switchboard/switchboard/engine/esl"
)

// The session object of mod_lua-style flows: mod_lua's methods with mod_lua's semantics. Blocking calls
// return when the caller hangs up (0, "" or the digits so far) and the script goes on; ready() is false
// from then on. Integers accept numeric strings; argument numbers in errors do not count the session.

// argError raises "session:name: argument #n ..." counting from the first argument after self.
func argError(L *lua.LState, method string, n int, msg string) {
	L.RaiseError("session:%s: argument #%d %s", method, n-1, msg)
}

// toInt reads an integer argument as mod_lua's SWIG wrapper does: numbers and numeric strings, truncated
// toward zero.
func toInt(v lua.LValue) (int, bool) {
	switch x := v.(type) {
	case lua.LNumber:
		return int(math.Trunc(float64(x))), true
	case lua.LString:
		f, err := strconv.ParseFloat(strings.TrimSpace(string(x)), 64)
		if err != nil {
			return 0, false
		}
		return int(math.Trunc(f)), true
	}
	return 0, false
}

func mInt(L *lua.LState, n int, method string) int {
	v := L.Get(n)
	i, ok := toInt(v)
	if !ok {
		argError(L, method, n, fmt.Sprintf("expected a number, got %s", describe(v)))
	}
	return i
}

func mOptInt(L *lua.LState, n, def int, method string) int {
	if L.Get(n) == lua.LNil {
		return def
	}
	return mInt(L, n, method)
}

func mStr(L *lua.LState, n int, method string) string {
	switch v := L.Get(n).(type) {
	case lua.LString:
		return string(v)
	case lua.LNumber:
		return v.String()
	default:
		argError(L, method, n, fmt.Sprintf("expected a string, got %s", describe(v)))
	}
	return ""
}

// mOptStr: strings and numbers; nil (or absent) gives def, as a NULL char* gives the method's default.
func mOptStr(L *lua.LState, n int, def string) string {
	switch v := L.Get(n).(type) {
	case lua.LString:
		return string(v)
	case lua.LNumber:
		return v.String()
	}
	return def
}

func describe(v lua.LValue) string {
	if s, ok := v.(lua.LString); ok {
		return fmt.Sprintf("%q", string(s))
	}
	return v.Type().String()
}

// done handles a Go error of a mod_lua-style blocking call: a hangup is not an error (false: the method
// returns its "failed" value); anything else raises.
func (ls *luaSession) done(L *lua.LState, err error) bool {
	switch {
	case err == nil:
		return true
	case errors.Is(err, esl.ErrHungUp):
		return false
	case L.Context().Err() != nil:
		L.RaiseError("%v", context.Cause(L.Context()))
	}
	L.RaiseError("%v", err)
	return false
}

// blocking wraps a mod_lua-style method that talks to the channel: the hangup hook runs before and after
// it, as mod_lua runs a deferred hook around blocking calls.
func blocking(name string, fn func(L *lua.LState, ls *luaSession) int) lua.LGFunction {
	return func(L *lua.LState) int {
		ls := checkSession(L)
		if ls.leg == nil && !ls.unbound {
			ls.runHook(L, "hangup", false)
		}
		if ls.unbound {
			return ls.unboundReply(L, name)
		}
		if ls.leg != nil && !legMethods[name] {
			L.RaiseError("session:%s is not available on an originated leg in switchboard: its digits and media events do not reach the call's socket", name)
		}
		n := fn(L, ls)
		if ls.leg == nil {
			ls.runHook(L, "hangup", false)
		}
		return n
	}
}

// unboundReply is what mod_lua answers on an unbound session (freeswitch.Session() before originate, after
// destroy, a failed originate): an error log line and -1, "" or false.
func (ls *luaSession) unboundReply(L *lua.LState, name string) int {
	if c := callOf(L); c != nil {
		c.log.WithField("script", strings.TrimSuffix(L.Where(1), ":")).Errorf("session:%s: session is not initalized", name)
	}
	switch name {
	case "ready", "answered", "bridged", "mediaReady":
		L.Push(lua.LFalse)
	case "getVariable", "getDigits", "read", "playAndGetDigits", "get_uuid":
		L.Push(lua.LString(""))
	default:
		L.Push(lua.LNumber(-1))
	}
	return 1
}

func pushBool01(L *lua.LState, ok bool) int {
	if ok {
		L.Push(lua.LNumber(1))
	} else {
		L.Push(lua.LNumber(0))
	}
	return 1
}

func (ls *luaSession) ctxm() context.Context { return ls.vm.L.Context() }

// exec runs an application on the session's channel (or its leg).
func (ls *luaSession) exec(app, arg string, opt esl.ExecOptions) (esl.ExecResult, error) {
	if ls.leg != nil {
		opt.Target = ls.leg
		opt.OnInput = nil
	}
	return ls.s.ExecuteInput(ls.ctxm(), app, arg, opt)
}

// onInput turns the input callback into esl's: nil when none is set. file says whether the method plays
// or records a file (seek, pause... act on it) or not (they stop it).
func (ls *luaSession) onInput(L *lua.LState, file bool) func(esl.Input) esl.Control {
	if ls.leg != nil || (ls.inputName == "" && (ls.inputFn == nil || ls.inputFn == lua.LNil)) {
		return nil
	}
	return func(in esl.Input) esl.Control {
		fn, arg := ls.inputFn, ls.inputArg
		if ls.inputName != "" {
			fn = L.GetGlobal(ls.inputName)
			arg = lua.LNil
			if ls.inputArgName != "" {
				arg = L.GetGlobal(ls.inputArgName)
			}
		}
		if fn == nil {
			fn = lua.LNil
		}
		L.Push(fn)
		L.Push(ls.ud)
		if in.DTMF != nil {
			t := L.CreateTable(0, 2)
			t.RawSetString("digit", lua.LString(in.DTMF.Digit))
			dur, _ := strconv.Atoi(in.DTMF.Duration)
			t.RawSetString("duration", lua.LNumber(dur))
			L.Push(lua.LString("dtmf"))
			L.Push(t)
		} else {
			ev := newEventUD(L, &luaEvent{headers: in.Event.Headers, body: in.Event.Body, typ: in.Event.Name(), received: true})
			L.G.Global.RawSetString("__Input_Event__", ev)
			L.Push(lua.LString("event"))
			L.Push(ev)
		}
		L.Push(arg)
		if err := L.PCall(4, 1, nil); err != nil {
			if L.Context().Err() != nil {
				return esl.Control{Stop: true}
			}
			ls.logEntry(L).WithError(err).Error("input callback failed: the playback stops")
			return esl.Control{Stop: true}
		}
		ret := L.Get(-1)
		L.Pop(1)
		return inputControl(ret, file)
	}
}

// inputControl maps an input callback's return value as mod_lua does (switch_ivr.c, freeswitch_lua.cpp).
func inputControl(ret lua.LValue, file bool) esl.Control {
	var s string
	switch v := ret.(type) {
	case *lua.LNilType, lua.LBool, *lua.LTable:
		return esl.Control{}
	case lua.LString:
		s = string(v)
	default:
		s = lua.LVAsString(v)
		if s == "" {
			s = v.String()
		}
	}
	switch s {
	case "", "true", "undefined":
		return esl.Control{}
	}
	low := strings.ToLower(s)
	fileCmd := strings.HasPrefix(low, "speed:") || strings.HasPrefix(low, "volume:") || low == "pause" || low == "restart" ||
		strings.HasPrefix(low, "seek") || low == "stop" || low == "truncate"
	if !fileCmd {
		return esl.Control{Stop: true}
	}
	if !file {
		return esl.Control{Stop: true}
	}
	switch {
	case low == "seek":
		return esl.Control{}
	case low == "truncate":
		return esl.Control{Stop: true}
	}
	return esl.Control{FileCmd: low}
}

// logEntry is the call's logger with the script line that is running.
func (ls *luaSession) logEntry(L *lua.LState) *logrus.Entry {
	var e *logrus.Entry
	if c := callOf(L); c != nil {
		e = c.log
	} else {
		e = ls.s.Log()
	}
	return e.WithField("script", strings.TrimSuffix(L.Where(1), ":"))
}

// setCallbackArgs reads setInputCallback/setHangupHook arguments: mod_lua takes names of globals (looked
// up at each call); a function is accepted too.
func callbackArgs(L *lua.LState, method string) (fn lua.LValue, name string, arg lua.LValue, argName string) {
	switch v := L.Get(2).(type) {
	case lua.LString:
		name = string(v)
	case *lua.LFunction:
		fn = v
	case *lua.LNilType:
	default:
		argError(L, method, 2, "expected the name of a global function, got "+describe(v))
	}
	switch v := L.Get(3).(type) {
	case lua.LString:
		argName = string(v)
	default:
		arg = v
	}
	return
}

// legMethods are the blocking methods an originated leg (freeswitch.Session(dial_string)) supports.
var legMethods = map[string]bool{"answer": true, "preAnswer": true, "setVariable": true, "execute": true, "streamFile": true,
	"sleep": true, "recordFile": true, "speak": true, "say": true, "transfer": true, "waitForAnswer": true}

var modSessionMethods = map[string]lua.LGFunction{
	"answer": blocking("answer", func(L *lua.LState, ls *luaSession) int {
		if ls.leg != nil {
			if ls.leg.Answered() {
				return pushBool01(L, true)
			}
			_, err := ls.exec("answer", "", esl.ExecOptions{})
			return pushBool01(L, ls.done(L, err))
		}
		if !ls.s.Up() {
			return pushBool01(L, false)
		}
		if ls.s.Answered() {
			return pushBool01(L, true)
		}
		_, err := ls.exec("answer", "", esl.ExecOptions{})
		return pushBool01(L, ls.done(L, err))
	}),
	"preAnswer": blocking("preAnswer", func(L *lua.LState, ls *luaSession) int {
		if ls.leg == nil && ls.s.MediaReady() {
			return pushBool01(L, true)
		}
		_, err := ls.exec("pre_answer", "", esl.ExecOptions{})
		return pushBool01(L, ls.done(L, err))
	}),
	"hangup": func(L *lua.LState) int {
		ls := checkSession(L)
		if ls.unbound {
			return ls.unboundReply(L, "hangup")
		}
		cause := hangupCause(mOptStr(L, 2, "NORMAL_CLEARING"))
		var err error
		if ls.leg != nil {
			err = ls.leg.Hangup(ls.ctxm(), cause)
		} else {
			err = ls.s.Hangup(ls.ctxm(), cause)
		}
		ls.done(L, err)
		if ls.leg == nil {
			ls.runHook(L, "hangup", false)
		}
		return 0
	},
	"ready": func(L *lua.LState) int {
		ls := checkSession(L)
		if ls.unbound {
			L.Push(lua.LFalse)
			return 1
		}
		if ls.leg != nil {
			L.Push(lua.LBool(ls.leg.Ready()))
			return 1
		}
		ls.runHook(L, "hangup", false)
		L.Push(lua.LBool(ls.s.Ready()))
		return 1
	},
	"answered": func(L *lua.LState) int {
		ls := checkSession(L)
		switch {
		case ls.unbound:
			L.Push(lua.LFalse)
		case ls.leg != nil:
			L.Push(lua.LBool(ls.leg.Answered()))
		default:
			L.Push(lua.LBool(ls.s.Answered()))
		}
		return 1
	},
	"hangupCause": func(L *lua.LState) int {
		ls := checkSession(L)
		cause := ""
		switch {
		case ls.failCause != "":
			cause = ls.failCause
		case ls.unbound:
		case ls.leg != nil:
			cause = ls.leg.HangupCause()
			if cause == "" {
				cause = "SUCCESS"
			}
		default:
			cause = ls.s.HangupCause()
		}
		if cause == "" {
			cause = "NONE"
		}
		L.Push(lua.LString(cause))
		return 1
	},
	"get_uuid": func(L *lua.LState) int {
		ls := checkSession(L)
		if ls.unbound {
			L.Push(lua.LString("uninitialized"))
			return 1
		}
		L.Push(lua.LString(ls.uuid()))
		return 1
	},
	"getVariable": func(L *lua.LState) int {
		ls := checkSession(L)
		if ls.unbound {
			return ls.unboundReply(L, "getVariable")
		}
		name := mStr(L, 2, "getVariable")
		if v, ok := ls.variable(L, name); ok {
			L.Push(lua.LString(v))
		} else {
			L.Push(lua.LNil)
		}
		return 1
	},
	"setVariable": blocking("setVariable", func(L *lua.LState, ls *luaSession) int {
		name, value := mStr(L, 2, "setVariable"), mOptStr(L, 3, "")
		if ls.leg != nil {
			ls.done(L, ls.leg.SetVariable(ls.ctxm(), name, value))
			return 0
		}
		ls.done(L, ls.s.SetVariableLiteral(ls.ctxm(), name, value))
		return 0
	}),
	"execute": blocking("execute", func(L *lua.LState, ls *luaSession) int {
		app, arg := mStr(L, 2, "execute"), mOptStr(L, 3, "")
		if app == "lua" {
			// A nested lua run: the named mod_lua-style script, in this state, as a function call.
			return ls.nestedLua(L, arg)
		}
		_, err := ls.exec(app, arg, esl.ExecOptions{})
		ls.done(L, err)
		return 0
	}),
	"streamFile": blocking("streamFile", func(L *lua.LState, ls *luaSession) int {
		file := mStr(L, 2, "streamFile")
		if start := mOptInt(L, 3, 0, "streamFile"); start > 0 {
			file += "@@" + strconv.Itoa(start)
		}
		if !ls.ensureTerminators(L) {
			return pushBool01(L, false)
		}
		r, err := ls.exec("playback", file, esl.ExecOptions{OnInput: ls.onInput(L, true)})
		if !ls.done(L, err) {
			return pushBool01(L, false)
		}
		played := r.Event != nil && r.Event.Get("Application-Response") == "FILE PLAYED" && !r.Stopped
		return pushBool01(L, played)
	}),
	"sleep": blocking("sleep", func(L *lua.LState, ls *luaSession) int {
		ms := mInt(L, 2, "sleep")
		mOptInt(L, 3, 0, "sleep")
		if ls.leg != nil {
			_, err := ls.exec("sleep", strconv.Itoa(ms), esl.ExecOptions{})
			return pushBool01(L, ls.done(L, err))
		}
		stopped, err := ls.s.WaitInput(ls.ctxm(), time.Duration(ms)*time.Millisecond, 0, ls.onInput(L, false))
		if !ls.done(L, err) {
			return pushBool01(L, false)
		}
		return pushBool01(L, !stopped)
	}),
	"recordFile": blocking("recordFile", func(L *lua.LState, ls *luaSession) int {
		arg := mStr(L, 2, "recordFile")
		for i := 3; i <= 5; i++ {
			if L.Get(i) == lua.LNil {
				break
			}
			arg += " " + strconv.Itoa(mInt(L, i, "recordFile"))
		}
		r, err := ls.exec("record", arg, esl.ExecOptions{OnInput: ls.onInput(L, true)})
		if !ls.done(L, err) {
			return pushBool01(L, false)
		}
		return pushBool01(L, !r.Stopped)
	}),
	"set_tts_params": func(L *lua.LState) int {
		ls := checkSession(L)
		ls.ttsEngine, ls.ttsVoice = mOptStr(L, 2, ""), mOptStr(L, 3, "")
		return 0
	},
	"speak": blocking("speak", func(L *lua.LState, ls *luaSession) int {
		text := mStr(L, 2, "speak")
		if ls.ttsEngine == "" {
			ls.logEntry(L).Error("session:speak: no TTS engine: call session:set_tts_params(engine, voice) first")
			return pushBool01(L, true)
		}
		r, err := ls.exec("speak", ls.ttsEngine+"|"+ls.ttsVoice+"|"+text, esl.ExecOptions{OnInput: ls.onInput(L, false)})
		if !ls.done(L, err) {
			return pushBool01(L, false)
		}
		return pushBool01(L, !r.Stopped)
	}),
	"say": blocking("say", func(L *lua.LState, ls *luaSession) int {
		text, module, typ, method := mStr(L, 2, "say"), mStr(L, 3, "say"), mStr(L, 4, "say"), mStr(L, 5, "say")
		lang := module
		if m, l, ok := strings.Cut(module, ":"); ok {
			module, lang = m, l
		} else if v, ok := ls.variable(L, "language"); ok && v != "" {
			lang = v
		} else if v, ok := ls.variable(L, "default_language"); ok && v != "" {
			lang = v
		}
		arg := module
		if lang != module {
			arg += ":" + lang
		}
		arg += " " + typ + " " + method
		if g := mOptStr(L, 6, ""); g != "" {
			arg += " " + g
		}
		_, err := ls.exec("say", arg+" "+text, esl.ExecOptions{OnInput: ls.onInput(L, false)})
		ls.done(L, err)
		return 0
	}),
	"sayPhrase": blocking("sayPhrase", func(L *lua.LState, ls *luaSession) int {
		name, data := mStr(L, 2, "sayPhrase"), mOptStr(L, 3, "")
		lang := mOptStr(L, 4, "")
		if lang == "" {
			// mod_lua: default_language, then en (the channel's `language` is not consulted).
			lang = "en"
			if v, ok := ls.variable(L, "default_language"); ok && v != "" {
				lang = v
			}
		}
		// The phrase application takes its language from the channel variable `language`: set it around
		// the phrase and put the old value back.
		old, had := ls.s.Variable("language")
		ctx := ls.ctxm()
		if !had || old != lang {
			if !ls.done(L, ls.s.SetVariable(ctx, "language", lang)) {
				return 0
			}
		}
		arg := name
		if data != "" {
			arg += "," + data
		}
		_, err := ls.exec("phrase", arg, esl.ExecOptions{OnInput: ls.onInput(L, false)})
		if !ls.done(L, err) {
			return 0
		}
		if !had || old != lang {
			ls.done(L, ls.s.SetVariable(ctx, "language", old))
		}
		return 0
	}),
	"getDigits": blocking("getDigits", func(L *lua.LState, ls *luaSession) int {
		max := mInt(L, 2, "getDigits")
		terms := mOptStr(L, 3, "")
		timeout := mInt(L, 4, "getDigits")
		inter := mOptInt(L, 5, 0, "getDigits")
		abs := mOptInt(L, 6, 0, "getDigits")
		d, _, err := ls.s.GetDigits(ls.ctxm(), max, terms, ms(timeout), ms(inter), ms(abs))
		ls.done(L, err)
		L.Push(lua.LString(d))
		return 1
	}),
	"read": blocking("read", func(L *lua.LState, ls *luaSession) int {
		lo, hi := mInt(L, 2, "read"), mInt(L, 3, "read")
		prompt := mOptStr(L, 4, "")
		timeout := mInt(L, 5, "read")
		terms := mOptStr(L, 6, "")
		dt := mOptInt(L, 7, 0, "read")
		if !ls.s.Info().Async {
			d, err := ls.s.Read(ls.ctxm(), max(lo, 1), max(hi, lo, 1), prompt, timeout, orDefault(terms, "#"), dt)
			ls.done(L, err)
			L.Push(lua.LString(d))
			return 1
		}
		if !ls.ensureTerminators(L) {
			L.Push(lua.LString(""))
			return 1
		}
		r, err := ls.s.ReadDigits(ls.ctxm(), lo, hi, prompt, ms(timeout), ms(dt), terms)
		ls.s.NoteVariable("read_result", r.Result)
		if r.Terminator != "" {
			ls.s.NoteVariable("read_terminator_used", r.Terminator)
		}
		ls.done(L, err)
		L.Push(lua.LString(r.Digits))
		return 1
	}),
	"playAndGetDigits": blocking("playAndGetDigits", func(L *lua.LState, ls *luaSession) int {
		if L.GetTop() < 9 {
			L.RaiseError("session:playAndGetDigits: expected at least 8 arguments (min, max, tries, timeout, terminators, file, invalid_file, regexp), got %d", L.GetTop()-1)
		}
		min, max, tries, timeout := mInt(L, 2, "playAndGetDigits"), mInt(L, 3, "playAndGetDigits"), mInt(L, 4, "playAndGetDigits"), mInt(L, 5, "playAndGetDigits")
		terms, file, invalid, pattern := mOptStr(L, 6, ""), mOptStr(L, 7, ""), mOptStr(L, 8, ""), mOptStr(L, 9, "")
		varName := mOptStr(L, 10, "")
		dt := mOptInt(L, 11, 0, "playAndGetDigits")
		xfer := mOptStr(L, 12, "")
		if !ls.s.Info().Async {
			d, err := ls.s.PlayAndGetDigits(ls.ctxm(), min, max, tries, timeout, terms, file, invalid, pattern, varName, dt, xfer)
			ls.done(L, err)
			L.Push(lua.LString(d))
			return 1
		}
		re, err := esl.CompilePattern(pattern)
		if err != nil {
			L.RaiseError("session:playAndGetDigits: %v", err)
		}
		if !ls.ensureTerminators(L) {
			L.Push(lua.LString(""))
			return 1
		}
		d, err := ls.s.PlayAndGetDigitsLocal(ls.ctxm(), min, max, tries, ms(timeout), terms, file, invalid, re, varName, ms(dt), xfer)
		if xfer != "" && ls.s.Transferred() {
			ls.transferred = true
		}
		ls.done(L, err)
		L.Push(lua.LString(d))
		return 1
	}),
	"transfer": blocking("transfer", func(L *lua.LState, ls *luaSession) int {
		ext := mOptStr(L, 2, "")
		if ext == "" {
			ext = "service"
		}
		dest := strings.TrimSpace(strings.Join([]string{ext, mOptStr(L, 3, ""), mOptStr(L, 4, "")}, " "))
		if ls.leg != nil {
			_, err := ls.leg.Execute(ls.ctxm(), "transfer", dest)
			return pushBool01(L, ls.done(L, err))
		}
		ls.transferred = true
		return pushBool01(L, ls.done(L, ls.s.Transfer(ls.ctxm(), dest)))
	}),
	"flushDigits": func(L *lua.LState) int {
		ls := checkSession(L)
		if ls.s != nil && ls.leg == nil {
			ls.s.FlushDigits()
		}
		L.Push(lua.LNumber(0))
		return 1
	},
	"flushEvents": func(L *lua.LState) int {
		ls := checkSession(L)
		if ls.s != nil && ls.leg == nil {
			ls.s.FlushEvents()
		}
		L.Push(lua.LNumber(0))
		return 1
	},
	"collectDigits": blocking("collectDigits", func(L *lua.LState, ls *luaSession) int {
		digitTimeout, abs := 0, 0
		if L.GetTop() >= 3 {
			digitTimeout, abs = mInt(L, 2, "collectDigits"), mInt(L, 3, "collectDigits")
		} else {
			abs = mInt(L, 2, "collectDigits")
		}
		if in := ls.onInput(L, false); in != nil {
			_, err := ls.s.WaitInput(ls.ctxm(), ms(abs), ms(digitTimeout), in)
			ls.done(L, err)
		}
		L.Push(lua.LNumber(0))
		return 1
	}),
	"setInputCallback": func(L *lua.LState) int {
		ls := checkSession(L)
		ls.inputFn, ls.inputName, ls.inputArg, ls.inputArgName = callbackArgs(L, "setInputCallback")
		if !ls.divertOn && ls.s != nil && ls.leg == nil && ls.s.Info().Async {
			// Events queued to this channel (sendevent with its Unique-ID) reach the callback as "event".
			ls.divertOn = true
			ls.done(L, ls.s.DivertEvents(ls.ctxm(), true))
		}
		return 0
	},
	"unsetInputCallback": func(L *lua.LState) int {
		ls := checkSession(L)
		ls.inputFn, ls.inputName, ls.inputArg, ls.inputArgName = nil, "", nil, ""
		return 0
	},
	"setHangupHook": func(L *lua.LState) int {
		ls := checkSession(L)
		ls.hookFn, ls.hookName, ls.hookArg, ls.hookArgName = callbackArgs(L, "setHangupHook")
		return 0
	},
	"setAutoHangup": func(L *lua.LState) int {
		ls := checkSession(L)
		v, ok := L.Get(2).(lua.LBool)
		if !ok {
			argError(L, "setAutoHangup", 2, "expected true or false, got "+describe(L.Get(2)))
		}
		if ls.leg != nil {
			ls.legAutoHangup = bool(v)
		} else if ls.s != nil && !ls.unbound {
			ls.s.SetAutoHangup(bool(v))
		}
		L.Push(lua.LNumber(0))
		return 1
	},
	"destroy": func(L *lua.LState) int {
		ls := checkSession(L)
		if !ls.unbound {
			ctx := ls.ctxm()
			if ls.leg != nil && ls.legAutoHangup {
				_ = ls.leg.Hangup(ctx, "NORMAL_CLEARING")
			} else if ls.leg == nil && ls.s != nil && ls.s.AutoHangup() && ls.s.Ready() {
				_ = ls.s.Hangup(ctx, "NORMAL_CLEARING")
			}
			ls.inputFn, ls.inputName, ls.hookFn, ls.hookName = nil, "", nil, ""
			ls.unbound = true
		}
		if msg := mOptStr(L, 2, ""); msg != "" {
			L.RaiseError("%s", msg)
		}
		return 0
	},
	"consoleLog": func(L *lua.LState) int {
		consoleLog(L, mOptStr(L, 2, "debug"), mOptStr(L, 3, ""))
		return 0
	},
	"hangupState": func(L *lua.LState) int { return 0 },
	"getState": func(L *lua.LState) int {
		ls := checkSession(L)
		switch {
		case ls.unbound:
			L.Push(lua.LString("ERROR"))
		case ls.leg != nil:
			if ls.leg.Ready() {
				L.Push(lua.LString("CS_EXECUTE"))
			} else {
				L.Push(lua.LString("CS_HANGUP"))
			}
		default:
			L.Push(lua.LString(ls.s.State()))
		}
		return 1
	},
	"print": blocking("print", func(L *lua.LState, ls *luaSession) int {
		_, err := ls.s.API(ls.ctxm(), "uuid_send_text "+ls.uuid()+" "+mStr(L, 2, "print"))
		return pushBool01(L, ls.done(L, err))
	}),
	"setPrivate": func(L *lua.LState) int {
		ls := checkSession(L)
		if ls.private == nil {
			ls.private = map[string]lua.LValue{}
		}
		ls.private[mStr(L, 2, "setPrivate")] = L.Get(3)
		return 0
	},
	"getPrivate": func(L *lua.LState) int {
		ls := checkSession(L)
		v := ls.private[mStr(L, 2, "getPrivate")]
		if v == nil {
			v = lua.LNil
		}
		L.Push(v)
		return 1
	},
	"setEventData": func(L *lua.LState) int {
		ls := checkSession(L)
		ev := checkEvent(L, 2)
		if ls.s != nil && ls.leg == nil {
			ev.headers = append(ev.headers, esl.Header{Name: "Unique-ID", Value: ls.s.UUID()})
			for _, h := range ls.s.Info().Data.Headers {
				if strings.HasPrefix(h.Name, "Caller-") || strings.HasPrefix(h.Name, "Channel-") {
					ev.headers = append(ev.headers, h)
				}
			}
		}
		return 0
	},
	"originate": func(L *lua.LState) int {
		ls := checkSession(L)
		dest := mOptStr(L, 3, "")
		timeout := mInt(L, 4, "originate")
		if dest == "" {
			L.Push(lua.LNumber(0))
			return 1
		}
		ok := originateInto(L, ls, dest, time.Duration(timeout)*time.Second)
		ls.legAutoHangup = false // mod_lua: Session() + originate leaves S_HUP off
		if ok {
			L.Push(lua.LNumber(0))
		} else {
			L.Push(lua.LNumber(1))
		}
		return 1
	},
	"waitForAnswer": blocking("waitForAnswer", func(L *lua.LState, ls *luaSession) int {
		return 0 // the originate already waited for the answer (bgapi originate returns once answered)
	}),
	"insertFile": notAvailable("session:insertFile", "it edits files on the FreeSWITCH host; there is no event-socket command for it"),
	"getXMLCDR":  notAvailable("session:getXMLCDR", "there is no event-socket command for a live XML CDR; read variables instead"),
	"sendEvent":  notAvailable("session:sendEvent", "it hands an event to the endpoint (SIP INFO/NOTIFY); use freeswitch.Event(...):fire() or session:execute(\"send_info\", ...)"),
	"playAndDetectSpeech": blocking("playAndDetectSpeech", func(L *lua.LState, ls *luaSession) int {
		file, engine, grammar := mStr(L, 2, "playAndDetectSpeech"), mStr(L, 3, "playAndDetectSpeech"), mStr(L, 4, "playAndDetectSpeech")
		_, err := ls.exec("play_and_detect_speech", file+" detect:"+engine+" "+grammar, esl.ExecOptions{})
		if !ls.done(L, err) {
			L.Push(lua.LNil)
			return 1
		}
		if v, ok := ls.s.Variable("detect_speech_result"); ok {
			L.Push(lua.LString(v))
		} else {
			L.Push(lua.LNil)
		}
		return 1
	}),
	"detectSpeech": blocking("detectSpeech", func(L *lua.LState, ls *luaSession) int {
		var words []string
		for i := 2; i <= L.GetTop(); i++ {
			if w := mOptStr(L, i, ""); w != "" {
				words = append(words, w)
			}
		}
		_, err := ls.exec("detect_speech", strings.Join(words, " "), esl.ExecOptions{})
		ls.done(L, err)
		return 0
	}),
}

func ms(n int) time.Duration { return time.Duration(n) * time.Millisecond }

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// hangupCause accepts a cause name in any case or a Q.850 number; unknown names give NORMAL_CLEARING.
func hangupCause(c string) string {
	c = strings.ToUpper(strings.TrimSpace(c))
	if n, err := strconv.Atoi(c); err == nil {
		if name, ok := q850[n]; ok {
			return name
		}
		return "NORMAL_CLEARING"
	}
	for _, name := range q850 {
		if name == c {
			return c
		}
	}
	return "NORMAL_CLEARING"
}

var q850 = map[int]string{1: "UNALLOCATED_NUMBER", 3: "NO_ROUTE_DESTINATION", 16: "NORMAL_CLEARING", 17: "USER_BUSY",
	18: "NO_USER_RESPONSE", 19: "NO_ANSWER", 21: "CALL_REJECTED", 27: "DESTINATION_OUT_OF_ORDER", 28: "INVALID_NUMBER_FORMAT",
	31: "NORMAL_UNSPECIFIED", 34: "NORMAL_CIRCUIT_CONGESTION", 41: "NORMAL_TEMPORARY_FAILURE", 47: "RESOURCE_UNAVAILABLE",
	63: "SERVICE_UNAVAILABLE", 102: "RECOVERY_ON_TIMER_EXPIRE", 487: "ORIGINATOR_CANCEL", 500: "CRASH",
	501: "SYSTEM_SHUTDOWN", 502: "LOSE_RACE", 503: "MANAGER_REQUEST", 602: "ALLOTTED_TIMEOUT", 609: "ATTENDED_TRANSFER"}

func notAvailable(what, why string) lua.LGFunction {
	return func(L *lua.LState) int {
		L.RaiseError("%s is not available in switchboard: %s", what, why)
		return 0
	}
}

// variable is getVariable's lookup, as switch_channel_get_variable_dup does it: channel variables, then
// caller-profile fields, then global variables (api global_getvar, asked once per name and call).
func (ls *luaSession) variable(L *lua.LState, name string) (string, bool) {
	if ls.leg != nil {
		return ls.leg.Variable(name)
	}
	if v, ok := ls.s.Variable(name); ok {
		return v, true
	}
	if v, ok := ls.s.ProfileVariable(name); ok {
		return v, true
	}
	if c := callOf(L); c != nil {
		return c.globalVar(name)
	}
	return "", false
}

// ensureTerminators makes `*` and every other key reach the input callback instead of ending playback
// (FreeSWITCH's playback stops on playback_terminators, `*` by default): set once per call.
func (ls *luaSession) ensureTerminators(L *lua.LState) bool {
	return ls.done(L, ls.noTerminators(ls.ctxm()))
}

func (ls *luaSession) noTerminators(ctx context.Context) error {
	if ls.termsSet || ls.leg != nil || !ls.s.Info().Async {
		return nil
	}
	ls.termsSet = true
	if v, ok := ls.s.Variable("playback_terminators"); ok && v == "none" {
		return nil
	}
	return ls.s.SetVariable(ctx, "playback_terminators", "none")
}
