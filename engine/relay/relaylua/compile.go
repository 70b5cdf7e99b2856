package relaylua

import (
	"context"
	"fmt"
	"math"
	"strings"
	"sync/atomic"

	lua "github.com/yuin/gopher-lua"
	"github.com/yuin/gopher-lua/ast"
	"github.com/yuin/gopher-lua/parse"

	"github.com/switchboard/switchboard/engine/relay"
	"github.com/switchboard/switchboard/luabind"
)

// Route expressions compiled to Go (issue 18). The common forms — typed params, globals holding a nil,
// boolean, number or string, constants, comparisons, ==/~=, and/or/not, arithmetic and parentheses — are
// turned into a tree of Go closures when the routes load, from the very syntax tree gopher-lua builds for
// the Lua chunk (same parser, same precedence, same constants). A compiled expression computes exactly
// what gopher-lua computes for the values it handles; wherever Lua would raise an error (comparing nil
// with a number, arithmetic on nil), coerce a string to a number, or do anything else this file does not
// model, the node reports "not handled" and that message is evaluated by the Lua function instead, so
// results and errors stay Lua's own. FuzzCompiledMatchesLua checks the claim on random expressions.

// vkind is the Lua type of a value a compiled expression handles.
type vkind uint8

const (
	vNil vkind = iota
	vBool
	vNum
	vStr
)

// val is a Lua nil, boolean, number (gopher-lua numbers are float64) or string.
type val struct {
	k vkind
	b bool
	n float64
	s string
}

var (
	valNil   = val{}
	valTrue  = val{k: vBool, b: true}
	valFalse = val{k: vBool}
)

func boolVal(b bool) val {
	if b {
		return valTrue
	}
	return valFalse
}

// truthy is Lua's test: everything but nil and false is true.
func (v val) truthy() bool { return v.k != vNil && (v.k != vBool || v.b) }

// lvalue converts v to the Lua value it stands for.
func (v val) lvalue() lua.LValue {
	switch v.k {
	case vBool:
		return lua.LBool(v.b)
	case vNum:
		return lua.LNumber(v.n)
	case vStr:
		return lua.LString(v.s)
	}
	return lua.LNil
}

// argVal is the value a declared param holds in Lua (what relayValue pushes).
func argVal(v *relay.Value) val {
	switch v.Kind {
	case relay.KindNull:
		return valNil
	case relay.KindBool:
		return boolVal(v.I != 0)
	case relay.KindInt, relay.KindLong, relay.KindUTC:
		if v.Pattern != "" {
			return val{k: vStr, s: v.S}
		}
		return val{k: vNum, n: float64(v.I)}
	case relay.KindFloat, relay.KindDouble:
		return val{k: vNum, n: v.F}
	}
	return val{k: vStr, s: v.S}
}

// argNum is the number a param holds, false when it holds something else.
func argNum(v *relay.Value) (float64, bool) {
	switch v.Kind {
	case relay.KindInt, relay.KindLong, relay.KindUTC:
		return float64(v.I), v.Pattern == ""
	case relay.KindFloat, relay.KindDouble:
		return v.F, true
	}
	return 0, false
}

// node evaluates a compiled sub-expression; false means "not handled here": the message goes to Lua.
type node func(args []relay.Value, globals []val) (val, bool)

// exprCompiler turns one expression's syntax tree into nodes.
type exprCompiler struct {
	params  map[string]int // Lua name -> index in args
	globals []string       // free names the expression reads, by index in globals
	consts  map[string]float64
}

// errNotCompiled says an expression uses a form only Lua evaluates.
type errNotCompiled struct{ why string }

func (e *errNotCompiled) Error() string { return "not compiled: " + e.why }

// compileGo compiles src (the Lua chunk Compiler builds: `local <names> = ...; return (<expr>\n)`) into a
// node, and returns the free names it reads as globals.
func compileGo(names []string, src string) (node, []string, error) {
	chunk, err := parse.Parse(strings.NewReader(src), "relay.routes")
	if err != nil {
		return nil, nil, err
	}
	c := &exprCompiler{params: make(map[string]int, len(names))}
	for i, n := range names {
		c.params[n] = i
	}
	stmts := chunk
	if len(names) > 0 {
		if len(stmts) == 0 {
			return nil, nil, &errNotCompiled{"no local statement"}
		}
		if _, ok := stmts[0].(*ast.LocalAssignStmt); !ok {
			return nil, nil, &errNotCompiled{"no local statement"}
		}
		stmts = stmts[1:]
	}
	if len(stmts) != 1 {
		return nil, nil, &errNotCompiled{"more than one statement"}
	}
	ret, ok := stmts[0].(*ast.ReturnStmt)
	if !ok || len(ret.Exprs) != 1 {
		return nil, nil, &errNotCompiled{"not a single return value"}
	}
	n, err := c.expr(ret.Exprs[0])
	if err != nil {
		return nil, nil, err
	}
	return n, c.globals, nil
}

