package transport

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

// chunkReader returns its chunks one Read at a time.
type chunkReader struct{ chunks [][]byte }

func (c *chunkReader) Read(p []byte) (int, error) {
	for len(c.chunks) > 0 && len(c.chunks[0]) == 0 {
		c.chunks = c.chunks[1:]
	}
	if len(c.chunks) == 0 {
		return 0, io.EOF
	}
	n := copy(p, c.chunks[0])
	c.chunks[0] = c.chunks[0][n:]
	return n, nil
}

// readAll collects messages (as strings) and error markers until EOF.
func readAll(t testing.TB, r *Reader) []string {
	var out []string
	for i := 0; ; i++ {
		if i > 1_000_000 {
			t.Fatal("reader does not terminate")
		}
		m, err := r.Next()
		switch {
		case err == nil:
			out = append(out, string(m))
		case errors.Is(err, ErrTooLong):
			out = append(out, "<too long>")
		case err == io.ErrUnexpectedEOF:
			return append(out, "<unexpected eof>")
		case err == io.EOF:
			return out
		default:
			t.Fatalf("unexpected error %v", err)
		}
	}
}

func TestReaderDelimiters(t *testing.T) {
	for _, delim := range []string{"\n", "\r\n", "\x01", "END"} {
		input := "alpha" + delim + delim + "beta gamma" + delim + "δ" + delim
		want := []string{"alpha", "", "beta gamma", "δ"}
		for name, rd := range map[string]io.Reader{
			"whole":   strings.NewReader(input),
			"onebyte": iotest.OneByteReader(strings.NewReader(input)),
			"halves":  iotest.HalfReader(strings.NewReader(input)),
		} {
			got := readAll(t, NewReader(rd, []byte(delim), 64))
			if strings.Join(got, "|") != strings.Join(want, "|") {
				t.Errorf("delim %q %s: got %q, want %q", delim, name, got, want)
			}
		}
	}
}

func TestReaderSplitDelimiter(t *testing.T) {
	r := NewReader(&chunkReader{chunks: [][]byte{[]byte("ab\r"), []byte("\ncd\r"), []byte("\n\r"), []byte("\n")}}, []byte("\r\n"), 16)
	got := readAll(t, r)
	if want := []string{"ab", "cd", ""}; strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("got %q, want %q", got, want)
	}
}

func TestReaderTooLongThenContinues(t *testing.T) {
	// one over-long message that arrives whole, one that arrives in pieces
	long := strings.Repeat("x", 10_000)
	input := "ok1\nabcdefgh\nok2\n" + long + "\nok3\nabcd"
	r := NewReader(iotest.HalfReader(strings.NewReader(input)), []byte("\n"), 5)
	got := readAll(t, r)
	want := []string{"ok1", "<too long>", "ok2", "<too long>", "ok3", "<unexpected eof>"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("got %q, want %q", got, want)
	}
	if _, err := r.Next(); err != io.EOF {
		t.Fatalf("after end: %v, want io.EOF", err)
	}
}

func TestReaderExactMax(t *testing.T) {
	r := NewReader(iotest.OneByteReader(strings.NewReader("abcd\r\nabcde\r\n")), []byte("\r\n"), 4)
	got := readAll(t, r)
	if want := []string{"abcd", "<too long>"}; strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("got %q, want %q", got, want)
	}
}

func TestReaderUnterminatedTail(t *testing.T) {
	got := readAll(t, NewReader(strings.NewReader("a\nb"), []byte("\n"), 0))
	if want := []string{"a", "<unexpected eof>"}; strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("got %q", got)
	}
}

// boundedSource sends n bytes without a delimiter, then "\nafter\n", and
// records the largest buffer the reader ever held.
type boundedSource struct {
	r      *Reader
	left   int
	tail   []byte
	maxCap int
}

func (s *boundedSource) Read(p []byte) (int, error) {
	if c := cap(s.r.buf); c > s.maxCap {
		s.maxCap = c
	}
	if s.left > 0 {
		n := min(len(p), s.left)
		for i := range p[:n] {
			p[i] = 'x'
		}
		s.left -= n
		return n, nil
	}
	if len(s.tail) == 0 {
		return 0, io.EOF
	}
	n := copy(p, s.tail)
	s.tail = s.tail[n:]
	return n, nil
}

func TestReaderBoundedMemoryWithoutDelimiter(t *testing.T) {
	const max = 64 << 10
	src := &boundedSource{left: 10 << 20, tail: []byte("\nafter\n")}
	src.r = NewReader(src, []byte("\r\n\r\n"), max)
	src.tail = []byte("\r\n\r\nafter\r\n\r\n")
	got := readAll(t, src.r)
	if want := []string{"<too long>", "after"}; strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("got %q", got)
	}
	if bound := max + 4 - 1 + readChunk; src.maxCap > bound {
		t.Fatalf("buffer grew to %d bytes, bound %d", src.maxCap, bound)
	}
}

// reference splits data the simple way and returns what Reader must report.
func reference(data, delim []byte, max int) []string {
	parts := bytes.Split(data, delim)
	tail := parts[len(parts)-1]
	var out []string
	for _, p := range parts[:len(parts)-1] {
		if max > 0 && len(p) > max {
			out = append(out, "<too long>")
		} else {
			out = append(out, string(p))
		}
	}
	if len(tail) > 0 {
		if max > 0 && len(tail) > max+len(delim)-1 {
			out = append(out, "<too long>")
		}
		out = append(out, "<unexpected eof>")
	}
	return out
}

