package luabind

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"

	lua "github.com/yuin/gopher-lua"

	"github.com/switchboard/switchboard/luabind/luapattern"
)

// strlib.go holds the sandbox's replacements of library functions that could run for minutes inside one Go
// call, build a huge value in one step, or panic in Go:
//
//   - string.find, match, gmatch (and its alias gfind), gsub run on luapattern, which counts its steps and
//     stops when the handler's context is cancelled (time limit, memory guard, caller gone). Their results
//     are gopher-lua's own, argument handling included; the pattern language is Lua 5.1's (%f works, a
//     malformed pattern is an error even where gopher-lua matched nothing). docs/lua-api.md lists the
//     differences.
//   - Functions whose result size is chosen by an argument check that size before they allocate:
//     string.rep, string.gsub (as the result grows), string.format, string.char and table.concat against
//     lua.max_string_bytes; string.byte and unpack against lua.max_results.
//   - math.random raises Lua's "interval is empty" where gopher-lua's panics in math/rand.
//
// The concatenation operator `..` runs inside gopher-lua's VM and cannot be checked here: repeated doubling
// is bounded only by the memory guard (lua.memory_limit_mb).

// openStrlib installs the replacements in the builder state's libraries (limitLibraries).
func openStrlib(L *lua.LState, maxStr int) {
	str := L.GetGlobal("string").(*lua.LTable)
	str.RawSetString("dump", lua.LNil)
	format := str.RawGetString("format").(*lua.LFunction).GFunction
	iter := L.NewFunction(strGmatchNext)
	gmatch := L.NewFunction(func(L *lua.LState) int { return strGmatch(L, iter) })
	for name, fn := range map[string]lua.LGFunction{
		"find":   strFind,
		"match":  strMatch,
		"gsub":   func(L *lua.LState) int { return strGsub(L, maxStr) },
		"byte":   strByte,
		"char":   func(L *lua.LState) int { return strChar(L, maxStr) },
		"rep":    func(L *lua.LState) int { return strRep(L, maxStr) },
		"format": func(L *lua.LState) int { return strFormat(L, format, maxStr) },
	} {
		str.RawSetString(name, L.NewFunction(fn))
	}
	str.RawSetString("gmatch", gmatch)
	str.RawSetString("gfind", gmatch)

	tbl := L.GetGlobal("table").(*lua.LTable)
	tbl.RawSetString("concat", L.NewFunction(func(L *lua.LState) int { return tableConcat(L, maxStr) }))

	mathLib := L.GetGlobal("math").(*lua.LTable)
	mathLib.RawSetString("random", L.NewFunction(mathRandom))

	// The sandbox's base table holds this very function object (shared.go copies the builder's globals), so
	// it is changed in place.
	if unpack, ok := L.GetGlobal("unpack").(*lua.LFunction); ok {
		unpack.GFunction = baseUnpack
	}
}

// minResultsCap is the smallest lua.max_results allowed: results up to it never look the cap up.
const minResultsCap = 256

// maxResults is the lua.max_results of the runtime running L.
func maxResults(L *lua.LState) int {
	if vm := VMOf(L); vm != nil {
		return vm.rt.cfg.MaxResults
	}
	return DefaultConfig().MaxResults
}

// checkResults raises when n values would exceed lua.max_results.
func checkResults(L *lua.LState, fn string, n uint64) {
	if n <= minResultsCap {
		return
	}
	if limit := maxResults(L); n > uint64(limit) {
		L.RaiseError("%s: result would exceed lua.max_results (%d values)", fn, limit)
	}
}

func tooLong(L *lua.LState, fn string, limit int) int {
	L.RaiseError("%s: result would exceed lua.max_string_bytes (%d)", fn, limit)
	return 0
}

// concatTooLong keeps table.concat's error text of before (scripts and tests match on it).
func concatTooLong(L *lua.LState, limit int) int {
	L.RaiseError("table.concat: result exceeds lua.max_string_bytes (%d)", limit)
	return 0
}

// matcher returns a matcher that stops when L's context is done.
func matcher(L *lua.LState) luapattern.Matcher {
	var m luapattern.Matcher
	if ctx := L.Context(); ctx != nil {
		m.Done = ctx.Done()
	}
	return m
}

// compilePattern compiles pat or raises Lua's error for it.
func compilePattern(L *lua.LState, pat string) *luapattern.Pattern {
	p, err := luapattern.Compile(pat)
	if err != nil {
		L.RaiseError("%s", err.Error())
	}
	return p
}

