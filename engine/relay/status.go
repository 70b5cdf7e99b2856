package relay

import (
	"context"
	"net"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// StallAfter is how long a logged-in center with messages waiting may go without taking any (nothing
// written to it, nothing acknowledged) before the status page calls it stalled.
const StallAfter = 10 * time.Second

// Center states on the status page.
const (
	CenterUp      = "up"
	CenterDown    = "down"
	CenterStalled = "stalled"
)

// Status is the relay as the status page shows it.
type Status struct {
	ID           string         `json:"id"`
	Guaranteed   bool           `json:"guaranteed"`
	Journal      string         `json:"journal,omitempty"` // local or jetstream (guaranteed mode)
	Role         string         `json:"role,omitempty"`    // jetstream: active or standby
	JournalBytes int64          `json:"journal_bytes"`
	Connections  int            `json:"connections"` // application connections, logged in or not
	Rules        int            `json:"rules"`
	Centers      []CenterStatus `json:"centers"`
}

// CenterStatus is one center link.
type CenterStatus struct {
	Name  string `json:"name"`
	Addr  string `json:"addr"`
	State string `json:"state"` // up, down or stalled
	// Queued counts the messages waiting for the center: its queue (non-guaranteed mode), or the journal
	// entries past its cursor (guaranteed mode; entries routed to other centers only are counted too).
	Queued      int64     `json:"queued"`
	QueuedBytes int64     `json:"queued_bytes"` // non-guaranteed mode
	Sent        uint64    `json:"sent"`
	Acked       uint64    `json:"acked"`
	Rejected    uint64    `json:"rejected"`
	Dropped     uint64    `json:"dropped"`
	Connects    uint64    `json:"connects"`
	LastError   string    `json:"last_error"`
	LastErrorAt time.Time `json:"last_error_at"`
	IdleSeconds float64   `json:"idle_s"` // since the center last took or acknowledged a message (while messages wait)
}

// AppStatus is one logged-in application session.
type AppStatus struct {
	Login       string `json:"login"`
	Remote      string `json:"remote"`
	QueuedBytes int64  `json:"queued_bytes"` // statuses and E lines it has not read yet
}

// centerStatus is what a Center remembers for the status page: its last failure, and when it last made
// progress, as seen by the status snapshots (the hot path is not touched).
type centerStatus struct {
	mu         sync.Mutex
	lastErr    string
	lastErrAt  time.Time
	progress   uint64    // sent + acknowledged, at the last snapshot
	progressAt time.Time // when progress last changed (or the center last had nothing waiting)
}

// noteDialError is the dialer's OnDialError: a failed connection attempt.
func (c *Center) noteDialError(err error, _ time.Duration) { c.noteError(err) }

func (c *Center) noteError(err error) {
	if err == nil {
		return
	}
	c.status.mu.Lock()
	c.status.lastErr, c.status.lastErrAt = err.Error(), time.Now()
	c.status.mu.Unlock()
}

// observedSession is session, remembering how it ended.
func (c *Center) observedSession(ctx context.Context, conn net.Conn) error {
	err := c.session(ctx, conn)
	if ctx.Err() == nil {
		c.noteError(err)
	}
	return err
}

// Status returns the relay's state now; now is the snapshot's clock.
func (r *Relay) Status(now time.Time) Status {
	st := Status{ID: r.cfg.ID, Guaranteed: r.journal != nil, Centers: make([]CenterStatus, 0, len(r.centers))}
	if r.journal != nil {
		st.JournalBytes = r.journal.Size()
		st.Journal = JournalLocal
	}
	if r.js != nil {
		st.Journal, st.Role = JournalJetStream, "standby"
		if r.Active() {
			st.Role = "active"
		}
	}
	if t := r.table.Load(); t != nil {
		st.Rules = len(t.Rules())
	}
	r.mu.Lock()
	st.Connections = len(r.clients)
	r.mu.Unlock()
	for _, c := range r.centers {
		cs := CenterStatus{Name: c.Name, Addr: r.CenterAddr(c.Name), State: CenterDown,
			Sent: counterValue(c.out), Acked: counterValue(c.acksOK), Rejected: counterValue(c.acksErr),
			Dropped: counterValue(c.dropped), Connects: counterValue(c.connects)}
		if r.journal != nil {
			cs.Queued = r.journal.Backlog(c.Name)
		} else {
			cs.Queued, cs.QueuedBytes = c.queued.Load(), c.qbytes.Load()
		}
		progress := cs.Sent + cs.Acked + cs.Rejected
		c.status.mu.Lock()
		cs.LastError, cs.LastErrorAt = c.status.lastErr, c.status.lastErrAt
		if progress != c.status.progress || cs.Queued == 0 || c.status.progressAt.IsZero() {
			c.status.progress, c.status.progressAt = progress, now
		}
		idle := now.Sub(c.status.progressAt)
		c.status.mu.Unlock()
		if c.Connected() {
			cs.State = CenterUp
			if cs.Queued > 0 {
				cs.IdleSeconds = idle.Seconds()
				if idle >= StallAfter {
					cs.State = CenterStalled
				}
			}
		}
		st.Centers = append(st.Centers, cs)
	}
	return st
}

// AppsPage returns the logged-in applications sorted by login id, from offset, at most limit of them, and
// how many there are.
func (r *Relay) AppsPage(offset, limit int) (page []AppStatus, total int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	logins := make([]string, 0, len(r.sessions))
	for login := range r.sessions {
		logins = append(logins, login)
	}
	sort.Strings(logins)
	total = len(logins)
	if offset < 0 || offset >= total || limit <= 0 {
		return nil, total
	}
	for _, login := range logins[offset:min(total, offset+limit)] {
		cl := r.sessions[login]
		page = append(page, AppStatus{Login: login, Remote: cl.conn.RemoteAddr().String(), QueuedBytes: cl.queued.Load()})
	}
	return page, total
}

// counterValue reads a Prometheus counter (a few hundred nanoseconds: for snapshots, not hot paths).
func counterValue(c prometheus.Counter) uint64 {
	var m dto.Metric
	if c == nil || c.Write(&m) != nil || m.Counter == nil {
		return 0
	}
	return uint64(m.Counter.GetValue())
}
