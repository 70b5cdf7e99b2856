package relay

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/sirupsen/logrus"

	"github.com/switchboard/switchboard/engine/transport"
)

// With relay.journal = jetstream several relay nodes (engines with the same relay.id in one cluster) share
// one journal, and one of them at a time is active: it holds the lease, the key "active" of a KV bucket
// whose entries expire relay.jetstream.lease_ttl after they were last written. The active node renews it
// every lease_ttl/3; it stops being active (its center links and applications are cut, appends not yet
// stored fail) once lease_ttl*3/4 has passed since the last renewal it sent that succeeded, which is
// before the key can expire, so two nodes are never active at once as long as their clocks run at the
// same rate. A standby node tries to create the key every lease_ttl/5: after the active node dies it
// takes over within lease_ttl + lease_ttl/5 plus the time to read the journal's state. A node that
// shuts down deletes the key, so a standby takes over at once. The journal's writes are fenced too: each
// states the sequence it expects to follow (see jsWriter).

// lease is this node's hold on the active role.
type lease struct {
	kv    jetstream.KeyValue
	node  string
	ttl   time.Duration
	epoch uint64 // the key's revision when this node created it: names the term in journal records
	rev   uint64 // the key's revision this node wrote last (hold's, then release's)
	log   *logrus.Entry

	mu    sync.Mutex
	until time.Time // when this node must consider the lease lost without a renewal
}

// valid says whether the lease still holds (it may be renewed after; a false is final for the term).
func (l *lease) valid() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return time.Now().Before(l.until)
}

func (l *lease) deadline() time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.until
}

const leaseKey = "active"

// acquire waits until this node holds the lease (or ctx ends); holder is told who holds it meanwhile.
func (j *jsJournal) acquire(ctx context.Context, holder func(string)) (*lease, error) {
	ttl := j.cfg.JetStream.LeaseTTL
	l := &lease{kv: j.leaseKV, node: j.node, ttl: ttl, log: j.log}
	poll := max(ttl/5, 50*time.Millisecond)
	var lastLog time.Time
	last := ""
	for {
		sent := time.Now()
		cctx, cancel := context.WithTimeout(ctx, max(ttl/2, time.Second))
		rev, err := l.kv.Create(cctx, leaseKey, []byte(l.node))
		cancel()
		if err == nil {
			l.rev, l.epoch, l.until = rev, rev, sent.Add(ttl*3/4)
			return l, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if errors.Is(err, jetstream.ErrKeyExists) {
			gctx, cancel := context.WithTimeout(ctx, max(ttl/2, time.Second))
			e, gerr := l.kv.Get(gctx, leaseKey)
			cancel()
			if gerr == nil {
				h := string(e.Value())
				holder(h)
				if h != last {
					j.log.WithField("active", h).Info("relay standby: another node is active")
					last = h
				}
			}
		} else if time.Since(lastLog) > 5*time.Second {
			j.log.WithError(err).Warn("relay standby: the lease bucket cannot be reached")
			lastLog = time.Now()
		}
		t := time.NewTimer(poll)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		}
	}
}

// hold renews the lease until ctx ends (nil) or the lease is lost (an error saying why).
func (l *lease) hold(ctx context.Context) error {
	tick := time.NewTicker(max(l.ttl/12, 20*time.Millisecond))
	defer tick.Stop()
	lastSent := time.Now()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		now := time.Now()
		until := l.deadline()
		if now.After(until) {
			return fmt.Errorf("lease not renewed for %v (relay.jetstream.lease_ttl %v)", now.Sub(until.Add(-l.ttl*3/4)).Round(time.Millisecond), l.ttl)
		}
		if now.Sub(lastSent) < l.ttl/3 {
			continue
		}
		lastSent = now
		// never blocked past until: a renewal that cannot be made in time means the lease is lost
		deadline := now.Add(max(l.ttl/4, 20*time.Millisecond))
		if until.Before(deadline) {
			deadline = until
		}
		cctx, cancel := context.WithDeadline(ctx, deadline)
		rev, err := l.kv.Update(cctx, leaseKey, []byte(l.node), l.rev)
		if err != nil && isWrongSequence(err) {
			// a renewal whose answer was lost may have been stored: the key still names this node if no
			// other took it (another node can only create it once it expired or was deleted)
			if e, gerr := l.kv.Get(cctx, leaseKey); gerr == nil && string(e.Value()) == l.node {
				l.rev = e.Revision()
				rev, err = l.kv.Update(cctx, leaseKey, []byte(l.node), l.rev)
			}
		}
		cancel()
		switch {
		case err == nil:
			l.rev = rev
			l.mu.Lock()
			l.until = now.Add(l.ttl * 3 / 4)
			l.mu.Unlock()
		case ctx.Err() != nil:
			return nil
		case isWrongSequence(err) || errors.Is(err, jetstream.ErrKeyNotFound):
			return fmt.Errorf("the lease was taken by another node: %w", err)
		default:
			l.log.WithError(err).Debug("lease not renewed (trying again)")
		}
	}
}

