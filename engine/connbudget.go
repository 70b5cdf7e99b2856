package engine

import (
	"github.com/sirupsen/logrus"
)

// Connection caps derived from the process's file descriptor limit, so that a connection flood on one
// port cannot take every descriptor and lock out the other listeners and the admin port. A cap left at 0
// ("auto": socket.max_connections, relay.max_connections, esl.max_calls) becomes the part's share:
//
//	limit   = RLIMIT_NOFILE (soft limit as the process runs; Go raises it to the hard limit at start)
//	reserve = 64                                  the process: stdio, epoll, timers, logs, script loads
//	        + admin.max_connections               the admin listener's own cap
//	        + 16 per listening part               refused peers being told why (transport holds ≤ 16)
//	        + 16 + 4 per relay center             center links, journal segments, message log, routes watcher
//	        + 4 per channel                       active sockets and their reconnections
//	share   = (limit - reserve) / listening parts (socket, relay, esl: those enabled with a listener)
//	socket.max_connections = share / 2            a connection may hold a public file open as well
//	relay.max_connections  = share
//	esl.max_calls          = share
//
// Each cap is at least 1. docs/operations.md ("Connection caps") repeats this.
const (
	fdProcessReserve = 64
	fdPerListener    = 16 // transport's maxRefusing
	fdRelayBase      = 16
	fdPerCenter      = 4
	fdPerChannel     = 4
	fdPerSocketConn  = 2
	fdPerRelayConn   = 1
	fdPerESLCall     = 1
)

// connBudget is the outcome of the formula above for one configuration.
type connBudget struct {
	limit   uint64 // 0: unknown (caps stay as configured)
	reserve int
	share   int // descriptors per listening part
	parts   int
}

// newConnBudget computes the budget of cfg under a descriptor limit (0: unknown).
func newConnBudget(cfg Config, limit uint64) connBudget {
	b := connBudget{limit: limit}
	if limit == 0 {
		return b
	}
	b.reserve = fdProcessReserve
	if cfg.Admin.Listen != "" {
		b.reserve += cfg.Admin.MaxConnections + fdPerListener
	}
	if cfg.Socket.Enabled {
		b.parts++
	}
	if cfg.Relay.Enabled {
		b.reserve += fdRelayBase + fdPerCenter*len(cfg.Relay.Centers)
		if !cfg.Relay.ListenDisabled() {
			b.parts++
		}
	}
	if cfg.ESL.Enabled {
		b.parts++
	}
	b.reserve += fdPerListener*b.parts + fdPerChannel*len(cfg.Channels)
	if b.parts > 0 && uint64(b.reserve) < limit {
		b.share = int(min(limit-uint64(b.reserve), 1<<40)) / b.parts
	}
	return b
}

// capFor returns the cap of a part whose configured cap is configured (0 = auto), each
// connection taking perConn descriptors, and logs how it was chosen.
func (b connBudget) capFor(log *logrus.Entry, key string, configured, perConn int) int {
	if b.limit == 0 {
		if configured == 0 {
			log.WithField("key", key).Warn("the file descriptor limit is unknown: " + key + " 0 leaves the part without a connection cap")
		}
		return configured
	}
	auto := max(b.share/perConn, 1)
	fields := logrus.Fields{"key": key, "fd_limit": b.limit, "fd_reserve": b.reserve, "fd_share": b.share}
	if configured == 0 {
		fields["cap"] = auto
		l := log.WithFields(fields)
		if b.share/perConn < 1 {
			l.Warn("the file descriptor limit leaves no room for this part; raise it (ulimit -n) or lower other caps")
		} else {
			l.Info("connection cap derived from the file descriptor limit")
		}
		return auto
	}
	if configured > auto {
		fields["cap"], fields["share_cap"] = configured, auto
		log.WithFields(fields).Warn(key + " is above this part's share of file descriptors: a flood may exhaust them and lock out the other listeners and the admin port")
	}
	return configured
}

// connBudget returns the budget of the engine's configuration under the process's descriptor limit.
func (e *Engine) connBudget() connBudget {
	limit, _ := openFileLimit()
	return newConnBudget(e.cfg, limit)
}
