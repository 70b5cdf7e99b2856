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
	w   io.Writer
	max int

	mu      sync.Mutex
	queue   [][]byte
	pending int // queued + being written
	err     error
	closing bool
	abort   bool

	wake chan struct{} // capacity 1
	done chan struct{} // closed when the writer has stopped
}

// NewOutbox starts the writer goroutine for w. maxQueued <= 0 means 1024.
// Close must be called to stop it.
func NewOutbox(w io.Writer, maxQueued int) *Outbox {
	if maxQueued <= 0 {
		maxQueued = 1024
	}
	o := &Outbox{w: w, max: maxQueued, wake: make(chan struct{}, 1), done: make(chan struct{})}
	go o.run()
	return o
}

// Send queues p for writing and takes ownership of it (do not modify p
// afterwards). It never blocks. It returns ErrOutboxFull when maxQueued
// messages are not yet written, the first write error once a write failed, and
// net.ErrClosed after Close.
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
	case o.pending >= o.max:
		o.mu.Unlock()
		return ErrOutboxFull
	}
	o.queue = append(o.queue, p)
	o.pending++
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
		clear(batch)

		o.mu.Lock()
		o.pending -= len(batch)
		if err != nil {
			o.err = err
			o.pending = 0
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
