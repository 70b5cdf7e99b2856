package relaylua

import "strings"

// pureGlobals are the globals an expression may read and still be a pure function of its params.
var pureGlobals = map[string]bool{
	"math": true, "string": true, "tonumber": true, "tostring": true, "type": true, "select": true,
	"and": true, "or": true, "not": true, "nil": true, "true": true, "false": true,
	"if": true, "then": true, "else": true, "elseif": true, "end": true, "function": true, "return": true,
	"local": true, "in": true, "do": true, "for": true, "while": true, "repeat": true, "until": true, "break": true,
}

// impureFields are library members whose result changes from call to call.
var impureFields = map[string]bool{"math.random": true}

// pureExpression scans Lua source for the free names it reads: it is pure when every one is a declared param
// or a pure library (math.random excepted). Anything else (sb, require, a global a script set) might change
// between two messages with the same params, so its results must not be remembered.
func pureExpression(src string, params []string) bool {
	declared := make(map[string]bool, len(params))
	for _, p := range params {
		declared[p] = true
	}
	prev := ""     // previous significant token
	lastName := "" // previous identifier, for "math" "." "random"
	for i := 0; i < len(src); {
		c := src[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
			continue
		case c == '-' && strings.HasPrefix(src[i:], "--"):
			i += 2
			if n := longBracket(src[i:]); n > 0 {
				i += n
			} else {
				for i < len(src) && src[i] != '\n' {
					i++
				}
			}
			continue
		case c == '"' || c == '\'':
			i++
			for i < len(src) && src[i] != c {
				if src[i] == '\\' {
					i++
				}
				i++
			}
			i++
			prev = "string"
			continue
		case c == '[' && longBracket(src[i:]) > 0:
			i += longBracket(src[i:])
			prev = "string"
			continue
		case c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z':
			j := i
			for j < len(src) && (src[j] == '_' || src[j] >= 'a' && src[j] <= 'z' || src[j] >= 'A' && src[j] <= 'Z' || src[j] >= '0' && src[j] <= '9') {
				j++
			}
			name := src[i:j]
			i = j
			if prev == "." || prev == ":" {
				if impureFields[lastName+"."+name] {
					return false
				}
			} else if !declared[name] && !pureGlobals[name] {
				return false
			}
			lastName, prev = name, "name"
			continue
		case c >= '0' && c <= '9':
			for i < len(src) && (src[i] == '.' || src[i] == '_' || src[i] >= '0' && src[i] <= '9' || src[i] >= 'a' && src[i] <= 'z' || src[i] >= 'A' && src[i] <= 'Z') {
				i++
			}
			prev = "number"
			continue
		case c == '.':
			n := 1
			for i+n < len(src) && src[i+n] == '.' && n < 3 {
				n++
			}
			prev = src[i : i+n]
			i += n
			continue
		}
		prev = string(c)
		i++
	}
	return true
}

// longBracket returns the length of a Lua long string or comment ([[...]], [==[...]==]) at the start of s, or 0.
func longBracket(s string) int {
	if len(s) < 2 || s[0] != '[' {
		return 0
	}
	level := 1
	for level < len(s) && s[level] == '=' {
		level++
	}
	if level >= len(s) || s[level] != '[' {
		return 0
	}
	closing := "]" + strings.Repeat("=", level-1) + "]"
	end := strings.Index(s[level+1:], closing)
	if end < 0 {
		return len(s)
	}
	return level + 1 + end + len(closing)
}

// A route expression's result as far as its source shows it: a boolean, surely not a boolean (what it
// yields instead), or unknown until it runs (a function call, an index, an undeclared global).
type exprKind struct {
	known  bool   // false: unknown until it runs
	yields string // "" = a boolean; else what it yields instead: "a number", "a string", "nil", ...
}

var (
	kindBool    = exprKind{known: true}
	kindUnknown = exprKind{}
)

func yields(what string) exprKind { return exprKind{known: true, yields: what} }

// notBoolean says what a Lua expression (already translated from AMIScript) yields when its source shows
// that it is not a boolean: "a number" for `qty - qty`, "a string" for `venue`, and "" when it is a boolean
// or cannot be known before it runs. params maps each declared param's Lua name to what it holds: "a
// boolean" (PARAM_TYPES Boolean), "a number" or "a string"; an absent param is nil, which counts as false.
// The source must already compile: anything this reader does not follow makes the result unknown.
func notBoolean(src string, params map[string]string) string {
	p := &exprReader{toks: luaTokens(src), params: params}
	k := p.expr(0)
	if p.failed || p.pos != len(p.toks) || !k.known {
		return ""
	}
	return k.yields
}

