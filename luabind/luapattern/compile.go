package luapattern

import (
	"errors"
	"math/bits"
)

const (
	// MaxCaptures is how many captures (position captures included) a pattern may hold, as in Lua.
	MaxCaptures = 32
	// MaxDepth bounds how many backtracking points (quantified items with something after them) may be
	// open at once; past it a match fails with "pattern too complex". Lua 5.2+ stops at 200 C levels.
	MaxDepth = 1000
)

// Errors a pattern can fail with. Their texts are Lua's, since scripts show them to people who know Lua.
var (
	ErrEndsWithPercent     = errors.New("malformed pattern (ends with '%')")
	ErrMissingBracket      = errors.New("malformed pattern (missing ']')")
	ErrBalanceArgs         = errors.New("malformed pattern (missing arguments to '%b')")
	ErrFrontierBracket     = errors.New("missing '[' after '%f' in pattern")
	ErrUnfinishedCapture   = errors.New("unfinished capture")
	ErrInvalidPatternCapt  = errors.New("invalid pattern capture")
	ErrTooManyCaptures     = errors.New("too many captures")
	ErrInvalidCaptureIndex = errors.New("invalid capture index")
	ErrTooComplex          = errors.New("pattern too complex")
	// ErrCancelled is returned when Matcher.Done was closed while a match ran.
	ErrCancelled = errors.New("pattern matching cancelled")
)

// Pattern is a compiled pattern. It is immutable and safe for concurrent use.
type Pattern struct {
	items    []item
	anchored bool // began with '^': tried at the start position only
	ncap     int
	// lead is the set the subject byte at a match's start must belong to (the first item is a single
	// that must match at least once); nil when any position may start a match.
	lead *byteSet
	// leadByte is the only member of lead, or -1.
	leadByte int
}

// Captures is how many captures the pattern defines.
func (p *Pattern) Captures() int { return p.ncap }

// Anchored reports whether the pattern began with '^'.
func (p *Pattern) Anchored() bool { return p.anchored }

type kind uint8

const (
	kSingle   kind = iota // one byte of set, repeated as rep says
	kOpen                 // capture n starts here
	kClose                // capture n ends here
	kPosition             // position capture n
	kBalance              // %bab
	kFrontier             // %f[set]
	kBackref              // %n: the text of capture n again
	kEnd                  // '$' as the last byte of the pattern
)

type rep uint8

const (
	once     rep = iota
	optional     // ?
	star         // *
	plus         // +
	lazy         // -
)

type item struct {
	kind kind
	rep  rep
	n    uint8 // capture index (kOpen, kClose, kPosition, kBackref)
	a, b byte  // kBalance delimiters
	bad  bool  // kBackref to a capture that is not closed here: an error when reached
	set  byteSet
}

// byteSet is a set of bytes, one bit each.
type byteSet [4]uint64

func (s *byteSet) has(c byte) bool { return s[c>>6]&(1<<(c&63)) != 0 }
func (s *byteSet) add(c byte)      { s[c>>6] |= 1 << (c & 63) }

func (s *byteSet) addRange(lo, hi byte) {
	for c := int(lo); c <= int(hi); c++ {
		s.add(byte(c))
	}
}

func (s *byteSet) invert() {
	for i := range s {
		s[i] = ^s[i]
	}
}

func (s *byteSet) count() int {
	return bits.OnesCount64(s[0]) + bits.OnesCount64(s[1]) + bits.OnesCount64(s[2]) + bits.OnesCount64(s[3])
}

// only returns the single member of the set, or -1.
func (s *byteSet) only() int {
	if s.count() != 1 {
		return -1
	}
	for i, w := range s {
		if w != 0 {
			return i*64 + bits.TrailingZeros64(w)
		}
	}
	return -1
}

