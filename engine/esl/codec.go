package esl

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
)

// Header is one "Name: value" line of a frame or event. Names keep the case they arrived with; lookups
// ignore case, as FreeSWITCH does.
type Header struct {
	Name  string
	Value string
}

// Headers is an ordered header list. Duplicates are kept (CHANNEL_HANGUP_COMPLETE carries Hangup-Cause
// twice); Get returns the first.
type Headers []Header

// Get returns the first value named name (case-insensitive), or "".
func (h Headers) Get(name string) string {
	v, _ := h.Lookup(name)
	return v
}

// Lookup is Get that also says whether the header was present.
func (h Headers) Lookup(name string) (string, bool) {
	for i := range h {
		if len(h[i].Name) == len(name) && strings.EqualFold(h[i].Name, name) {
			return h[i].Value, true
		}
	}
	return "", false
}

// Content types FreeSWITCH sends on an outbound socket.
const (
	TypeCommandReply     = "command/reply"
	TypeAPIResponse      = "api/response"
	TypeEventPlain       = "text/event-plain"
	TypeEventJSON        = "text/event-json"
	TypeEventXML         = "text/event-xml"
	TypeDisconnectNotice = "text/disconnect-notice"
	TypeLogData          = "log/data"
)

// Frame is one message from FreeSWITCH: a header block and, when it carries Content-Length, a body.
// Header values are url-decoded (the connect reply is url-encoded; plain replies decode to themselves,
// as in FreeSWITCH's own client).
type Frame struct {
	Headers Headers
	Body    []byte
}

// ContentType is the frame's Content-Type, which may come anywhere in the block (last but three in the
// connect reply, second in events).
func (f *Frame) ContentType() string { return f.Headers.Get("Content-Type") }

// ReplyText is the Reply-Text of a command/reply.
func (f *Frame) ReplyText() string { return strings.TrimRight(f.Headers.Get("Reply-Text"), "\n") }

// Command is one message to FreeSWITCH: a command line, headers and an optional body.
type Command struct {
	Line    string
	Headers Headers
	Body    []byte
}

// Limits bound what one frame may hold; a peer over a limit gets its connection closed, since the stream
// cannot be resynchronised.
type Limits struct {
	MaxHeaderBytes int // bytes of one header block; default 256 KiB
	MaxHeaders     int // header lines in one block; default 4096
	MaxBody        int // Content-Length; default 16 MiB, FreeSWITCH's own cap
	// Bodies, when set, is shared by the Readers of a server: a body larger than 64 KiB takes its bytes past
	// the first 64 KiB from it as they arrive, and a frame whose body would take it past its size is refused
	// (ErrFrame).
	Bodies *BodyBudget
}

// BodyBudget bounds the bytes that the large bodies (over 64 KiB) being read by all the Readers sharing it
// hold at once past their first 64 KiB (which, like a small body, is the connection's own). A Reader gives
// a body's bytes back once the caller is done with the frame (Recycle, or the next read). It is safe for
// concurrent use.
type BodyBudget struct {
	max  int64
	used atomic.Int64
}

// NewBodyBudget returns a budget of max bytes.
func NewBodyBudget(max int64) *BodyBudget { return &BodyBudget{max: max} }

// Max is the budget's size in bytes.
func (b *BodyBudget) Max() int64 { return b.max }

// InUse is the bytes taken now.
func (b *BodyBudget) InUse() int64 {
	if b == nil {
		return 0
	}
	return b.used.Load()
}

func (b *BodyBudget) take(n int64) bool {
	if b == nil {
		return true
	}
	if b.used.Add(n) > b.max {
		b.used.Add(-n)
		return false
	}
	return true
}

func (b *BodyBudget) give(n int64) {
	if b != nil && n > 0 {
		b.used.Add(-n)
	}
}

func (l Limits) withDefaults() Limits {
	if l.MaxHeaderBytes <= 0 {
		l.MaxHeaderBytes = 256 << 10
	}
	if l.MaxHeaders <= 0 {
		l.MaxHeaders = 4096
	}
	if l.MaxBody <= 0 {
		l.MaxBody = 16 << 20
	}
	return l
}

// ErrFrame marks a malformed or over-limit frame; the stream is not usable after it.
var ErrFrame = errors.New("esl: bad frame")