// luaTokens splits Lua expression source into tokens: names and keywords, numbers, strings (as `"`),
// long strings (as `"`), and operators; comments are dropped.
func luaTokens(src string) []string {
	var out []string
	for i := 0; i < len(src); {
		c := src[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '-' && strings.HasPrefix(src[i:], "--"):
			i += 2
			if n := longBracket(src[i:]); n > 0 {
				i += n
			} else {
				for i < len(src) && src[i] != '\n' {
					i++
				}
			}
		case c == '"' || c == '\'':
			i++
			for i < len(src) && src[i] != c {
				if src[i] == '\\' {
					i++
				}
				i++
			}
			i++
			out = append(out, `"`)
		case c == '[' && longBracket(src[i:]) > 0:
			i += longBracket(src[i:])
			out = append(out, `"`)
		case c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z':
			j := i
			for j < len(src) && (src[j] == '_' || src[j] >= 'a' && src[j] <= 'z' || src[j] >= 'A' && src[j] <= 'Z' || src[j] >= '0' && src[j] <= '9') {
				j++
			}
			out = append(out, src[i:j])
			i = j
		case c >= '0' && c <= '9' || c == '.' && i+1 < len(src) && src[i+1] >= '0' && src[i+1] <= '9':
			j := i
			for j < len(src) && (src[j] == '.' || src[j] >= '0' && src[j] <= '9' || src[j] >= 'a' && src[j] <= 'z' || src[j] >= 'A' && src[j] <= 'Z' ||
				(src[j] == '+' || src[j] == '-') && (src[j-1] == 'e' || src[j-1] == 'E')) {
				j++
			}
			out = append(out, "0")
			i = j
		default:
			n := 1
			for _, op := range []string{"...", "..", "==", "~=", "<=", ">="} {
				if strings.HasPrefix(src[i:], op) {
					n = len(op)
					break
				}
			}
			out = append(out, src[i:i+n])
			i += n
		}
	}
	return out
}

// exprReader is a precedence-climbing reader of a Lua expression that computes only its exprKind.
type exprReader struct {
	toks   []string
	pos    int
	params map[string]string
	failed bool
}

func (p *exprReader) peek() string {
	if p.pos < len(p.toks) {
		return p.toks[p.pos]
	}
	return ""
}

func (p *exprReader) next() string {
	t := p.peek()
	if p.pos < len(p.toks) {
		p.pos++
	}
	return t
}

// binaryPrec is Lua 5.1's binary operator precedence (left, right); right > left for right-associative ones.
var binaryPrec = map[string][2]int{
	"or": {1, 1}, "and": {2, 2},
	"<": {3, 3}, ">": {3, 3}, "<=": {3, 3}, ">=": {3, 3}, "~=": {3, 3}, "==": {3, 3},
	"..": {5, 4}, "+": {6, 6}, "-": {6, 6}, "*": {7, 7}, "/": {7, 7}, "%": {7, 7}, "^": {10, 9},
}

const unaryPrec = 8

// expr reads operators binding tighter than limit.
func (p *exprReader) expr(limit int) exprKind {
	var k exprKind
	switch t := p.peek(); t {
	case "not":
		p.next()
		p.expr(unaryPrec)
		k = kindBool
	case "-", "#":
		p.next()
		p.expr(unaryPrec)
		k = yields("a number")
	default:
		k = p.primary()
	}
	for !p.failed {
		op := p.peek()
		prec, ok := binaryPrec[op]
		if !ok || prec[0] <= limit {
			break
		}
		p.next()
		right := p.expr(prec[1])
		switch op {
		case "or":
			// a truthy left side is the result: a number or string there is never false
			switch {
			case k.known && k.yields != "" && k.yields != "nil":
				// k stays
			case right.known && right.yields != "":
				k = right
			case k == kindBool && right == kindBool:
				k = kindBool
			default:
				k = kindUnknown
			}
		case "and":
			// a falsy left side (nil or false) reads as false; otherwise the right side is the result
			k = right
		case "..":
			k = yields("a string")
		case "+", "-", "*", "/", "%", "^":
			k = yields("a number")
		default:
			k = kindBool
		}
	}
	return k
}

// primary reads a simple expression and its suffixes (calls, indexing).
func (p *exprReader) primary() exprKind {
	var k exprKind
	switch t := p.next(); {
	case t == "nil":
		k = yields("nil")
	case t == "true" || t == "false":
		k = kindBool
	case t == "0":
		k = yields("a number")
	case t == `"`:
		k = yields("a string")
	case t == "{":
		p.skipTo("}")
		k = yields("a table")
	case t == "(":
		k = p.expr(0)
		if p.next() != ")" {
			p.failed = true
		}
	case t == "function" || t == "...":
		p.failed = true // a function body is not an expression this reader follows
		return kindUnknown
	case t != "" && (t[0] == '_' || t[0] >= 'a' && t[0] <= 'z' || t[0] >= 'A' && t[0] <= 'Z') && !luaKeywords[t]:
		switch p.params[t] {
		case "a boolean":
			k = kindBool
		case "":
			k = kindUnknown // a global: known only when it runs
		default:
			k = yields(p.params[t])
		}
	default:
		p.failed = true
		return kindUnknown
	}
	for !p.failed {
		switch p.peek() {
		case ".":
			p.next()
			p.next()
		case ":":
			p.next()
			p.next()
			p.args()
		case "[":
			p.next()
			p.skipTo("]")
		case "(", `"`, "{":
			p.args()
		default:
			return k
		}
		k = kindUnknown // an index or a call: what it yields is known when it runs
	}
	return k
}

// args skips call arguments: (...), a string or a table constructor.
func (p *exprReader) args() {
	switch p.next() {
	case "(":
		p.skipTo(")")
	case "{":
		p.skipTo("}")
	case `"`:
	default:
		p.failed = true
	}
}

// skipTo skips past the bracket that closes one just read.
func (p *exprReader) skipTo(closing string) {
	depth := 1
	for p.pos < len(p.toks) {
		switch p.next() {
		case "(", "[", "{":
			depth++
		case ")", "]", "}":
			depth--
			if depth == 0 {
				return
			}
		}
	}
	p.failed = true
}
