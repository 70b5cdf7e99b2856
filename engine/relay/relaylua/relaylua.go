// Package relaylua is the relay's Lua binding: the EXPRESSION column of relay.routes compiled as Lua
// (Compiler, the relay's ExprCompiler), with 3forge's AMIScript operators translated (translateAMIScript),
// the expressions whose result is visibly not a boolean refused (notBoolean), and the pure ones marked so
// the relay may remember their results (pureExpression). The common forms (params, constants, comparisons,
// and/or/not, arithmetic) are also compiled to Go closures (compile.go), which answer what Lua would and hand
// Lua every message they do not model. Scripts get no sb.relay functions yet, so the relay has no
// luabind.Binding.
package relaylua

import (
	"context"
	"errors"
	"fmt"
	"strings"

	lua "github.com/yuin/gopher-lua"

	"github.com/switchboard/switchboard/engine/relay"
	"github.com/switchboard/switchboard/luabind"
)

var luaKeywords = map[string]bool{"and": true, "break": true, "do": true, "else": true, "elseif": true, "end": true,
	"false": true, "for": true, "function": true, "if": true, "in": true, "local": true, "nil": true, "not": true,
	"or": true, "repeat": true, "return": true, "then": true, "true": true, "until": true, "while": true}

// ParamName is the Lua name under which a declared route param is
// visible: the param name itself, or "_" + name when it starts with a digit
// (FIX tags such as 55 become _55).
func ParamName(name string) string {
	if name != "" && name[0] >= '0' && name[0] <= '9' {
		return "_" + name
	}
	return name
}