// release gives the lease up, so a standby takes over at once.
func (l *lease) release() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	err := l.kv.Delete(ctx, leaseKey, jetstream.LastRevision(l.rev))
	if err != nil && isWrongSequence(err) {
		// a renewal cut short by the end of hold may have been stored: the key is still this node's if it
		// holds its name
		if e, gerr := l.kv.Get(ctx, leaseKey); gerr == nil && string(e.Value()) == l.node {
			err = l.kv.Delete(ctx, leaseKey, jetstream.LastRevision(e.Revision()))
		}
	}
	if err != nil {
		l.log.WithError(err).Debug("lease not released (it expires)")
	}
}

// Active reports whether this relay node is the active one (always true with the local journal).
func (r *Relay) Active() bool { return r.js == nil || r.active.Load() }

// runCluster is the life of a node with relay.journal = jetstream, until ctx ends: set the stream and
// buckets up, wait for the lease, be active while it is held, and start over.
func (r *Relay) runCluster(ctx context.Context) {
	j := r.js
	backoff := 250 * time.Millisecond
	var lastLog time.Time
	for {
		err := j.setup(ctx)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return
		}
		if time.Since(lastLog) > 5*time.Second {
			r.log.WithError(err).Warn("relay: JetStream journal not ready (the node stays standby; trying again)")
			lastLog = time.Now()
		}
		if !transport.Sleep(ctx, backoff) {
			return
		}
		backoff = min(2*backoff, 5*time.Second)
	}
	r.log.WithFields(logrus.Fields{"stream": j.names.stream, "node": j.node}).Info("relay: JetStream journal ready; waiting for the active role")
	for ctx.Err() == nil {
		l, err := j.acquire(ctx, func(h string) { r.holder.Store(&h) })
		if err != nil {
			return
		}
		started := time.Now()
		// the lease is renewed from now on, while the journal's state is read (which may take longer than
		// the lease) and for as long as the term lasts
		hctx, hcancel := context.WithCancel(ctx)
		lostCh := make(chan error, 1)
		go func() { lostCh <- l.hold(hctx) }()
		term, err := r.activate(ctx, l, started)
		if err != nil {
			hcancel()
			<-lostCh
			r.log.WithError(err).Error("relay: could not become the active node (the lease is given up)")
			l.release()
			if !transport.Sleep(ctx, j.cfg.JetStream.LeaseTTL) {
				return
			}
			continue
		}
		lost := <-lostCh
		hcancel()
		r.deactivate(term, lost)
		if lost == nil {
			l.release()
			return
		}
	}
}

// relayTerm is what runs while this node is active.
type relayTerm struct {
	cancel context.CancelFunc
	done   chan struct{}
}

// activate reads the journal's state and starts the center links and the journal's upkeep; the log says
// the node is active before the first login can be taken (started is when the lease was won).
func (r *Relay) activate(ctx context.Context, l *lease, started time.Time) (*relayTerm, error) {
	j := r.js
	actx, cancel := context.WithTimeout(ctx, max(j.cfg.JetStream.LeaseTTL, 30*time.Second))
	defer cancel()
	var sink *objectSink
	if r.objects != nil {
		sink = r.objects.sink
	}
	if err := j.activate(actx, l.epoch, sink); err != nil {
		return nil, err
	}
	if !l.valid() {
		// reading the state took longer than the lease could be kept (NATS unreachable meanwhile)
		j.deactivate(actx, errLostRole)
		return nil, errors.New("relay: the lease was lost while the journal's state was read")
	}
	for _, c := range r.centers {
		c.slot = j.Slot(c.Name)
	}
	tctx, tcancel := context.WithCancel(ctx)
	t := &relayTerm{cancel: tcancel, done: make(chan struct{})}
	go func() {
		defer close(t.done)
		var wg sync.WaitGroup
		for _, c := range r.centers {
			wg.Go(func() { c.run(tctx) })
		}
		wg.Go(func() { j.keep(tctx, r, time.Second) })
		wg.Wait()
	}()
	r.log.WithFields(logrus.Fields{"node": j.node, "epoch": l.epoch, "took": time.Since(started).Round(time.Millisecond).String()}).
		Warn("relay: this node is now the active relay node")
	r.active.Store(true)
	return t, nil
}

// deactivate ends a term: logins are refused from now on; when the lease was lost, appends not stored
// fail and the applications are disconnected (they send again to the active node); the center links
// stop; cursors and the object index are written a last time.
func (r *Relay) deactivate(t *relayTerm, lost error) {
	r.active.Store(false)
	j := r.js
	if lost != nil {
		r.log.WithError(lost).Error("relay: this node is no longer the active relay node: applications are disconnected, center links stop")
		if w := j.writer(); w != nil {
			w.Stop(fmt.Errorf("%w: %v", errLostRole, lost))
		}
		r.mu.Lock()
		for cl := range r.clients {
			cl.stop()
		}
		r.mu.Unlock()
	}
	t.cancel()
	<-t.done
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	j.deactivate(ctx, ErrJournalClosed)
}

// standbyText is the refusal a standby node gives a login.
func (r *Relay) standbyText() string {
	h := r.holder.Load()
	if h == nil || *h == "" {
		return fmt.Sprintf("relay node %s is standby (no node is active yet): try again, or another relay node", r.js.node)
	}
	return fmt.Sprintf("relay node %s is standby: relay node %s is active", r.js.node, *h)
}