// Reader reads frames (FreeSWITCH to engine) or commands (engine to FreeSWITCH) from a byte stream.
// It is the codec's only state: no network, no goroutines.
type Reader struct {
	br  *bufio.Reader
	lim Limits
	// Skipped counts header lines without a colon, which are ignored as FreeSWITCH ignores them.
	Skipped int
	// ReuseBody makes ReadFrame take bodies from buffers shared by all Readers; the caller hands each
	// frame's body back with Recycle once done with it. For a reader that parses events at once, it saves
	// one allocation the size of each event, and an idle reader holds no buffer.
	ReuseBody bool
	pooled    *[]byte // the pooled buffer of the latest body, until Recycle
	scratch   Headers // ReadFrame's headers while they are read
	held      int64   // bytes of the latest body taken from lim.Bodies, until Recycle or the next read
	step      int     // bodies over this many bytes grow as they arrive (maxReusedBody; tests lower it)
}

// NewReader reads from r with limits lim (zero fields take defaults).
func NewReader(r io.Reader, lim Limits) *Reader {
	// A small buffer: one per call, idle most of the time; bodies larger than it are read straight into place.
	return &Reader{br: bufio.NewReaderSize(r, 1024), lim: lim.withDefaults(), step: maxReusedBody}
}

// release gives the latest large body's bytes back to the budget.
func (r *Reader) release() {
	r.lim.Bodies.give(r.held)
	r.held = 0
}

// ReadFrame reads the next frame. io.EOF at a clean end between frames; io.ErrUnexpectedEOF inside one.
func (r *Reader) ReadFrame() (*Frame, error) {
	r.release()
	// Headers gather in a scratch list the Reader keeps, then move into the frame: a reply or an event
	// frame (two or three headers) is one allocation with its headers, a larger one two.
	r.scratch = r.scratch[:0]
	_, err := r.readBlock(false, &r.scratch)
	var f *Frame
	if n := len(r.scratch); err == nil && n <= len(smallFrame{}.h) {
		sf := &smallFrame{}
		copy(sf.h[:], r.scratch)
		sf.f.Headers = sf.h[:n:n]
		f = &sf.f
	} else if err == nil {
		f = &Frame{Headers: slices.Clone(r.scratch)}
	}
	clear(r.scratch) // hold no strings of this frame
	if cap(r.scratch) > 16 {
		r.scratch = nil // a large block (the connect reply) is not kept for the small frames that follow
	}
	if err != nil {
		return nil, err
	}
	body, err := r.readBody(f.Headers, r.ReuseBody)
	if err != nil {
		return nil, err
	}
	f.Body = body
	return f, nil
}

// smallFrame is a frame with room for its headers in the same allocation.
type smallFrame struct {
	f Frame
	h [3]Header
}

// ReadCommand reads the next command: first line is the command, then headers, then an optional body of
// content-length bytes. Values are taken as they are (no url-decoding), as FreeSWITCH does.
func (r *Reader) ReadCommand() (*Command, error) {
	r.release()
	c := &Command{}
	line, err := r.readBlock(true, &c.Headers)
	if err != nil {
		return nil, err
	}
	c.Line = line
	if c.Body, err = r.readBody(c.Headers, false); err != nil {
		return nil, err
	}
	return c, nil
}

// readBlock reads lines up to the first empty one. Leading empty lines are skipped. With command set, the
// first line is returned as the command line; otherwise it is a header like the rest.
func (r *Reader) readBlock(command bool, out *Headers) (string, error) {
	total := 0
	first := ""
	started := false
	for {
		raw, err := r.br.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			// A line longer than the buffer: gather it, still under the block cap.
			buf := append([]byte(nil), raw...)
			for err == bufio.ErrBufferFull {
				if total+len(buf) > r.lim.MaxHeaderBytes {
					return "", fmt.Errorf("%w: header block over %d bytes", ErrFrame, r.lim.MaxHeaderBytes)
				}
				raw, err = r.br.ReadSlice('\n')
				buf = append(buf, raw...)
			}
			raw = buf
		}
		if err != nil {
			if err == io.EOF && !started && total == 0 && len(raw) == 0 {
				return "", io.EOF
			}
			if err == io.EOF {
				return "", io.ErrUnexpectedEOF
			}
			return "", err
		}
		total += len(raw)
		if total > r.lim.MaxHeaderBytes {
			return "", fmt.Errorf("%w: header block over %d bytes", ErrFrame, r.lim.MaxHeaderBytes)
		}
		line := bytes.TrimRight(raw, "\r\n")
		if len(line) == 0 {
			if !started {
				total = 0
				continue
			}
			return first, nil
		}
		if command && !started {
			started = true
			first = string(line)
			continue
		}
		started = true
		i := bytes.IndexByte(line, ':')
		if i <= 0 {
			r.Skipped++
			continue
		}
		if len(*out) >= r.lim.MaxHeaders {
			return "", fmt.Errorf("%w: more than %d headers", ErrFrame, r.lim.MaxHeaders)
		}
		name := intern(bytes.TrimSpace(line[:i]))
		val := intern(bytes.TrimLeft(line[i+1:], " \t"))
		if !command {
			val = URLDecode(val)
		}
		*out = append(*out, Header{Name: name, Value: val})
	}
}