// matchFailed raises the error of a match that stopped: the handler's cancellation (which the runtime
// reports as the handler's own error) or Lua's text.
func matchFailed(L *lua.LState, fn string, err error) {
	if errors.Is(err, luapattern.ErrCancelled) {
		cause := err
		if ctx := L.Context(); ctx != nil && context.Cause(ctx) != nil {
			cause = context.Cause(ctx)
		}
		L.RaiseError("%s: %v", fn, cause)
	}
	L.RaiseError("%s", err.Error())
}

// pushCapture pushes capture i of m's last match in s: its text, or the 1-based position it recorded.
func pushCapture(L *lua.LState, m *luapattern.Matcher, s string, i int) {
	start, end, pos := m.Capture(i)
	if pos {
		L.Push(lua.LNumber(start + 1))
	} else {
		L.Push(lua.LString(s[start:end]))
	}
}

// pushMatch pushes what match and gmatch return: the captures, or the whole match when there are none.
func pushMatch(L *lua.LState, m *luapattern.Matcher, p *luapattern.Pattern, s string) int {
	if p.Captures() == 0 {
		L.Push(lua.LString(s[m.Start():m.End()]))
		return 1
	}
	for i := 0; i < p.Captures(); i++ {
		pushCapture(L, m, s, i)
	}
	return p.Captures()
}

// startIndex is gopher-lua's reading of string.find's init: 1-based, negative from the end, 0 as 1, not
// clamped to the length.
func startIndex(s string, i int) int {
	if i != 0 {
		i--
	}
	if i < 0 {
		i += len(s) + 1
	}
	return max(i, 0)
}

func strFind(L *lua.LState) int {
	s := L.CheckString(1)
	pat := L.CheckString(2)
	if pat == "" {
		L.Push(lua.LNumber(1))
		L.Push(lua.LNumber(0))
		return 2
	}
	init := startIndex(s, L.OptInt(3, 1))
	if L.GetTop() == 4 && lua.LVAsBool(L.Get(4)) {
		at := -1
		if init <= len(s) {
			at = strings.Index(s[init:], pat)
		}
		if at < 0 {
			L.Push(lua.LNil)
			return 1
		}
		L.Push(lua.LNumber(init + at + 1))
		L.Push(lua.LNumber(init + at + len(pat)))
		return 2
	}
	p := compilePattern(L, pat)
	m := matcher(L)
	ok, err := m.Find(p, s, init)
	if err != nil {
		matchFailed(L, "string.find", err)
	}
	if !ok {
		L.Push(lua.LNil)
		return 1
	}
	L.Push(lua.LNumber(m.Start() + 1))
	L.Push(lua.LNumber(m.End()))
	for i := 0; i < p.Captures(); i++ {
		pushCapture(L, &m, s, i)
	}
	return 2 + p.Captures()
}

func strMatch(L *lua.LState) int {
	s := L.CheckString(1)
	pat := L.CheckString(2)
	init := L.OptInt(3, 1)
	if init < 0 {
		init += len(s) + 1
	}
	init = max(init-1, 0)
	p := compilePattern(L, pat)
	m := matcher(L)
	ok, err := m.Find(p, s, init)
	if err != nil {
		matchFailed(L, "string.match", err)
	}
	if !ok {
		return 0 // gopher-lua's string.match returns nothing, not nil, when there is no match
	}
	return pushMatch(L, &m, p, s)
}

// gmatchState is the iteration state gmatch hands to the generic for; the subject is searched lazily, one
// match per call.
type gmatchState struct {
	p    *luapattern.Pattern
	s    string
	pos  int
	done bool
}

// strGmatch returns the iterator and its state, as gopher-lua does (the iterator reads its state from its
// first argument).
func strGmatch(L *lua.LState, iter *lua.LFunction) int {
	s := L.CheckString(1)
	p := compilePattern(L, L.CheckString(2))
	ud := L.NewUserData()
	ud.Value = &gmatchState{p: p, s: s}
	L.Push(iter)
	L.Push(ud)
	return 2
}