func (c *exprCompiler) expr(e ast.Expr) (node, error) {
	switch e := e.(type) {
	case *ast.NilExpr:
		return constNode(valNil), nil
	case *ast.TrueExpr:
		return constNode(valTrue), nil
	case *ast.FalseExpr:
		return constNode(valFalse), nil
	case *ast.NumberExpr:
		n, err := c.number(e.Value)
		if err != nil {
			return nil, err
		}
		return constNode(val{k: vNum, n: n}), nil
	case *ast.StringExpr:
		return constNode(val{k: vStr, s: e.Value}), nil
	case *ast.IdentExpr:
		if i, ok := c.params[e.Value]; ok {
			return func(args []relay.Value, _ []val) (val, bool) { return argVal(&args[i]), true }, nil
		}
		j := len(c.globals)
		for k, g := range c.globals {
			if g == e.Value {
				j = k
			}
		}
		if j == len(c.globals) {
			c.globals = append(c.globals, e.Value)
		}
		return func(_ []relay.Value, gl []val) (val, bool) { return gl[j], true }, nil
	case *ast.UnaryNotOpExpr:
		x, err := c.expr(e.Expr)
		if err != nil {
			return nil, err
		}
		return func(args []relay.Value, gl []val) (val, bool) {
			v, ok := x(args, gl)
			return boolVal(!v.truthy()), ok
		}, nil
	case *ast.UnaryMinusOpExpr:
		x, err := c.expr(e.Expr)
		if err != nil {
			return nil, err
		}
		return func(args []relay.Value, gl []val) (val, bool) {
			v, ok := x(args, gl)
			if !ok || v.k != vNum {
				return valNil, false // a string is coerced, anything else raises: Lua's business
			}
			return val{k: vNum, n: -v.n}, true // OP_UNM stores -0 as -0 (only arithmetic goes through the cache)
		}, nil
	case *ast.LogicalOpExpr:
		l, r, err := c.operands(e.Lhs, e.Rhs)
		if err != nil {
			return nil, err
		}
		if e.Operator == "and" {
			return func(args []relay.Value, gl []val) (val, bool) {
				v, ok := l(args, gl)
				if !ok || !v.truthy() {
					return v, ok
				}
				return r(args, gl)
			}, nil
		}
		return func(args []relay.Value, gl []val) (val, bool) {
			v, ok := l(args, gl)
			if !ok || v.truthy() {
				return v, ok
			}
			return r(args, gl)
		}, nil
	case *ast.RelationalOpExpr:
		return c.relational(e)
	case *ast.ArithmeticOpExpr:
		return c.arithmetic(e)
	}
	return nil, &errNotCompiled{fmt.Sprintf("%T", e)}
}

func constNode(v val) node {
	return func([]relay.Value, []val) (val, bool) { return v, true }
}

// number is the value gopher-lua gives the numeric literal lit: the constant its compiler stores for
// `return <lit>` (integers with base prefixes, floats, exponents; NaN for a malformed one).
func (c *exprCompiler) number(lit string) (float64, error) {
	if n, ok := c.consts[lit]; ok {
		return n, nil
	}
	chunk, err := parse.Parse(strings.NewReader("return "+lit), "number")
	if err != nil {
		return 0, err
	}
	proto, err := lua.Compile(chunk, "number")
	if err != nil {
		return 0, err
	}
	if len(proto.Constants) != 1 {
		return 0, &errNotCompiled{"numeric literal " + lit}
	}
	n, ok := proto.Constants[0].(lua.LNumber)
	if !ok {
		return 0, &errNotCompiled{"numeric literal " + lit}
	}
	if c.consts == nil {
		c.consts = map[string]float64{}
	}
	c.consts[lit] = float64(n)
	return float64(n), nil
}

// operands compiles both sides of a binary expression.
func (c *exprCompiler) operands(lhs, rhs ast.Expr) (node, node, error) {
	l, err := c.expr(lhs)
	if err != nil {
		return nil, nil, err
	}
	r, err := c.expr(rhs)
	if err != nil {
		return nil, nil, err
	}
	return l, r, nil
}