// maxReusedBody bounds the buffers ReuseBody readers share; larger bodies get their own.
const maxReusedBody = 64 << 10

var bodyPool = sync.Pool{New: func() any { return new([]byte) }}

// Recycle hands back the body of f, read with ReuseBody, for later frames; f.Body is nil afterwards. It
// does nothing for a frame whose body was not pooled, except giving a large body's bytes back to
// Limits.Bodies (the caller keeps the body, but it no longer counts as being read).
func (r *Reader) Recycle(f *Frame) {
	r.release()
	if !r.Pooled(f) {
		return
	}
	p := r.pooled
	r.pooled = nil
	f.Body = nil
	bodyPool.Put(p)
}

// Pooled reports whether f's body is a pooled buffer that Recycle takes back (so a caller keeping the body
// must copy it first).
func (r *Reader) Pooled(f *Frame) bool {
	p := r.pooled
	return p != nil && len(f.Body) > 0 && cap(*p) > 0 && &f.Body[:1][0] == &(*p)[:1][0]
}

// intern returns the names and values every frame carries without allocating; others are copied.
func intern(b []byte) string {
	switch string(b) {
	case "Content-Type":
		return "Content-Type"
	case "Content-Length":
		return "Content-Length"
	case "Reply-Text":
		return "Reply-Text"
	case TypeEventPlain:
		return TypeEventPlain
	case TypeEventJSON:
		return TypeEventJSON
	case TypeCommandReply:
		return TypeCommandReply
	case TypeAPIResponse:
		return TypeAPIResponse
	case "+OK":
		return "+OK"
	}
	return string(b)
}

func (r *Reader) readBody(h Headers, reuse bool) ([]byte, error) {
	cl, ok := h.Lookup("Content-Length")
	if !ok {
		return nil, nil
	}
	n, err := strconv.Atoi(strings.TrimSpace(cl))
	if err != nil || n < 0 || n > r.lim.MaxBody {
		return nil, fmt.Errorf("%w: Content-Length %.64q (want 0..%d)", ErrFrame, cl, r.lim.MaxBody)
	}
	if n == 0 {
		return nil, nil
	}
	if n > r.step {
		return r.readGrowing(n)
	}
	var body []byte
	if reuse {
		p := bodyPool.Get().(*[]byte)
		if cap(*p) < n {
			*p = make([]byte, n)
		}
		body = (*p)[:n]
		r.pooled = p
	} else {
		body = make([]byte, n)
	}
	if _, err := io.ReadFull(r.br, body); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	return body, nil
}

// readGrowing reads a body of n bytes into a buffer that grows (doubling) only as the bytes arrive, so
// an announced length costs nothing until it is sent; its capacity past the first 64 KiB is taken from
// lim.Bodies as it grows.
func (r *Reader) readGrowing(n int) ([]byte, error) {
	var body []byte
	for len(body) < n {
		if len(body) == cap(body) {
			size := min(n, max(2*cap(body), r.step))
			// the first step is the connection's own, as a small body is; growth past it is shared
			if more := int64(size - max(cap(body), r.step)); more > 0 {
				if !r.lim.Bodies.take(more) {
					r.release()
					return nil, fmt.Errorf("%w: body of %d bytes: the bodies being read would pass %d bytes (esl.bodies_in_flight_bytes)",
						ErrFrame, n, r.lim.Bodies.Max())
				}
				r.held += more
			}
			grown := make([]byte, len(body), size)
			copy(grown, body)
			body = grown
		}
		m, err := r.br.Read(body[len(body):cap(body)])
		body = body[:len(body)+m]
		if err != nil && len(body) < n {
			r.release()
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
	}
	return body, nil
}

// AppendCommand encodes c: the line, the headers, a Content-Length when there is a body, a blank line, the
// body. Header values must not contain newlines (put long or multi-line data in the body).
func AppendCommand(dst []byte, c *Command) []byte {
	dst = append(dst, c.Line...)
	dst = append(dst, '\n')
	for _, h := range c.Headers {
		dst = append(dst, h.Name...)
		dst = append(dst, ": "...)
		dst = append(dst, h.Value...)
		dst = append(dst, '\n')
	}
	if len(c.Body) > 0 {
		dst = append(dst, "Content-Length: "...)
		dst = strconv.AppendInt(dst, int64(len(c.Body)), 10)
		dst = append(dst, '\n')
	}
	dst = append(dst, '\n')
	return append(dst, c.Body...)
}
