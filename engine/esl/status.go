package esl

import (
	"cmp"
	"slices"
	"time"
)

// CallStatus is what the status page shows of one call in flight.
type CallStatus struct {
	UUID            string    `json:"uuid"`
	Flow            string    `json:"flow"`
	State           string    `json:"state"` // Channel-State of the latest event (CS_EXECUTE, ...)
	Answered        bool      `json:"answered"`
	Caller          string    `json:"caller"`      // Caller-Caller-ID-Number
	CallerName      string    `json:"caller_name"` // Caller-Caller-ID-Name
	Destination     string    `json:"destination"` // Caller-Destination-Number
	Remote          string    `json:"remote"`      // the FreeSWITCH socket
	StartedAt       time.Time `json:"started_at"`
	DurationSeconds float64   `json:"duration_s"`
}

// CallsPage returns the calls in flight (connected, flow chosen), oldest first, from offset, at most limit
// of them, and how many there are.
func (srv *Server) CallsPage(offset, limit int, now time.Time) (page []CallStatus, total int) {
	srv.mu.Lock()
	calls := make([]*Session, 0, len(srv.sessions))
	for s := range srv.sessions {
		calls = append(calls, s)
	}
	srv.mu.Unlock()
	slices.SortFunc(calls, func(a, b *Session) int {
		return cmp.Or(a.started.Compare(b.started), cmp.Compare(a.remote, b.remote))
	})
	total = len(calls)
	if offset < 0 || offset >= total || limit <= 0 {
		return nil, total
	}
	for _, s := range calls[offset:min(total, offset+limit)] {
		// info.Data was set before the session was registered (under srv.mu) and is not written after.
		cs := CallStatus{Remote: s.remote, StartedAt: s.started, DurationSeconds: now.Sub(s.started).Seconds(), State: s.State(),
			Answered: s.Answered()}
		if d := s.info.Data; d != nil {
			cs.Caller, cs.CallerName = d.Get("Caller-Caller-ID-Number"), d.Get("Caller-Caller-ID-Name")
			cs.Destination = d.Get("Caller-Destination-Number")
		}
		s.mu.Lock()
		cs.UUID, cs.Flow = s.logUUID, s.logFlow
		s.mu.Unlock()
		page = append(page, cs)
	}
	return page, total
}