// relational compiles == ~= < <= > >=. Lua compares numbers as floats and strings byte by byte, and
// raises for any other pair of types under an ordering: those go to Lua.
func (c *exprCompiler) relational(e *ast.RelationalOpExpr) (node, error) {
	l, r, err := c.operands(e.Lhs, e.Rhs)
	if err != nil {
		return nil, err
	}
	op := e.Operator
	if op == "==" || op == "~=" {
		ne := op == "~="
		return func(args []relay.Value, gl []val) (val, bool) {
			a, ok := l(args, gl)
			if !ok {
				return a, false
			}
			b, ok := r(args, gl)
			if !ok {
				return b, false
			}
			return boolVal(equal(a, b) != ne), true
		}, nil
	}
	var numCmp func(a, b float64) bool
	var strCmp func(a, b string) bool
	switch op {
	case "<":
		numCmp, strCmp = func(a, b float64) bool { return a < b }, func(a, b string) bool { return a < b }
	case "<=":
		numCmp, strCmp = func(a, b float64) bool { return a <= b }, func(a, b string) bool { return a <= b }
	case ">":
		numCmp, strCmp = func(a, b float64) bool { return a > b }, func(a, b string) bool { return a > b }
	case ">=":
		numCmp, strCmp = func(a, b float64) bool { return a >= b }, func(a, b string) bool { return a >= b }
	default:
		return nil, &errNotCompiled{"operator " + op}
	}
	// the common form: a param against a numeric constant, read straight from the message's value
	if id, ok := e.Lhs.(*ast.IdentExpr); ok {
		if i, isParam := c.params[id.Value]; isParam {
			if k, _ := constValue(e.Rhs, r); k.k == vNum {
				kn := k.n
				return func(args []relay.Value, _ []val) (val, bool) {
					if x, ok := argNum(&args[i]); ok {
						return boolVal(numCmp(x, kn)), true
					}
					return valNil, false // nil or a string against a number: Lua raises
				}, nil
			}
		}
	}
	return func(args []relay.Value, gl []val) (val, bool) {
		a, ok := l(args, gl)
		if !ok {
			return a, false
		}
		b, ok := r(args, gl)
		if !ok {
			return b, false
		}
		switch {
		case a.k == vNum && b.k == vNum:
			return boolVal(numCmp(a.n, b.n)), true
		case a.k == vStr && b.k == vStr:
			return boolVal(strCmp(a.s, b.s)), true
		}
		return valNil, false // Lua raises "attempt to compare ..."
	}, nil
}

// constValue is the value of e when e is a constant (its node ignores args), else nil.
func constValue(e ast.Expr, n node) (val, bool) {
	if !isConstExpr(e) {
		return valNil, false
	}
	return n(nil, nil)
}

// isConstExpr reports whether e is a literal or a sign-prefixed literal (its node ignores args).
func isConstExpr(e ast.Expr) bool {
	switch e := e.(type) {
	case *ast.NumberExpr, *ast.StringExpr, *ast.NilExpr, *ast.TrueExpr, *ast.FalseExpr:
		return true
	case *ast.UnaryMinusOpExpr:
		return isConstExpr(e.Expr)
	}
	return false
}

// equal is Lua's raw equality for the types compiled expressions hold: same type and same value.
func equal(a, b val) bool {
	if a.k != b.k {
		return false
	}
	switch a.k {
	case vBool:
		return a.b == b.b
	case vNum:
		return a.n == b.n
	case vStr:
		return a.s == b.s
	}
	return true
}

// arithmetic compiles + - * / % ^ on numbers; a string operand (coerced by Lua) or any other type (an
// error) goes to Lua.
func (c *exprCompiler) arithmetic(e *ast.ArithmeticOpExpr) (node, error) {
	l, r, err := c.operands(e.Lhs, e.Rhs)
	if err != nil {
		return nil, err
	}
	var f func(a, b float64) float64
	switch e.Operator {
	case "+":
		f = func(a, b float64) float64 { return a + b }
	case "-":
		f = func(a, b float64) float64 { return a - b }
	case "*":
		f = func(a, b float64) float64 { return a * b }
	case "/":
		f = func(a, b float64) float64 { return a / b }
	case "%":
		f = luaMod
	case "^":
		f = math.Pow
	default:
		return nil, &errNotCompiled{"operator " + e.Operator}
	}
	return func(args []relay.Value, gl []val) (val, bool) {
		a, ok := l(args, gl)
		if !ok || a.k != vNum {
			return valNil, false
		}
		b, ok := r(args, gl)
		if !ok || b.k != vNum {
			return valNil, false
		}
		return val{k: vNum, n: register(f(a.n, b.n))}, true
	}, nil
}

