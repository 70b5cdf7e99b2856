package cluster

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// LiveNodes tracks which nodes of the cluster are alive, from the heartbeats every node writes to the
// node list (bucket <name>_nodes, one put every MembersTTL/5): a node is alive while its last heartbeat seen
// is younger than MembersTTL, and gone at once when it leaves cleanly (Shutdown purges its key). A node
// killed with kill -9 is gone within MembersTTL of its death. This node is always alive to itself.
//
// It watches the bucket until ctx ends, and starts the watch again (re-reading every key) when the
// connection to NATS comes back: while NATS is unreachable no heartbeat arrives, so every other node
// looks gone, and Settled is false until a full MembersTTL of watching has passed since.
type LiveNodes struct {
	n     *Node
	clock func() time.Time

	mu       sync.Mutex
	last     map[string]time.Time // node id → when its last heartbeat was written (or seen)
	watching time.Time            // when the current watch read its initial values; zero while none
	done     chan struct{}
}

// WatchNodes starts tracking the live nodes until ctx ends (Done is closed then).
func (n *Node) WatchNodes(ctx context.Context) *LiveNodes {
	l := &LiveNodes{n: n, clock: time.Now, last: map[string]time.Time{}, done: make(chan struct{})}
	go l.run(ctx)
	return l
}

// Done is closed when the watch ended (its ctx ended).
func (l *LiveNodes) Done() <-chan struct{} { return l.done }

// Alive says whether node heartbeats (this node always does).
func (l *LiveNodes) Alive(node string) bool {
	if node == l.n.id {
		return true
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	t, ok := l.last[node]
	return ok && l.clock().Sub(t) < MembersTTL
}

// List returns the live nodes, this one included, sorted.
func (l *LiveNodes) List() []string {
	now := l.clock()
	out := []string{l.n.id}
	l.mu.Lock()
	for id, t := range l.last {
		if id != l.n.id && now.Sub(t) < MembersTTL {
			out = append(out, id)
		}
	}
	l.mu.Unlock()
	slices.Sort(out)
	return out
}

// Settled says whether the watch has run without interruption for MembersTTL: only then does a node that
// looks gone really miss its heartbeats (and not just this node its connection).
func (l *LiveNodes) Settled() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return !l.watching.IsZero() && l.clock().Sub(l.watching) >= MembersTTL && l.n.nc.IsConnected()
}

func (l *LiveNodes) run(ctx context.Context) {
	defer close(l.done)
	for ctx.Err() == nil {
		if l.n.nc.IsConnected() {
			l.watch(ctx)
		}
		l.mu.Lock()
		l.watching = time.Time{}
		l.mu.Unlock()
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// watch follows the bucket until ctx ends, the watcher stops or the connection was re-established.
func (l *LiveNodes) watch(ctx context.Context) {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	rctx, rcancel := l.n.Context(wctx)
	kv, err := l.n.members.bucket(rctx)
	rcancel()
	if err != nil {
		return
	}
	reconnects := l.n.nc.Stats().Reconnects
	w, err := kv.WatchAll(wctx)
	if err != nil {
		return
	}
	defer func() { _ = w.Stop() }()
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	initial := map[string]time.Time{}
	loading := true
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			if l.n.nc.Stats().Reconnects != reconnects || !l.n.nc.IsConnected() {
				return
			}
		case e, ok := <-w.Updates():
			if !ok {
				return
			}
			if e == nil {
				l.mu.Lock()
				l.last, l.watching = initial, l.clock()
				l.mu.Unlock()
				loading = false
				continue
			}
			id, err := DecodeKey(e.Key())
			if err != nil {
				continue
			}
			at := l.clock()
			if c := e.Created(); loading && c.Before(at) {
				at = c // a key read at start was written then, not now
			}
			put := e.Operation() == jetstream.KeyValuePut
			if loading {
				if put {
					initial[id] = at
				} else {
					delete(initial, id)
				}
				continue
			}
			l.mu.Lock()
			if put {
				l.last[id] = at
			} else {
				delete(l.last, id)
			}
			l.mu.Unlock()
		}
	}
}
