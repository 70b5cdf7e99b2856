package luabind

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