// register is a number as gopher-lua stores an arithmetic result in a register: its small-integer cache
// (LNumber2I) turns -0 into +0, which shows in what follows (1/(-1 % -1) is +Inf in Lua, not -Inf).
func register(n float64) float64 {
	if n == 0 {
		return 0
	}
	return n
}

// luaMod is Lua 5.1's a % b: the remainder with the sign of b (a - floor(a/b)*b, computed with
// math.Mod and corrected by b, as gopher-lua does).
func luaMod(a, b float64) float64 {
	m := math.Mod(a, b)
	if b > 0 && m < 0 || b < 0 && m > 0 {
		m += b
	}
	return m
}

// compiledPredicate is a route expression compiled to Go, with its Lua function for the messages the
// compiled form does not handle and for generations whose globals it cannot read as constants.
type compiledPredicate struct {
	root    node
	lua     *relayPredicate
	globals []string // free names read, resolved once per generation
	gen     atomic.Pointer[genGlobals]
	getter  *luabind.Func // `return <globals>`, run once per generation
}

// genGlobals are the values of the globals an expression reads, as one generation's scripts left them.
type genGlobals struct {
	gen  *luabind.Generation
	vals []val
	ok   bool // false: one is a table, a function...: the generation's messages go to Lua
}

// Pure is the Lua expression's purity (the memo's rule stays as it was).
func (p *compiledPredicate) Pure() bool { return p.lua.pure }

// Cheap reports that this predicate evaluates faster than the relay's memo finds a remembered result.
func (p *compiledPredicate) Cheap() bool { return true }

func (p *compiledPredicate) Eval(args []relay.Value) (bool, error) {
	ok, handled, err := p.evalGo(args)
	if !handled {
		return p.lua.Eval(args)
	}
	return ok, err
}

// evalGo evaluates the compiled form; handled is false when the message must go to Lua.
func (p *compiledPredicate) evalGo(args []relay.Value) (result, handled bool, err error) {
	g := p.lua.rt.Current()
	if g == nil {
		return false, true, errNoGeneration
	}
	var gl []val
	if len(p.globals) > 0 {
		gg := p.gen.Load()
		if gg == nil || gg.gen != g {
			if gg, err = p.resolve(g); err != nil {
				return false, true, err
			}
		}
		if !gg.ok {
			return false, false, nil
		}
		gl = gg.vals
	}
	v, ok := p.root(args, gl)
	if !ok {
		return false, false, nil
	}
	switch v.k {
	case vBool:
		return v.b, true, nil
	case vNil:
		return false, true, nil
	}
	lv := v.lvalue()
	return false, true, &relay.NotBooleanError{Yields: luaTypeArticle(lv), Value: luaValueText(lv)}
}

// resolve reads the globals the expression uses on one of g's VMs. Scripts define globals at their top
// level only (inside handlers a global lasts one invocation), so a nil, boolean, number or string found
// there stays the same for the generation's life.
func (p *compiledPredicate) resolve(g *luabind.Generation) (*genGlobals, error) {
	gg := &genGlobals{gen: g, vals: make([]val, len(p.globals)), ok: true}
	err := g.RunFunc(context.Background(), p.getter, p.lua.ev, 0, func(L *lua.LState, lf *lua.LFunction) error {
		L.Push(lf)
		if err := L.PCall(0, len(p.globals), nil); err != nil {
			return err
		}
		for i := range p.globals {
			switch v := L.Get(-len(p.globals) + i).(type) {
			case *lua.LNilType:
			case lua.LBool:
				gg.vals[i] = boolVal(bool(v))
			case lua.LNumber:
				gg.vals[i] = val{k: vNum, n: float64(v)}
			case lua.LString:
				gg.vals[i] = val{k: vStr, s: string(v)}
			default:
				gg.ok = false
			}
		}
		L.Pop(len(p.globals))
		return nil
	})
	if err != nil {
		return nil, err
	}
	p.gen.Store(gg)
	return gg, nil
}

// compileRoute returns the compiled form of a Lua route expression, or lp itself when the expression uses
// a form only Lua evaluates.
func compileRoute(lp *relayPredicate, names []string, src string) relay.Predicate {
	root, globals, err := compileGo(names, src)
	if err != nil {
		return lp
	}
	p := &compiledPredicate{root: root, lua: lp, globals: globals}
	if len(globals) > 0 {
		f, err := luabind.CompileFunc("relay.routes", "return "+strings.Join(globals, ", "))
		if err != nil {
			return lp
		}
		p.getter = f
	}
	return p
}