// translateAMIScript rewrites the AMIScript/Java operators that have no Lua
// meaning (&&, ||, !=, !) to Lua's (and, or, ~=, not), outside string
// literals, so 3forge routes files work unchanged. Lua source is untouched.
func translateAMIScript(src string) string {
	var b strings.Builder
	b.Grow(len(src) + 8)
	var quote byte
	for i := 0; i < len(src); i++ {
		c := src[i]
		if quote != 0 {
			b.WriteByte(c)
			if c == '\\' && i+1 < len(src) {
				i++
				b.WriteByte(src[i])
			} else if c == quote {
				quote = 0
			}
			continue
		}
		switch {
		case c == '"' || c == '\'':
			quote = c
			b.WriteByte(c)
		case c == '&' && i+1 < len(src) && src[i+1] == '&':
			b.WriteString(" and ")
			i++
		case c == '|' && i+1 < len(src) && src[i+1] == '|':
			b.WriteString(" or ")
			i++
		case c == '!' && i+1 < len(src) && src[i+1] == '=':
			b.WriteString("~=")
			i++
		case c == '!':
			b.WriteString(" not ")
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// Compiler returns the relay's ExprCompiler: each expression is
// compiled once as `local <params> = ...; return (<expr>)` and evaluated with
// positional arguments on the serving generation's VMs (so the sandbox, the
// VM pool and the handler time limit apply). An expression whose source
// shows it is not a boolean (`qty - qty`, a String param alone) is refused.
// When it runs, true is true; false and nil (null) are false; a Lua error,
// a timeout, or any other result (a number, a string: 0 and "" would be true
// in Lua) makes the rule false and is returned as the error, the latter as a
// *relay.NotBooleanError.
func Compiler(rt *luabind.Runtime) relay.ExprCompiler {
	return func(params []relay.ParamType, source string) (relay.Predicate, error) {
		lp, names, src, err := luaPredicate(rt, params, source)
		if err != nil {
			return nil, err
		}
		holds := make(map[string]string, len(params))
		for i, p := range params {
			switch p.Type {
			case relay.TypeBoolean:
				holds[names[i]] = "a boolean"
			case relay.TypeString, relay.TypeChar:
				holds[names[i]] = "a string"
			default:
				holds[names[i]] = "a number"
			}
		}
		if what := notBoolean(translateAMIScript(source), holds); what != "" {
			return nil, fmt.Errorf("%q yields %s, not a boolean: a route expression must be true or false (compare values, e.g. qty > 0)", source, what)
		}
		return compileRoute(lp, names, src), nil
	}
}

// luaPredicate compiles source as the Lua chunk src (`local <names> = ...; return (<expr>\n)`).
func luaPredicate(rt *luabind.Runtime, params []relay.ParamType, source string) (lp *relayPredicate, names []string, src string, err error) {
	names = make([]string, len(params))
	for i, p := range params {
		n := ParamName(p.Name)
		if luaKeywords[n] {
			return nil, nil, "", fmt.Errorf("param %q is a Lua keyword; rename it", p.Name)
		}
		names[i] = n
	}
	var b strings.Builder
	if len(names) > 0 {
		b.WriteString("local ")
		b.WriteString(strings.Join(names, ", "))
		b.WriteString(" = ...; ")
	}
	b.WriteString("return (")
	b.WriteString(translateAMIScript(source))
	b.WriteString("\n)")
	src = b.String()
	f, err := luabind.CompileFunc("relay.routes", src)
	if err != nil {
		return nil, nil, "", fmt.Errorf("%q: %w", source, err)
	}
	return &relayPredicate{rt: rt, f: f, ev: "relay.route " + source, pure: pureExpression(translateAMIScript(source), names)}, names, src, nil
}

type relayPredicate struct {
	rt   *luabind.Runtime
	f    *luabind.Func
	ev   string
	pure bool
}

// Pure reports whether the expression reads only its params and pure library functions, so the relay may
// remember its results per param values.
func (p *relayPredicate) Pure() bool { return p.pure }

var errNoGeneration = errors.New("lua: no scripts loaded")

func (p *relayPredicate) Eval(args []relay.Value) (bool, error) {
	g := p.rt.Current()
	if g == nil {
		return false, errNoGeneration
	}
	var (
		result  bool
		notBool *relay.NotBooleanError
	)
	err := g.RunFunc(context.Background(), p.f, p.ev, 0, func(L *lua.LState, lf *lua.LFunction) error {
		L.Push(lf)
		for i := range args {
			L.Push(relayValue(&args[i]))
		}
		if err := L.PCall(len(args), 1, nil); err != nil {
			return err
		}
		v := L.Get(-1)
		L.Pop(1)
		switch v.Type() {
		case lua.LTBool:
			result = v == lua.LTrue
		case lua.LTNil:
			// null: false (3forge applies ON_FALSE when the expression yields null)
		default:
			notBool = &relay.NotBooleanError{Yields: luaTypeArticle(v), Value: luaValueText(v)}
		}
		return nil
	})
	if err == nil && notBool != nil {
		return false, notBool
	}
	return result, err
}

// luaTypeArticle names a Lua value's type for an error ("a number", "a string", "a table").
func luaTypeArticle(v lua.LValue) string {
	switch v.Type() {
	case lua.LTNumber:
		return "a number"
	case lua.LTString:
		return "a string"
	}
	return "a " + v.Type().String()
}

// luaValueText is a short rendering of a number or string result for the log; other types have none.
func luaValueText(v lua.LValue) string {
	switch v.Type() {
	case lua.LTNumber:
		return v.String()
	case lua.LTString:
		s := string(v.(lua.LString))
		if len(s) > 32 {
			s = s[:32] + "..."
		}
		return fmt.Sprintf("%q", s)
	}
	return ""
}

func relayValue(v *relay.Value) lua.LValue {
	switch v.Kind {
	case relay.KindNull:
		return lua.LNil
	case relay.KindBool:
		return lua.LBool(v.I != 0)
	case relay.KindInt, relay.KindLong, relay.KindUTC:
		if v.Pattern != "" {
			return lua.LString(v.S)
		}
		return lua.LNumber(v.I)
	case relay.KindFloat, relay.KindDouble:
		return lua.LNumber(v.F)
	}
	return lua.LString(v.S)
}
