package socket

import (
	"strings"
	"unicode/utf8"
)

// LineKind says how a line is dispatched.
type LineKind uint8

const (
	// LineEmpty is a line of length 0: skipped without a reply.
	LineEmpty LineKind = iota
	// LineVerb is a built-in verb (quit, paramAdd, say, file, ...) as the first word of the line.
	LineVerb
	// LineJSON is a line that parses as one JSON value; it may set params and the action.
	LineJSON
	// LinePlain is anything else: the first word is a custom verb if one is registered by that name,
	// otherwise the name of the action to run (and it becomes the sticky "action" param).
	LinePlain
)

// Line is a parsed request line. It is pure data: parsing touches no connection state.
type Line struct {
	Kind LineKind
	// Verb is the first word: the text before the first single space (no trimming, tabs are not spaces).
	Verb string
	// Rest is everything after the first space ("" when there is none); say and custom verbs use it as is.
	Rest string
	// HasRest is true when the line had a space after the first word (then Rest may be "").
	HasRest bool
	// JSON is the parsed value of a LineJSON line (Object for an object).
	JSON any
}

// Args splits Rest on single spaces, the way the reference splits a line (empty words are kept).
func (l Line) Args() []string {
	if !l.HasRest {
		return nil
	}
	return strings.Split(l.Rest, " ")
}

// builtinVerbs are recognised only as the first word of a line that is not JSON.
var builtinVerbs = map[string]bool{
	"quit": true, "exit": true, "documentation": true, "paramAdd": true, "paramDelete": true,
	"paramView": true, "paramsView": true, "paramsDelete": true, "roomAdd": true, "roomLeave": true,
	"roomView": true, "detailsView": true, "say": true, "file": true,
}

// IsVerb reports whether name is a built-in verb.
func IsVerb(name string) bool { return builtinVerbs[name] }

// ParseLine classifies one line (without its delimiter). Invalid UTF-8 is replaced by U+FFFD first, as the
// reference decodes input as UTF-8 before anything else.
func ParseLine(line string) Line {
	if len(line) == 0 {
		return Line{Kind: LineEmpty}
	}
	if !utf8.ValidString(line) {
		line = replaceInvalidUTF8(line)
	}
	verb, rest, has := strings.Cut(line, " ")
	if builtinVerbs[verb] {
		return Line{Kind: LineVerb, Verb: verb, Rest: rest, HasRest: has}
	}
	if mayBeJSON(line) {
		if v, err := decodeJSON([]byte(line)); err == nil {
			return Line{Kind: LineJSON, Verb: verb, Rest: rest, HasRest: has, JSON: v}
		}
	}
	return Line{Kind: LinePlain, Verb: verb, Rest: rest, HasRest: has}
}

// mayBeJSON is a cheap filter before the real parse: a JSON text starts (after JSON whitespace) with one of
// these bytes, and one that starts with a letter is a literal alone. Action names often start with t, f or
// n (newOrder, findUser) but are not a literal, so the common path does not pay for a JSON parse (nor
// for the error a failed one builds).
func mayBeJSON(s string) bool {
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case ' ', '\t', '\n', '\r':
			continue
		case '{', '[', '"', '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
			return true
		case 't', 'f', 'n':
			switch strings.TrimRight(s[i:], " \t\n\r") {
			case "true", "false", "null":
				return true
			}
			return false
		default:
			return false
		}
	}
	return false
}

// replaceInvalidUTF8 replaces each invalid byte by U+FFFD, as Node's UTF-8 decoder does (strings.ToValidUTF8
// would merge a run of them into one).
func replaceInvalidUTF8(s string) string {
	var b strings.Builder
	b.Grow(len(s) + 8)
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b.WriteString("\ufffd")
		} else {
			b.WriteString(s[i : i+size])
		}
		i += size
	}
	return b.String()
}
