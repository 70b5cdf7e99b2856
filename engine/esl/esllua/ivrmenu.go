package esllua

import (
	"context"
	"time"

	lua "github.com/yuin/gopher-lua"

	"github.com/switchboard/switchboard/engine/esl"
	"github.com/switchboard/switchboard/engine/esl/ivrmenu"
	"github.com/switchboard/switchboard/luabind"
)

// freeswitch.IVRMenu: menus built by the script, run by engine/esl/ivrmenu over the call.

type luaMenu struct{ m *ivrmenu.Menu }

// newIVRMenu takes mod_lua's 17 arguments: (main|nil, name, greeting, short_greeting, invalid, exit,
// transfer, confirm_macro, confirm_key, tts_engine, tts_voice, confirm_attempts, inter_timeout, digit_len,
// timeout, max_failures, max_timeouts); timeouts in ms.
func newIVRMenu(L *lua.LState) int {
	var parent *ivrmenu.Menu
	if ud, ok := L.Get(1).(*lua.LUserData); ok {
		if lm, ok := ud.Value.(*luaMenu); ok {
			parent = lm.m
		}
	}
	num := func(n int) int { v, _ := toInt(L.Get(n)); return v }
	m := ivrmenu.New(parent, mOptStr(L, 2, "menu"))
	m.Greeting, m.ShortGreeting, m.Invalid, m.ExitSound = mOptStr(L, 3, ""), mOptStr(L, 4, ""), mOptStr(L, 5, ""), mOptStr(L, 6, "")
	m.InterTimeout = time.Duration(num(13)) * time.Millisecond
	m.DigitLen = num(14)
	m.Timeout = time.Duration(num(15)) * time.Millisecond
	m.MaxFailures, m.MaxTimeouts = num(16), num(17)
	ud := L.NewUserData()
	ud.Value = &luaMenu{m: m}
	ud.Metatable = luabind.VMOf(L).Runtime().Shared("modlua.meta.ivrmenu", func(B *lua.LState) lua.LValue {
		check := func(L *lua.LState) *luaMenu {
			if ud, ok := L.Get(1).(*lua.LUserData); ok {
				if lm, ok := ud.Value.(*luaMenu); ok {
					return lm
				}
			}
			L.RaiseError("expected an IVR menu (freeswitch.IVRMenu)")
			return nil
		}
		methods := B.SetFuncs(B.NewTable(), map[string]lua.LGFunction{
			"bindAction": func(L *lua.LState) int {
				lm := check(L)
				if err := lm.m.Bind(mOptStr(L, 2, ""), mOptStr(L, 3, ""), mOptStr(L, 4, "")); err != nil {
					L.RaiseError("%v", err)
				}
				L.Push(lua.LTrue)
				return 1
			},
			"execute": func(L *lua.LState) int {
				lm := check(L)
				ls := checkSession2(L, 2)
				m := lm.m
				if name := mOptStr(L, 3, ""); name != "" {
					if m = lm.m.Find(name); m == nil {
						L.RaiseError("IVRMenu:execute: no menu %q", name)
					}
				}
				if ls.s == nil || ls.leg != nil || ls.unbound {
					L.RaiseError("IVRMenu:execute: needs the call's session")
				}
				ls.runHook(L, "hangup", false)
				err := m.Run(L.Context(), menuChannel{ls: ls})
				ls.done(L, err)
				ls.runHook(L, "hangup", false)
				return 0
			},
		})
		mt := B.NewTable()
		mt.RawSetString("__metatable", lua.LFalse)
		mt.RawSetString("__index", methods)
		return mt
	}).(*lua.LTable)
	L.Push(ud)
	return 1
}

// menuChannel is the call as a menu sees it.
type menuChannel struct{ ls *luaSession }

func (c menuChannel) Ready() bool { return c.ls.s.Ready() }

func (c menuChannel) Play(ctx context.Context, file string) error {
	if c.ls.s.PendingDigits() > 0 {
		return nil // type-ahead skips the prompt, as the digits would stop it at once
	}
	if err := c.ls.noTerminators(ctx); err != nil {
		return err
	}
	_, err := c.ls.s.ExecuteInput(ctx, "playback", file, esl.ExecOptions{StopOnDTMF: true})
	return err
}

func (c menuChannel) Collect(ctx context.Context, max int, first, inter time.Duration) (string, error) {
	d, _, err := c.ls.s.GetDigits(ctx, max, "#", first, inter, 0)
	return d, err
}

func (c menuChannel) Execute(ctx context.Context, app, arg string) error {
	_, err := c.ls.s.Execute(ctx, app, arg, esl.ExecOptions{})
	return err
}

func (c menuChannel) Event(ctx context.Context, subclass, menu string) {
	if !c.ls.s.Info().Full || !c.ls.s.Up() {
		return
	}
	_, _ = c.ls.s.SendEvent(ctx, "CUSTOM", esl.Headers{{Name: "Event-Subclass", Value: subclass}, {Name: "Menu-Name", Value: menu},
		{Name: "Caller-Unique-ID", Value: c.ls.s.UUID()}}, "") // a Unique-ID header would queue it to the channel
}
