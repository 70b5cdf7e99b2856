package transport

import (
	"bytes"
	"errors"
	"fmt"
	"io"
)

// ErrTooLong is wrapped by the error Reader.Next returns for a message longer
// than the reader's max.
var ErrTooLong = errors.New("transport: message too long")

// readChunk is the size of one read from the underlying reader.
const readChunk = 4096

// Reader splits a stream into messages ended by a delimiter. It is the one
// framing reader of the project: every line- or delimiter-based protocol uses
// it.
type Reader struct {
	rd    io.Reader
	delim []byte
	max   int // 0: no limit
	limit int // cap of buf when max > 0

	buf        []byte
	start, end int  // unconsumed bytes are buf[start:end]
	scanned    int  // buf[start:scanned] holds no complete delimiter
	discarding bool // skipping the rest of an over-long message
	err        error
	head       []byte // the first bytes of the last over-long message (Head)
}

// headMax is how much of an over-long message Head keeps.
const headMax = 64

// NewReader returns a Reader of messages ended by delim (any non-empty byte
// string). With max > 0 a message longer than max bytes is an error and the
// reader never buffers more than max+len(delim)-1+4096 bytes; max <= 0 means
// no limit (only for trusted peers). NewReader panics on an empty delim.
func NewReader(r io.Reader, delim []byte, max int) *Reader {
	if len(delim) == 0 {
		panic("transport: NewReader: empty delimiter")
	}
	if max < 0 {
		max = 0
	}
	d := append([]byte(nil), delim...)
	rr := &Reader{rd: r, delim: d, max: max}
	if max > 0 {
		rr.limit = max + len(d) - 1 + readChunk
	}
	return rr
}

// Buffered returns how many received bytes are waiting to be framed.
func (r *Reader) Buffered() int { return r.end - r.start }

// Next returns the next message without its delimiter. The slice aliases the
// reader's buffer and is valid until the next call. Errors:
//   - an error wrapping ErrTooLong, once per over-long message; the reader then
//     skips through the next delimiter and Next may be called again;
//   - io.EOF when the stream ends cleanly after a delimiter;
//   - io.ErrUnexpectedEOF when it ends inside a message;
//   - the underlying read error otherwise.
func (r *Reader) Next() ([]byte, error) {
	dl := len(r.delim)
	for {
		from := r.scanned - (dl - 1)
		if from < r.start {
			from = r.start
		}
		if i := bytes.Index(r.buf[from:r.end], r.delim); i >= 0 {
			msgEnd := from + i
			msg := r.buf[r.start:msgEnd]
			r.start = msgEnd + dl
			r.scanned = r.start
			if r.discarding {
				r.discarding = false
				continue
			}
			if r.max > 0 && len(msg) > r.max {
				r.keepHead(msg)
				return nil, fmt.Errorf("transport: message of %d bytes, max %d: %w", len(msg), r.max, ErrTooLong)
			}
			return msg, nil
		}
		r.scanned = r.end
		if r.discarding {
			// Keep only what may be the start of a split delimiter.
			r.dropAllBut(dl - 1)
		} else if r.max > 0 && r.end-r.start > r.max+dl-1 {
			n := r.end - r.start
			r.keepHead(r.buf[r.start:r.end])
			r.discarding = true
			r.dropAllBut(dl - 1)
			return nil, fmt.Errorf("transport: %d bytes without delimiter, max %d: %w", n, r.max, ErrTooLong)
		}
		if r.err != nil {
			err := r.err
			if err == io.EOF && (r.end > r.start || r.discarding) {
				err = io.ErrUnexpectedEOF
				r.start, r.end, r.scanned, r.discarding = 0, 0, 0, false
				r.err = io.EOF
			}
			return nil, err
		}
		r.fill()
	}
}

// Head returns the first bytes (at most 64) of the over-long message the last ErrTooLong was about, so
// that a protocol can still answer it (e.g. with the sequence number its header carries). The slice is
// valid until the next ErrTooLong.
func (r *Reader) Head() []byte { return r.head }

func (r *Reader) keepHead(msg []byte) {
	r.head = append(r.head[:0], msg[:min(len(msg), headMax)]...)
}

// dropAllBut discards the unconsumed bytes except the last keep of them.
func (r *Reader) dropAllBut(keep int) {
	if n := r.end - r.start; n > keep {
		r.start = r.end - keep
		r.scanned = r.start
	}
}

// fill makes room and reads once (retrying a few empty reads).
func (r *Reader) fill() {
	if r.start > 0 {
		n := copy(r.buf, r.buf[r.start:r.end])
		r.scanned -= r.start
		r.start, r.end = 0, n
	}
	if len(r.buf)-r.end < readChunk {
		size := 2*len(r.buf) + readChunk
		if r.limit > 0 && size > r.limit {
			size = r.limit
		}
		if size > len(r.buf) {
			nb := make([]byte, size)
			copy(nb, r.buf[:r.end])
			r.buf = nb
		}
	}
	for i := 0; i < 100; i++ {
		n, err := r.rd.Read(r.buf[r.end:])
		if n < 0 || n > len(r.buf)-r.end {
			r.err = errors.New("transport: reader returned invalid count")
			return
		}
		r.end += n
		if err != nil {
			r.err = err
			return
		}
		if n > 0 {
			return
		}
	}
	r.err = io.ErrNoProgress
}
