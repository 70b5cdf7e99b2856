// Package luapattern matches Lua 5.1 patterns (the language of string.find, match, gmatch and gsub)
// under a budget: it is the matcher behind the sandbox's string library.
//
// What it promises:
//
//   - The Lua 5.1 pattern language: classes %a %c %d %l %p %s %u %w %x %z and their upper-case
//     complements, '.', sets with ranges, classes and '^', the quantifiers * + - ?, the anchors ^ and $,
//     captures including position captures (), back-references %1-%9, %bxy and the frontier %f[set].
//     Classes follow the C locale (bytes 128-255 belong to no class); a NUL byte is an ordinary byte.
//   - A pattern is checked whole when it is compiled, so a malformed one fails before any match is tried,
//     with Lua's own texts: "malformed pattern (ends with '%')", "malformed pattern (missing ']')",
//     "malformed pattern (missing arguments to '%b')", "missing '[' after '%f' in pattern", "unfinished
//     capture", "invalid pattern capture", "too many captures", "invalid capture index" (for %0). A
//     back-reference to a capture that is not closed where it stands fails with "invalid capture index"
//     when the matcher reaches it, as in Lua.
//   - Bounded work and stack: at most MaxCaptures captures, at most MaxDepth nested backtracking points
//     ("pattern too complex"), and a step counter that looks at Matcher.Done every few thousand steps,
//     so a pattern with exponential backtracking stops when its caller's context is cancelled instead of
//     running for minutes inside one Go call.
//
// It knows nothing of Lua states: the sandbox's string functions (luabind/strlib.go) turn its results into
// Lua values.
package luapattern