func strGmatchNext(L *lua.LState) int {
	st, ok := L.CheckUserData(1).Value.(*gmatchState)
	if !ok {
		L.ArgError(1, "gmatch state expected")
	}
	if st.done || st.pos > len(st.s) {
		return 0
	}
	m := matcher(L)
	found, err := m.Find(st.p, st.s, st.pos)
	if err != nil {
		matchFailed(L, "string.gmatch", err)
	}
	if !found || st.p.Anchored() {
		st.done = true
	}
	if !found {
		return 0
	}
	st.pos = max(m.Start()+1, m.End())
	return pushMatch(L, &m, st.p, st.s)
}

// gsubOut is string.gsub's result under construction, bounded by lua.max_string_bytes.
type gsubOut struct {
	b     strings.Builder
	limit int
}

func (o *gsubOut) add(L *lua.LState, s string) {
	if o.b.Len()+len(s) > o.limit {
		tooLong(L, "string.gsub", o.limit)
	}
	o.b.WriteString(s)
}

func strGsub(L *lua.LState, maxStr int) int {
	s := L.CheckString(1)
	pat := L.CheckString(2)
	L.CheckTypes(3, lua.LTString, lua.LTTable, lua.LTFunction)
	repl := L.CheckAny(3)
	limit := L.OptInt(4, -1)
	p := compilePattern(L, pat)
	m := matcher(L)
	out := gsubOut{limit: maxStr}
	count, copied := 0, 0
	for pos := 0; pos <= len(s); {
		found, err := m.Find(p, s, pos)
		if err != nil {
			matchFailed(L, "string.gsub", err)
		}
		// gopher-lua stops when the number of matches equals the limit after an attempt: a limit of 0 stops
		// after a first attempt that failed (at the first position) and never after one that matched.
		if !found || limit == 0 && count == 0 && m.Start() != 0 {
			break
		}
		count++
		start, end := m.Start(), m.End()
		out.add(L, s[copied:start])
		copied = start
		switch r := repl.(type) {
		case lua.LString:
			gsubString(L, &out, &m, p, s, string(r))
			copied = end
		case *lua.LTable:
			var v lua.LValue
			if p.Captures() > 0 {
				if cs, ce, pos := m.Capture(0); pos {
					v = L.GetTable(r, lua.LNumber(cs+1))
				} else {
					v = L.GetField(r, s[cs:ce])
				}
			} else {
				v = L.GetField(r, s[start:end])
			}
			if lua.LVAsBool(v) {
				out.add(L, lua.LVAsString(v))
				copied = end
			}
		case *lua.LFunction:
			L.Push(r)
			L.Call(pushMatch(L, &m, p, s), 1)
			v := L.Get(-1)
			L.Pop(1)
			if lua.LVAsBool(v) {
				out.add(L, lua.LVAsString(v))
				copied = end
			}
		}
		pos = max(start+1, end)
		if count == limit || p.Anchored() {
			break
		}
	}
	if count == 0 {
		L.SetTop(1) // the subject as it was given (a number stays a number), as gopher-lua does
		L.Push(lua.LNumber(0))
		return 2
	}
	out.add(L, s[copied:])
	L.Push(lua.LString(out.b.String()))
	L.Push(lua.LNumber(count))
	return 2
}

// gsubString appends the expansion of a replacement string: %0-%9 are the whole match or a capture (%1 is
// the whole match when there are no captures), %% is %, and any other %x is kept as it is.
func gsubString(L *lua.LState, out *gsubOut, m *luapattern.Matcher, p *luapattern.Pattern, s, repl string) {
	for len(repl) > 0 {
		k := strings.IndexByte(repl, '%')
		if k < 0 || k == len(repl)-1 {
			out.add(L, repl)
			return
		}
		out.add(L, repl[:k])
		c := repl[k+1]
		repl = repl[k+2:]
		switch {
		case c == '%':
			out.add(L, "%")
		case c >= '0' && c <= '9':
			n := int(c - '0')
			switch {
			case n == 0 || n == 1 && p.Captures() == 0:
				out.add(L, s[m.Start():m.End()])
			case n > p.Captures():
				L.RaiseError("invalid capture index")
			default:
				start, end, pos := m.Capture(n - 1)
				if pos {
					out.add(L, strconv.Itoa(start+1))
				} else {
					out.add(L, s[start:end])
				}
			}
		default:
			out.add(L, string([]byte{'%', c}))
		}
	}
}

