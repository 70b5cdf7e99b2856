package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"time"

	"github.com/nats-io/nats.go"
)

// NodeReport is one node's answer to a status request: who it is and what its status function returned.
type NodeReport struct {
	Node      string          `json:"node"`
	Connected bool            `json:"connected"`
	Status    json.RawMessage `json:"status"`
}

// statusGrace is how long Nodes waits for more answers once every listed node answered.
const statusGrace = 50 * time.Millisecond

// maxReportBytes bounds a node's report (the engine's status is small; a list never goes in it).
const maxReportBytes = 256 << 10

// SetStatus sets what this node answers to status requests from other nodes (the engine's /api/status).
// fn runs on a NATS delivery goroutine and must be quick.
func (n *Node) SetStatus(fn func() any) {
	n.statusMu.Lock()
	n.statusFn = fn
	n.statusMu.Unlock()
}

func (n *Node) serveStatus() error {
	_, err := n.nc.Subscribe(n.Subject("node", "status"), func(m *nats.Msg) {
		n.statusMu.Lock()
		fn := n.statusFn
		n.statusMu.Unlock()
		rep := NodeReport{Node: n.id, Connected: n.Connected(), Status: json.RawMessage("null")}
		if fn != nil {
			if raw, err := json.Marshal(fn()); err == nil && len(raw) <= maxReportBytes {
				rep.Status = raw
			}
		}
		raw, _ := json.Marshal(rep)
		if err := m.Respond(raw); err != nil {
			n.log.WithError(err).Debug("cluster: status reply not sent")
		}
	})
	if err != nil {
		return fmt.Errorf("cluster: subscribe %s: %w", n.Subject("node", "status"), err)
	}
	return nil
}

// Nodes asks every node for its status and returns the reports sorted by node id, this node's included.
// It waits for the nodes that heartbeat in the presence set (at most cluster.request_timeout), so a node
// that does not answer is missing from the list and listed in missing.
func (n *Node) Nodes(ctx context.Context) (reports []NodeReport, missing []string, err error) {
	ctx, cancel := n.Context(ctx)
	defer cancel()
	alive, perr := n.members.List(ctx)
	inbox := nats.NewInbox()
	ch := make(chan *nats.Msg, 64)
	sub, err := n.nc.ChanSubscribe(inbox, ch)
	if err != nil {
		return nil, nil, fmt.Errorf("cluster: status request: %w", err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	if err := n.nc.PublishRequest(n.Subject("node", "status"), inbox, nil); err != nil {
		return nil, nil, fmt.Errorf("cluster: status request: %w", err)
	}
	seen := map[string]bool{}
	// Without the presence list, replies are gathered for a quarter of the timeout. With it, until every
	// listed node answered and no other answer came for statusGrace (the list, read from a watcher while
	// nodes renew their keys, may lack a node).
	quiet := time.NewTimer(n.cfg.RequestTimeout / 4)
	defer quiet.Stop()
	if perr == nil && len(alive) > 0 {
		quiet.Stop()
	}
loop:
	for {
		select {
		case m := <-ch:
			if len(m.Data) > maxReportBytes+1024 {
				continue
			}
			var r NodeReport
			if json.Unmarshal(m.Data, &r) != nil || seen[r.Node] {
				continue
			}
			seen[r.Node] = true
			reports = append(reports, r)
			if perr == nil && len(alive) > 0 && allSeen(alive, seen) {
				quiet.Reset(statusGrace)
			}
		case <-quiet.C:
			break loop
		case <-ctx.Done():
			break loop
		}
	}
	for id := range alive {
		if !seen[id] {
			missing = append(missing, id)
		}
	}
	sort.Slice(reports, func(i, j int) bool { return reports[i].Node < reports[j].Node })
	sort.Strings(missing)
	return reports, missing, nil
}

func allSeen(alive map[string][]byte, seen map[string]bool) bool {
	for id := range alive {
		if !seen[id] {
			return false
		}
	}
	return true
}

// heartbeat is the lifetime of Node.beat.
type heartbeat struct {
	stop chan struct{}
	done chan struct{}
}
