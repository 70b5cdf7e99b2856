package luapattern

import "strings"

// CheckEvery is how many steps a match takes between two looks at Matcher.Done. A step is a byte
// examined or a backtracking attempt, a few nanoseconds each, so a cancelled match stops within tens of
// microseconds.
const CheckEvery = 4096

const (
	noMatch = -1
	abort   = -2 // m.err says why
)

// position marks a position capture in span.end.
const position = -1

type span struct{ start, end int }

// Matcher runs patterns and holds the captures of its last successful match. Its zero value works and is
// never cancelled. A Matcher is not safe for concurrent use; reuse one across the matches of one call
// (string.gsub, a gmatch loop) so its step count carries over.
type Matcher struct {
	// Done stops a running match with ErrCancelled once it is closed (typically ctx.Done()).
	Done <-chan struct{}

	steps int
	depth int
	err   error
	p     *Pattern
	s     string
	start int
	end   int
	caps  [MaxCaptures]span

	onCheck func() // tests: called at every look at Done
}

// Find looks for the first match of p in s that starts at init or later (only at init when p is
// anchored). On success the match and its captures are available from Start, End and Capture.
// The error is one of ErrCancelled, ErrTooComplex or ErrInvalidCaptureIndex.
func (m *Matcher) Find(p *Pattern, s string, init int) (bool, error) {
	if init < 0 {
		init = 0
	}
	m.p, m.s, m.err, m.depth = p, s, nil, 0
	for start := init; start <= len(s); start++ {
		if p.lead != nil {
			if p.anchored {
				if start >= len(s) || !p.lead.has(s[start]) {
					return false, nil
				}
			} else if start = p.skip(s, start); start < 0 {
				return false, nil
			}
		}
		switch e := m.match(start, 0); e {
		case abort:
			return false, m.err
		case noMatch:
		default:
			m.start, m.end = start, e
			return true, nil
		}
		if p.anchored {
			break
		}
	}
	return false, nil
}

// skip returns the first position from start whose byte can begin a match, or -1.
func (p *Pattern) skip(s string, start int) int {
	if p.leadByte >= 0 {
		if start >= len(s) {
			return -1
		}
		i := strings.IndexByte(s[start:], byte(p.leadByte))
		if i < 0 {
			return -1
		}
		return start + i
	}
	for ; start < len(s); start++ {
		if p.lead.has(s[start]) {
			return start
		}
	}
	return -1
}

// Start is where the last match began (0-based).
func (m *Matcher) Start() int { return m.start }

// End is where the last match ended (exclusive).
func (m *Matcher) End() int { return m.end }

// Capture returns capture i (0-based) of the last match: the captured s[start:end], or with pos true the
// position (0-based) a position capture recorded in start.
func (m *Matcher) Capture(i int) (start, end int, pos bool) {
	c := m.caps[i]
	if c.end == position {
		return c.start, c.start, true
	}
	return c.start, c.end, false
}

// tick counts n steps and, every CheckEvery, looks at Done. It reports whether the match must stop.
func (m *Matcher) tick(n int) bool {
	m.steps -= n
	return m.steps <= 0 && m.check()
}

func (m *Matcher) check() bool {
	m.steps = CheckEvery
	if m.onCheck != nil {
		m.onCheck()
	}
	if m.Done == nil {
		return false
	}
	select {
	case <-m.Done:
		m.err = ErrCancelled
		return true
	default:
		return false
	}
}

// sub matches the rest of the pattern from item i at s as a new backtracking point.
func (m *Matcher) sub(s, i int) int {
	if m.depth >= MaxDepth {
		m.err = ErrTooComplex
		return abort
	}
	m.depth++
	e := m.match(s, i)
	m.depth--
	return e
}

// canStart is a cheap look at whether item i can match at s at all, to spare a backtracking attempt that
// would fail on its first byte.
func (m *Matcher) canStart(s, i int) bool {
	items := m.p.items
	if i == len(items) {
		return true
	}
	it := &items[i]
	switch it.kind {
	case kSingle:
		if it.rep == once || it.rep == plus {
			return s < len(m.s) && it.set.has(m.s[s])
		}
	case kEnd:
		return s == len(m.s)
	}
	return true
}

// match matches items[i:] against m.s from s and returns where the match ends, noMatch or abort.
// Single bytes, captures, balances, frontiers and back-references advance in the loop; only quantifiers
// recurse (one level each), so the recursion depth is bounded by the pattern, not the subject.
func (m *Matcher) match(s, i int) int {
	items, subj := m.p.items, m.s
	for {
		if m.tick(1) {
			return abort
		}
		if i == len(items) {
			return s
		}
		it := &items[i]
		switch it.kind {
		case kSingle:
			switch it.rep {
			case once:
				if s < len(subj) && it.set.has(subj[s]) {
					s++
					i++
					continue
				}
				return noMatch
			case optional:
				if s < len(subj) && it.set.has(subj[s]) && m.canStart(s+1, i+1) {
					if e := m.sub(s+1, i+1); e != noMatch {
						return e
					}
				}
				i++
				continue
			case star, plus:
				k := 0
				for s+k < len(subj) && it.set.has(subj[s+k]) {
					k++
				}
				if m.tick(k) {
					return abort
				}
				least := 0
				if it.rep == plus {
					least = 1
				}
				if k < least {
					return noMatch
				}
				if i+1 == len(items) {
					return s + k
				}
				for ; k >= least; k-- {
					if !m.canStart(s+k, i+1) {
						if m.tick(1) {
							return abort
						}
						continue
					}
					if e := m.sub(s+k, i+1); e != noMatch {
						return e
					}
				}
				return noMatch
			case lazy:
				for {
					if m.canStart(s, i+1) {
						if e := m.sub(s, i+1); e != noMatch {
							return e
						}
					} else if m.tick(1) {
						return abort
					}
					if s < len(subj) && it.set.has(subj[s]) {
						s++
						continue
					}
					return noMatch
				}
			}
		case kOpen:
			m.caps[it.n] = span{s, s}
		case kClose:
			m.caps[it.n].end = s
		case kPosition:
			m.caps[it.n] = span{s, position}
		case kEnd:
			if s == len(subj) {
				return s
			}
			return noMatch
		case kBalance:
			if s >= len(subj) || subj[s] != it.a {
				return noMatch
			}
			e := balanced(subj, s, it.a, it.b)
			if e < 0 {
				if m.tick(len(subj) - s) {
					return abort
				}
				return noMatch
			}
			if m.tick(e - s) {
				return abort
			}
			s = e
		case kFrontier:
			var prev, cur byte
			if s > 0 {
				prev = subj[s-1]
			}
			if s < len(subj) {
				cur = subj[s]
			}
			if it.set.has(prev) || !it.set.has(cur) {
				return noMatch
			}
		case kBackref:
			if it.bad {
				m.err = ErrInvalidCaptureIndex
				return abort
			}
			c := m.caps[it.n]
			if c.end == position {
				return noMatch // Lua compares nothing with a position and fails
			}
			n := c.end - c.start
			if m.tick(n) {
				return abort
			}
			if len(subj)-s < n || subj[s:s+n] != subj[c.start:c.end] {
				return noMatch
			}
			s += n
		}
		i++
	}
}

// balanced returns the end (exclusive) of the balanced run open...close that starts at s, or -1.
// The close byte is looked for first, so with open == close the run ends at the next one.
func balanced(subj string, s int, open, close byte) int {
	depth := 1
	for k := s + 1; k < len(subj); k++ {
		switch subj[k] {
		case close:
			depth--
			if depth == 0 {
				return k + 1
			}
		case open:
			depth++
		}
	}
	return -1
}