// classes holds, for each class letter of the C locale, its members; the upper-case letter is the
// complement. Other escaped bytes stand for themselves.
var classes = func() (t [256]*byteSet) {
	def := map[byte]func(c byte) bool{
		'a': func(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' },
		'c': func(c byte) bool { return c < 0x20 || c == 0x7f },
		'd': func(c byte) bool { return c >= '0' && c <= '9' },
		'l': func(c byte) bool { return c >= 'a' && c <= 'z' },
		'p': func(c byte) bool {
			return c >= 0x21 && c <= 0x2f || c >= 0x3a && c <= 0x40 || c >= 0x5b && c <= 0x60 || c >= 0x7b && c <= 0x7e
		},
		's': func(c byte) bool { return c == ' ' || c >= '\t' && c <= '\r' },
		'u': func(c byte) bool { return c >= 'A' && c <= 'Z' },
		'w': func(c byte) bool { return c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' },
		'x': func(c byte) bool { return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F' },
		'z': func(c byte) bool { return c == 0 },
	}
	for letter, in := range def {
		var s byteSet
		for c := 0; c < 256; c++ {
			if in(byte(c)) {
				s.add(byte(c))
			}
		}
		up := s
		up.invert()
		t[letter], t[letter-'a'+'A'] = &s, &up
	}
	return t
}()

// addEscaped adds what %c stands for: a class, or the byte c itself.
func (s *byteSet) addEscaped(c byte) {
	if cl := classes[c]; cl != nil {
		for i := range s {
			s[i] |= cl[i]
		}
		return
	}
	s.add(c)
}

// Compile checks a whole pattern and prepares it for matching.
func Compile(pat string) (*Pattern, error) {
	p := &Pattern{leadByte: -1}
	i := 0
	if len(pat) > 0 && pat[0] == '^' {
		p.anchored = true
		i = 1
	}
	items := make([]item, 0, len(pat)-i)
	var open [MaxCaptures]uint8
	nopen := 0
	var closed [MaxCaptures]bool
	for i < len(pat) {
		var it item
		c := pat[i]
		switch c {
		case '(':
			if p.ncap == MaxCaptures {
				return nil, ErrTooManyCaptures
			}
			n := uint8(p.ncap)
			p.ncap++
			if i+1 < len(pat) && pat[i+1] == ')' {
				closed[n] = true
				items = append(items, item{kind: kPosition, n: n})
				i += 2
				continue
			}
			open[nopen] = n
			nopen++
			items = append(items, item{kind: kOpen, n: n})
			i++
			continue
		case ')':
			if nopen == 0 {
				return nil, ErrInvalidPatternCapt
			}
			nopen--
			n := open[nopen]
			closed[n] = true
			items = append(items, item{kind: kClose, n: n})
			i++
			continue
		case '$':
			if i == len(pat)-1 {
				items = append(items, item{kind: kEnd})
				i++
				continue
			}
			it.set.add(c)
			i++
		case '%':
			if i+1 == len(pat) {
				return nil, ErrEndsWithPercent
			}
			e := pat[i+1]
			switch {
			case e == 'b':
				if i+3 >= len(pat) {
					return nil, ErrBalanceArgs
				}
				items = append(items, item{kind: kBalance, a: pat[i+2], b: pat[i+3]})
				i += 4
				continue
			case e == 'f':
				i += 2
				if i == len(pat) || pat[i] != '[' {
					return nil, ErrFrontierBracket
				}
				it = item{kind: kFrontier}
				next, err := parseSet(pat, i, &it.set)
				if err != nil {
					return nil, err
				}
				items = append(items, it)
				i = next
				continue
			case e == '0':
				return nil, ErrInvalidCaptureIndex
			case e >= '1' && e <= '9':
				n := e - '1'
				items = append(items, item{kind: kBackref, n: n, bad: int(n) >= p.ncap || !closed[n]})
				i += 2
				continue
			}
			it.set.addEscaped(e)
			i += 2
		case '[':
			next, err := parseSet(pat, i, &it.set)
			if err != nil {
				return nil, err
			}
			i = next
		case '.':
			it.set.invert()
			i++
		default:
			it.set.add(c)
			i++
		}
		// A single byte class; a quantifier may follow it.
		if i < len(pat) {
			switch pat[i] {
			case '?':
				it.rep = optional
			case '*':
				it.rep = star
			case '+':
				it.rep = plus
			case '-':
				it.rep = lazy
			}
			if it.rep != once {
				i++
			}
		}
		items = append(items, it)
	}
	if nopen > 0 {
		return nil, ErrUnfinishedCapture
	}
	p.items = items
	p.findLead()
	return p, nil
}

// parseSet reads the set that starts with '[' at pat[i] into s and returns the index after its ']'.
// Its end is found as Lua finds it (the first byte is always a member, '%' escapes the next byte), and
// its members are read as Lua's matcher reads them: "%x" is a class or the byte x, "a-z" a range when
// the '-' is followed by a byte before the closing ']', anything else the byte itself.
func parseSet(pat string, i int, s *byteSet) (int, error) {
	j := i + 1
	neg := false
	if j < len(pat) && pat[j] == '^' {
		neg = true
		j++
	}
	end := j
	for {
		if end >= len(pat) {
			return 0, ErrMissingBracket
		}
		c := pat[end]
		end++
		if c == '%' && end < len(pat) {
			end++
		}
		if end < len(pat) && pat[end] == ']' {
			break
		}
	}
	for q := j; q < end; {
		c := pat[q]
		switch {
		case c == '%':
			s.addEscaped(pat[q+1]) // q+1 <= end: a '%' always has the next byte in the pattern
			q += 2
		case q+2 < end && pat[q+1] == '-':
			if c <= pat[q+2] {
				s.addRange(c, pat[q+2])
			}
			q += 3
		default:
			s.add(c)
			q++
		}
	}
	if neg {
		s.invert()
	}
	return end + 1, nil
}

// findLead records which bytes can start a match, so a search skips the positions that cannot.
func (p *Pattern) findLead() {
	for k := range p.items {
		it := &p.items[k]
		switch it.kind {
		case kOpen, kPosition:
			continue // they consume nothing
		case kSingle:
			if it.rep == once || it.rep == plus {
				p.lead = &it.set
				p.leadByte = it.set.only()
			}
		}
		return
	}
}
