package transport

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"time"
)

// ErrOutboxFull is returned by Outbox.Send when the queue is at its cap; the
// caller should drop the slow peer rather than buffer without bound.
var ErrOutboxFull = errors.New("transport: outbound queue full")

// coalesceMax is the largest batch copied into one contiguous write; bigger
// batches go out as a vectored write (net.Buffers).
const coalesceMax = 64 << 10

// Outbox is a bounded queue of outbound messages with one writer goroutine.
// The writer takes everything queued at once and writes it in one call, so a
// burst of small messages costs one syscall (and, over TLS, one record).
type Outbox struct {
	w        io.Writer
	max      int // messages
	maxBytes int // 0: no byte bound

	mu      sync.Mutex
	queue   [][]byte
	pending int // messages queued + being written
	bytes   int // bytes queued + being written
	err     error
	closing bool
	abort   bool
	space   chan struct{} // closed (and cleared) by the writer after a batch, when WaitBelow waits

	wake chan struct{} // capacity 1
	done chan struct{} // closed when the writer has stopped
}

// OutboxLimits bound what an Outbox holds for a peer that does not read.
type OutboxLimits struct {
	// Messages is how many messages may wait; <= 0 means 1024.
	Messages int
	// Bytes is how many bytes may wait; 0 means no byte bound. A message that
	// would take the queue past it is refused, except when nothing waits (a
	// single message larger than Bytes can still be sent), so the queue never
	// holds more than max(Bytes, its largest message).
	Bytes int
}

// NewOutbox starts the writer goroutine for w, bounded to maxQueued messages
// (<= 0 means 1024) and no byte bound. Close must be called to stop it.
func NewOutbox(w io.Writer, maxQueued int) *Outbox {
	return NewBoundedOutbox(w, OutboxLimits{Messages: maxQueued})
}

// NewBoundedOutbox starts the writer goroutine for w with the given limits.
// Close must be called to stop it.
func NewBoundedOutbox(w io.Writer, lim OutboxLimits) *Outbox {
	if lim.Messages <= 0 {
		lim.Messages = 1024
	}
	o := &Outbox{w: w, max: lim.Messages, maxBytes: max(lim.Bytes, 0), wake: make(chan struct{}, 1), done: make(chan struct{})}
	go o.run()
	return o
}

// Send queues p for writing and takes ownership of it: p must not be modified
// afterwards, though it may be shared, read-only, with other outboxes (one
// broadcast to many peers). It never blocks. It returns ErrOutboxFull when the
// messages or bytes not yet written are at the limits (OutboxLimits), the
// first write error once a write failed, and net.ErrClosed after Close.
func (o *Outbox) Send(p []byte) error {
	o.mu.Lock()
	switch {
	case o.err != nil:
		err := o.err
		o.mu.Unlock()
		return err
	case o.closing:
		o.mu.Unlock()
		return net.ErrClosed
	case o.pending >= o.max, o.maxBytes > 0 && o.pending > 0 && o.bytes+len(p) > o.maxBytes:
		o.mu.Unlock()
		return ErrOutboxFull
	}
	o.queue = append(o.queue, p)
	o.pending++
	o.bytes += len(p)
	o.mu.Unlock()
	select {
	case o.wake <- struct{}{}:
	default:
	}
	return nil
}

// Pending returns how many messages are queued or being written.
func (o *Outbox) Pending() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.pending
}

// PendingBytes returns how many bytes are queued or being written.
func (o *Outbox) PendingBytes() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.bytes
}

// WaitBelow waits until at most n bytes are queued or being written. It
// returns ctx.Err() if ctx ends first, and the outbox's error (or
// net.ErrClosed) if it stops first.
func (o *Outbox) WaitBelow(ctx context.Context, n int) error {
	for {
		o.mu.Lock()
		switch {
		case o.bytes <= n:
			o.mu.Unlock()
			return nil
		case o.err != nil:
			err := o.err
			o.mu.Unlock()
			return err
		case o.closing:
			o.mu.Unlock()
			return net.ErrClosed
		}
		if o.space == nil {
			o.space = make(chan struct{})
		}
		space := o.space
		o.mu.Unlock()
		select {
		case <-space:
		case <-o.done:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Err returns the write error that stopped the outbox, if any.
func (o *Outbox) Err() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.err
}

// Done is closed when the writer goroutine has stopped (after Close, or after
// a write error).
func (o *Outbox) Done() <-chan struct{} { return o.done }

// Close refuses further Sends, lets the writer flush what is queued and stops
// it. If ctx ends first, the rest is dropped; when the writer has
// SetWriteDeadline (a net.Conn) a blocked write is interrupted and Close
// waits for the writer, otherwise Close returns ctx.Err() and the writer
// stops as soon as its current write returns. Close returns the write error
// that stopped the outbox early, if any.
func (o *Outbox) Close(ctx context.Context) error {
	o.mu.Lock()
	o.closing = true
	o.mu.Unlock()
	select {
	case o.wake <- struct{}{}:
	default:
	}
	select {
	case <-o.done:
		return o.Err()
	case <-ctx.Done():
	}
	o.mu.Lock()
	o.abort = true
	o.mu.Unlock()
	if d, ok := o.w.(interface{ SetWriteDeadline(time.Time) error }); ok {
		_ = d.SetWriteDeadline(time.Unix(1, 0))
		<-o.done
	}
	return ctx.Err()
}

func (o *Outbox) run() {
	defer close(o.done)
	var batch [][]byte
	var scratch []byte
	var vec net.Buffers
	for {
		o.mu.Lock()
		for len(o.queue) == 0 && !o.closing {
			o.mu.Unlock()
			<-o.wake
			o.mu.Lock()
		}
		if o.abort || (len(o.queue) == 0 && o.closing) {
			o.queue = nil
			o.mu.Unlock()
			return
		}
		batch, o.queue = o.queue, batch[:0]
		o.mu.Unlock()

		err := o.write(batch, &scratch, &vec)
		written := 0
		for _, p := range batch {
			written += len(p)
		}
		clear(batch)

		o.mu.Lock()
		o.pending -= len(batch)
		o.bytes -= written
		if o.space != nil {
			close(o.space)
			o.space = nil
		}
		if err != nil {
			o.err = err
			o.pending, o.bytes = 0, 0
			o.queue = nil
			o.mu.Unlock()
			return
		}
		o.mu.Unlock()
	}
}

func (o *Outbox) write(batch [][]byte, scratch *[]byte, vec *net.Buffers) error {
	if len(batch) == 1 {
		_, err := o.w.Write(batch[0])
		return err
	}
	total := 0
	for _, p := range batch {
		total += len(p)
	}
	if total <= coalesceMax {
		buf := (*scratch)[:0]
		for _, p := range batch {
			buf = append(buf, p...)
		}
		*scratch = buf
		_, err := o.w.Write(buf)
		return err
	}
	*vec = append((*vec)[:0], batch...)
	v := *vec // WriteTo consumes its receiver
	_, err := v.WriteTo(o.w)
	clear(*vec)
	return err
}