// strByte is gopher-lua's string.byte with the number of results checked, except that s:byte() with no
// position returns the first byte only, as in Lua (gopher-lua returns every byte of the string, which the
// result cap would turn into an error for a common idiom).
func strByte(L *lua.LState) int {
	s := L.CheckString(1)
	start := L.OptInt(2, 1) - 1
	end := L.OptInt(3, -1)
	if L.GetTop() == 1 {
		end = 1
	}
	if start < 0 {
		start += len(s) + 1
	}
	if end < 0 {
		end += len(s) + 1
	}
	if L.GetTop() == 2 {
		if start < 0 || start >= len(s) {
			return 0
		}
		L.Push(lua.LNumber(s[start]))
		return 1
	}
	start = max(start, 0)
	end = min(end, len(s))
	if end <= start || start >= len(s) {
		return 0
	}
	checkResults(L, "string.byte", uint64(end-start))
	for i := start; i < end; i++ {
		L.Push(lua.LNumber(s[i]))
	}
	return end - start
}

func strChar(L *lua.LState, maxStr int) int {
	n := L.GetTop()
	if n > maxStr {
		return tooLong(L, "string.char", maxStr)
	}
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(L.CheckInt(i + 1))
	}
	L.Push(lua.LString(b))
	return 1
}

func strRep(L *lua.LState, maxStr int) int {
	s := L.CheckString(1)
	n := L.CheckInt64(2)
	if n <= 0 || s == "" {
		L.Push(lua.LString(""))
		return 1
	}
	if n > int64(maxStr) || int64(len(s))*n > int64(maxStr) {
		L.RaiseError("string.rep: result of %d bytes exceeds lua.max_string_bytes (%d)", int64(len(s))*n, maxStr)
	}
	L.Push(lua.LString(strings.Repeat(s, int(n))))
	return 1
}

var hugeWidth = regexp.MustCompile(`%[-+ #0]*(\d{4,}|\d*\.\d{4,})`)

// strFormat is gopher-lua's string.format (Go's fmt under Lua's name) with the size of the result
// bounded before anything is formatted.
func strFormat(L *lua.LState, format lua.LGFunction, maxStr int) int {
	f := L.CheckString(1)
	if w := hugeWidth.FindString(f); w != "" {
		L.RaiseError("string.format: width or precision in %q is too large", w)
	}
	// gopher-lua passes Go's fmt as many arguments as the format has '%' not in "%%".
	args := make([]lua.LValue, 0, L.GetTop()-1)
	npat := strings.Count(f, "%") - strings.Count(f, "%%")
	for i := 2; i <= L.GetTop() && len(args) < npat; i++ {
		args = append(args, L.Get(i))
	}
	if bound, bad := formatBound(f, args); bad > 0 {
		L.ArgError(bad+1, "number expected, got "+args[bad-1].Type().String())
	} else if bound > maxStr {
		return tooLong(L, "string.format", maxStr)
	}
	return format(L)
}

// formatBound returns an upper bound of the bytes Go's fmt.Sprintf(f, args...) writes, or the 1-based
// index of an argument it would dump with reflection (a table under %d prints its contents, of any size).
func formatBound(f string, args []lua.LValue) (bound, bad int) {
	bound = len(f)
	next := 0
	used := make([]bool, len(args))
	for i := 0; i < len(f); i++ {
		if f[i] != '%' {
			continue
		}
		i++
		sharp := false
		for i < len(f) && strings.IndexByte("+-# 0", f[i]) >= 0 {
			sharp = sharp || f[i] == '#'
			i++
		}
		width, prec, dynamic := 0, -1, false
		num := func() int {
			n := 0
			for i < len(f) && (f[i] == '[' || f[i] == ']' || f[i] == '*' || f[i] >= '0' && f[i] <= '9') {
				if f[i] == '[' || f[i] == '*' {
					dynamic = true
				} else if f[i] >= '0' && f[i] <= '9' && n < 1<<30 { // past any lua.max_string_bytes; no overflow below
					n = n*10 + int(f[i]-'0')
				}
				i++
			}
			return n
		}
		width = num()
		if i < len(f) && f[i] == '.' {
			i++
			prec = num()
		}
		if i >= len(f) {
			break
		}
		verb, size := utf8.DecodeRuneInString(f[i:])
		i += size - 1
		if verb == '%' {
			continue
		}
		bound += 16                      // room for fmt's own complaints: %!d(...), %!(BADWIDTH)
		goSyntax := verb == 'v' && sharp // %#v: quoted strings, and the insides of tables
		if goSyntax {
			verb = 'q'
		}
		if dynamic {
			// Argument indexes and '*' widths: any argument may be printed by any verb, so each counts at its
			// largest for every verb.
			for k, a := range args {
				if !printable(a) {
					return 0, k + 1
				}
				bound += strings.Count(f, "%") * (argBound(a, 'q', -1) + width + prec + 2)
			}
			return bound, 0
		}
		if next >= len(args) {
			bound += 32 // %!d(MISSING)
			continue
		}
		a := args[next]
		used[next] = true
		next++
		if !printable(a) && (goSyntax || !strings.ContainsRune("vsxXq", verb)) {
			return 0, next
		}
		bound += max(width, argBound(a, verb, prec))
	}
	for k, a := range args {
		if !used[k] {
			bound += argBound(a, 'v', -1) + 32 // %!(EXTRA type=value)
		}
	}
	return bound, 0
}

