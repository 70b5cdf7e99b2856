// Package labels bounds the metric label values a peer can choose.
//
// A label whose value comes from the network (an application's login id, a flow named by the socket path,
// a hangup cause) would otherwise add one series per distinct value for as long as the process lives, and
// a value that is not valid UTF-8 makes the Prometheus client panic. Every such value goes through this
// package: Value makes it valid UTF-8 of at most MaxValueBytes bytes, OneOf maps it into a fixed set, and
// a Set hands out at most a configured number of distinct values at a time (the rest share Other) and
// deletes a value's series when its last user releases it.
package labels

import (
	"strings"
	"sync"
	"unicode/utf8"
)

// Other is the value shared by everything past a Set's cap or outside a fixed set.
const Other = "other"

// MaxValueBytes is the longest label value Value returns.
const MaxValueBytes = 64

// Value returns s as a label value: invalid UTF-8 replaced by U+FFFD, then cut to at most MaxValueBytes
// bytes at a rune boundary.
func Value(s string) string {
	if len(s) <= MaxValueBytes && utf8.ValidString(s) {
		return s
	}
	if len(s) > 4*MaxValueBytes {
		s = s[:4*MaxValueBytes] // enough for MaxValueBytes of output; the rest is never looked at
	}
	s = strings.ToValidUTF8(s, "\uFFFD")
	if len(s) <= MaxValueBytes {
		return s
	}
	cut := MaxValueBytes
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut]
}

// OneOf returns s when it is in known, else Other.
func OneOf(s string, known map[string]bool) string {
	if known[s] {
		return s
	}
	return Other
}

// Set hands out the values of one label dimension, at most max distinct ones at a time. Acquire returns
// the value to label with (Value(s), or Other once max values are in use); Release gives it back, and the
// last Release of a value calls the Set's delete function so its series leaves the registry. Other is never
// counted or deleted. A Set is safe for concurrent use.
type Set struct {
	mu   sync.Mutex
	max  int
	refs map[string]int
	del  func(value string)
}

// NewSet returns a Set of at most max values (0: everything is Other). del, if not nil, is called (under
// the Set's lock, so it must not call back into the Set) when a value's last user releases it.
func NewSet(max int, del func(value string)) *Set {
	return &Set{max: max, refs: map[string]int{}, del: del}
}

// Acquire returns the label value for s and takes a reference to it.
func (ls *Set) Acquire(s string) string {
	v := Value(s)
	if v == Other {
		return Other
	}
	ls.mu.Lock()
	defer ls.mu.Unlock()
	if n, ok := ls.refs[v]; ok {
		ls.refs[v] = n + 1
		return v
	}
	if len(ls.refs) >= ls.max {
		return Other
	}
	ls.refs[v] = 1
	return v
}

// Release drops a reference taken by Acquire (v is the value Acquire returned).
func (ls *Set) Release(v string) {
	if v == Other {
		return
	}
	ls.mu.Lock()
	defer ls.mu.Unlock()
	n, ok := ls.refs[v]
	if !ok {
		return
	}
	if n > 1 {
		ls.refs[v] = n - 1
		return
	}
	delete(ls.refs, v)
	if ls.del != nil {
		ls.del(v)
	}
}

// Len is the number of distinct values in use (Other not counted).
func (ls *Set) Len() int {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	return len(ls.refs)
}
