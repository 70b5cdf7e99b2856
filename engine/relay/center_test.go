package relay

import "testing"

func TestQuickStatus(t *testing.T) {
	for _, c := range []struct {
		line string
		q    int64
		code int
		ok   bool
	}{
		{`M@1700000000000|Q=17|S=0|M="OK"`, 17, 0, true},
		{`M@1|Q=0|S=12|M="bad"`, 0, 12, true},
		{`M@1|Q=5|S=0`, 5, 0, true},
		{`M|Q=5|S=3|M="x"`, 5, 3, true},
		{`M@1|S=0|Q=5|M="x"`, 0, 0, false}, // not the strict order: full parse
		{`M@1|Q=|S=0`, 0, 0, false},
		{`M@1|Q=5|S=`, 0, 0, false},
		{`M@1|Q=5|S=0x|M="x"`, 0, 0, false},
		{`E@1|Q=5|S=0|M="x"`, 0, 0, false},
		{`M@1|Q=123456789012345678901|S=0`, 0, 0, false}, // too long to be a sequence number
	} {
		q, code, ok := quickStatus([]byte(c.line))
		if ok != c.ok || ok && (q != c.q || code != c.code) {
			t.Errorf("%s: got %d %d %v, want %d %d %v", c.line, q, code, ok, c.q, c.code, c.ok)
		}
	}
}

// FuzzQuickStatus checks that the fast status reader never panics and agrees
// with the full parser on every status line both accept.
func FuzzQuickStatus(f *testing.F) {
	f.Add([]byte(`M@1700000000000|Q=17|S=0|M="OK"`))
	f.Add([]byte(`M|Q=0|S=1|M="Missing required Fields: I"`))
	f.Add([]byte(`M@1|Q=5|S=0`))
	f.Fuzz(func(t *testing.T, line []byte) {
		q, code, ok := quickStatus(line)
		if !ok {
			return
		}
		m, err := Parse(line)
		if err != nil || m.Type != 'M' {
			return // the fast path reads only up to S
		}
		mq, _ := m.Get("Q")
		ms, _ := m.Get("S")
		if mq.Kind == KindInt || mq.Kind == KindLong {
			if mq.I != q || ms.I != int64(code) {
				t.Fatalf("%q: quick %d/%d, parsed %d/%d", line, q, code, mq.I, ms.I)
			}
		}
	})
}
