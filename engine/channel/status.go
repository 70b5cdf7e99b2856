package channel

import "time"

// Status is what the status page shows of one channel.
type Status struct {
	Name      string `json:"name"`
	Protocol  string `json:"protocol"`
	Addr      string `json:"addr"`
	Permanent bool   `json:"permanent"`
	State     State  `json:"state"` // down, connecting, up or stopped
	LastError string `json:"last_error"`
	// UpSince is when the current connection was made (zero without one).
	UpSince time.Time `json:"up_since"`
	// BufferedMessages waits to be written: for a connection, or on the connection's outbound queue.
	BufferedMessages int `json:"buffered_messages"`
	// BufferedBytes is what counts against send_buffer_bytes: messages waiting, queued, and requests kept
	// until they are answered.
	BufferedBytes int64 `json:"buffered_bytes"`
	// AwaitingReply counts requests written whose reply has not come (http, resp, ch:request).
	AwaitingReply int `json:"awaiting_reply"`
	// ReceivedMessages and ReceivedBytes are kept for ch:receive.
	ReceivedMessages int `json:"received_messages"`
	ReceivedBytes    int `json:"received_bytes"`
}

// Status returns the channel's state now.
func (c *Channel) Status() Status {
	st := Status{Name: c.cfg.Name, Protocol: c.cfg.Protocol, Addr: c.cfg.Addr(), Permanent: c.cfg.Permanent}
	c.mu.Lock()
	defer c.mu.Unlock()
	st.State = c.state
	if c.lastErr != nil {
		st.LastError = c.lastErr.Error()
	}
	st.BufferedMessages = len(c.pending)
	st.BufferedBytes = c.queuedBytesLocked()
	if s := c.sess; s != nil {
		st.UpSince = s.started
		st.BufferedMessages += s.ob.Pending()
		st.AwaitingReply = len(s.inflight)
	}
	st.ReceivedMessages, st.ReceivedBytes = len(c.recv), c.recvBytes
	return st
}

// StatusPage returns the channels in configuration order, from offset, at most limit of them, and how
// many there are.
func (s *Set) StatusPage(offset, limit int) (page []Status, total int) {
	total = len(s.order)
	if offset < 0 || offset >= total || limit <= 0 {
		return nil, total
	}
	for _, c := range s.order[offset:min(total, offset+limit)] {
		page = append(page, c.Status())
	}
	return page, total
}