// printable reports whether fmt prints v in bounded size under any verb: strings and numbers, and values
// whose String method it calls under %v %s %x %X %q.
func printable(v lua.LValue) bool {
	switch v.(type) {
	case lua.LString, lua.LNumber, lua.LBool, *lua.LNilType:
		return true
	}
	return false
}

// argBound is an upper bound of what one verb prints for v, width aside.
func argBound(v lua.LValue, verb rune, prec int) int {
	s, ok := v.(lua.LString)
	if !ok {
		return 400 + max(prec, 0) // a number: %f of 1e308 has 309 digits; anything else prints its name
	}
	switch verb {
	case 's', 'v':
		if prec >= 0 && 4*prec < len(s) {
			return 4 * prec // the precision counts runes
		}
		return len(s)
	case 'x', 'X':
		return 3*len(s) + 2
	case 'q':
		return 4*len(s) + 2
	}
	return len(s) + 32 // %!d(lua.LString=...)
}

// tableConcat is table.concat with the size of the result checked before it is built.
func tableConcat(L *lua.LState, limit int) int {
	t := L.CheckTable(1)
	sep := L.OptString(2, "")
	i := L.OptInt(3, 1)
	j := L.OptInt(4, t.Len())
	if i > j {
		L.Push(lua.LString(""))
		return 1
	}
	size := 0
	for k := i; ; k++ {
		v := t.RawGetInt(k)
		switch v.(type) {
		case lua.LString, lua.LNumber:
		default:
			L.RaiseError("invalid value (at index %d) in table for 'concat'", k)
		}
		size += len(v.String())
		if size > limit {
			return concatTooLong(L, limit)
		}
		if k == j {
			break
		}
		if size += len(sep); size > limit {
			return concatTooLong(L, limit)
		}
	}
	var b strings.Builder
	b.Grow(size)
	for k := i; ; k++ {
		b.WriteString(t.RawGetInt(k).String())
		if k == j {
			break
		}
		b.WriteString(sep)
	}
	L.Push(lua.LString(b.String()))
	return 1
}

// baseUnpack is gopher-lua's unpack with the number of results checked.
func baseUnpack(L *lua.LState) int {
	t := L.CheckTable(1)
	i := L.OptInt(2, 1)
	j := L.OptInt(3, t.Len())
	if i > j {
		return 0
	}
	n := uint64(j) - uint64(i) // j-i may overflow an int; the difference fits a uint64
	if n < math.MaxUint64 {
		n++
	}
	checkResults(L, "unpack", n)
	for k := i; ; k++ {
		L.Push(t.RawGetInt(k))
		if k == j {
			break
		}
	}
	return int(n)
}

// mathRandom is gopher-lua's math.random without its Go panics (math.random(0), an empty or overflowing
// interval): Lua's "interval is empty" error instead.
func mathRandom(L *lua.LState) int {
	switch L.GetTop() {
	case 0:
		L.Push(lua.LNumber(rand.Float64()))
		return 1
	case 1:
		n := L.CheckInt(1)
		if n < 1 {
			L.ArgError(1, "interval is empty")
		}
		L.Push(lua.LNumber(rand.IntN(n) + 1))
		return 1
	}
	lo, hi := L.CheckInt(1), L.CheckInt(2)
	if lo > hi {
		L.ArgError(2, "interval is empty")
	}
	// hi-lo+1 may overflow an int: draw from the span as unsigned (0 is the whole 64-bit range).
	span := uint64(hi) - uint64(lo) + 1
	var off uint64
	if span == 0 {
		off = rand.Uint64()
	} else {
		off = rand.Uint64N(span)
	}
	L.Push(lua.LNumber(int(uint64(lo) + off)))
	return 1
}