// floodReader sends flood bytes of filler, then its chunks, and records the
// largest buffer the reader held.
type floodReader struct {
	chunkReader
	r      *Reader
	filler byte
	block  []byte
	flood  int
	maxCap int
}

func (f *floodReader) Read(p []byte) (int, error) {
	if f.r != nil && cap(f.r.buf) > f.maxCap {
		f.maxCap = cap(f.r.buf)
	}
	if f.flood > 0 {
		if len(f.block) == 0 || f.block[0] != f.filler {
			f.block = bytes.Repeat([]byte{f.filler}, readChunk)
		}
		n := copy(p[:min(len(p), f.flood)], f.block)
		f.flood -= n
		return n, nil
	}
	return f.chunkReader.Read(p)
}

// FuzzReader checks Reader against bytes.Split for any delimiter, chunking
// and max, and that its buffer stays within max+len(delim)-1+readChunk. With
// flood set, 10 MB without a delimiter come first.
func FuzzReader(f *testing.F) {
	f.Add([]byte("a\nbb\n\nccc"), []byte("\n"), uint8(1), uint16(2), false)
	f.Add([]byte("x\r\ny\r\r\n\r\n"), []byte("\r\n"), uint8(3), uint16(0), false)
	f.Add([]byte("aaaaXaaXX"), []byte("aX"), uint8(2), uint16(1), false)
	f.Add([]byte("\x01\x01abc\x01"), []byte("\x01"), uint8(7), uint16(3), false)
	f.Add(bytes.Repeat([]byte("z"), 20000), []byte("END"), uint8(0), uint16(100), false)
	f.Add([]byte("\r\nnext\r\n"), []byte("\r\n"), uint8(0), uint16(65535), true)
	f.Add([]byte("tail"), []byte("\n"), uint8(5), uint16(64), true)
	f.Fuzz(func(t *testing.T, data, delim []byte, chunk uint8, max uint16, flood bool) {
		if len(delim) == 0 || len(delim) > 8 {
			return
		}
		var chunks [][]byte
		step := int(chunk)%17 + 1
		if chunk == 0 {
			step = len(data) + 1
		}
		for i := 0; i < len(data); i += step {
			chunks = append(chunks, data[i:min(i+step, len(data))])
		}
		src := &floodReader{chunkReader: chunkReader{chunks: chunks}}
		want := reference(data, delim, int(max))
		if flood && max > 0 {
			// a filler byte that is not in delim cannot form a delimiter with
			// its neighbours; any prefix longer than max+len(delim)-1 is
			// reported like 10 MB would be
			for bytes.Contains(delim, []byte{src.filler}) {
				src.filler++
			}
			src.flood = 10 << 20
			prefix := bytes.Repeat([]byte{src.filler}, int(max)+len(delim))
			want = reference(append(prefix, data...), delim, int(max))
		}
		r := NewReader(src, delim, int(max))
		src.r = r
		got := readAll(t, r)
		if strings.Join(got, "\x00|") != strings.Join(want, "\x00|") {
			t.Fatalf("data %q delim %q step %d max %d flood %v:\n got %q\nwant %q", data, delim, step, max, flood, got, want)
		}
		if max > 0 {
			if bound := int(max) + len(delim) - 1 + readChunk; src.maxCap > bound || cap(r.buf) > bound {
				t.Fatalf("buffer %d/%d > bound %d", src.maxCap, cap(r.buf), bound)
			}
		}
	})
}

func BenchmarkReader(b *testing.B) {
	line := append(bytes.Repeat([]byte("m"), 63), '\n')
	data := bytes.Repeat(line, 1024)
	r := NewReader(&cycle{data: data}, []byte("\n"), 1024)
	b.SetBytes(int64(len(line)))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := r.Next(); err != nil {
			b.Fatal(err)
		}
	}
}

// cycle repeats data forever.
type cycle struct {
	data []byte
	off  int
}

func (c *cycle) Read(p []byte) (int, error) {
	n := copy(p, c.data[c.off:])
	c.off = (c.off + n) % len(c.data)
	return n, nil
}

// TestReaderHeadOfTooLong: the start of an over-long message stays readable after ErrTooLong, whether the
// message arrived whole or ran past the buffer before its delimiter.
func TestReaderHeadOfTooLong(t *testing.T) {
	long := "O#41|T=\"Long\"|v=\"" + strings.Repeat("x", 100_000) + "\""
	for name, rd := range map[string]io.Reader{
		"whole":  strings.NewReader("short\n" + long + "\nnext\n"),
		"pieces": iotest.HalfReader(strings.NewReader("short\n" + long + "\nnext\n")),
	} {
		r := NewReader(rd, []byte("\n"), 1000)
		if m, err := r.Next(); err != nil || string(m) != "short" {
			t.Fatalf("%s: %q %v", name, m, err)
		}
		if _, err := r.Next(); !errors.Is(err, ErrTooLong) {
			t.Fatalf("%s: %v, want ErrTooLong", name, err)
		}
		if got := string(r.Head()); got != long[:64] {
			t.Fatalf("%s: head %q, want %q", name, got, long[:64])
		}
		if m, err := r.Next(); err != nil || string(m) != "next" {
			t.Fatalf("%s: after: %q %v", name, m, err)
		}
	}
	short := NewReader(strings.NewReader("abcdefgh\n"), []byte("\n"), 4)
	if _, err := short.Next(); !errors.Is(err, ErrTooLong) || string(short.Head()) != "abcdefgh" {
		t.Fatalf("short over-long message: %v, head %q", err, short.Head())
	}
}
