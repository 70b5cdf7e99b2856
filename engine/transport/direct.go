package transport

// Send writes p straight to the socket when out has nothing queued, and hands what the socket did not take
// to queue (which puts it on out). Both happen under w's lock, so bytes from goroutines sending at once keep
// their order: a direct write never overtakes a queued one, and the rest of a partly written p is queued
// before anything else. taken says the socket took p whole, so nothing refers to p any more (a queued p
// belongs to out until written). A nil w (TLS, non-unix) hands p to queue.
func (w *DirectWriter) Send(out *Outbox, p []byte, queue func(rest []byte) error) (taken bool, err error) {
	if w == nil {
		return false, queue(p)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if out.Pending() == 0 {
		n := w.tryWrite(p)
		if n == len(p) {
			return true, nil
		}
		p = p[n:]
	}
	return false, queue(p)
}
