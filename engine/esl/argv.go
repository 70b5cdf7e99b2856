package esl

import "strings"

// SplitArgs splits a script string as FreeSWITCH's lua application does before it builds argv: on blanks,
// 'single quotes' group words and are removed, a backslash escapes the next character. At most 128 words.
func SplitArgs(s string) []string {
	var out []string
	var cur strings.Builder
	in, quoted := false, false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\\' && i+1 < len(s):
			i++
			cur.WriteByte(s[i])
			in = true
		case c == '\'':
			quoted = !quoted
			in = true
		case (c == ' ' || c == '\t') && !quoted:
			if in {
				out = append(out, cur.String())
				cur.Reset()
				in = false
			}
		default:
			cur.WriteByte(c)
			in = true
		}
		if len(out) == 128 {
			return out
		}
	}
	if in {
		out = append(out, cur.String())
	}
	return out
}
