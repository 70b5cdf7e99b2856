package relay

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"

	"github.com/switchboard/switchboard/engine/transport"
	"github.com/switchboard/switchboard/internal/lifecycle"
)

// Options are a Relay's collaborators.
type Options struct {
	Compile ExprCompiler // compiles route expressions; nil allows only blank/true expressions
	Log     *logrus.Entry
	Metrics prometheus.Registerer
	// Cluster is the NATS cluster the journal uses with relay.journal = jetstream (ignored otherwise).
	Cluster ClusterOptions
}

// Relay accepts AMI applications, acknowledges and routes their messages to
// centers, and (in guaranteed mode) journals them first. Build it with New, Start it, stop it with
// Shutdown; Reload rereads the routes file: it is one of the engine's parts (engine.Part).
type Relay struct {
	cfg         Config
	compile     ExprCompiler
	log         *logrus.Entry
	m           *metrics
	table       atomic.Pointer[Table]
	objects     *ObjectIndex
	follow      FollowMode
	centers     []*Center
	centerNames []string
	journal     journalStore // nil: not guaranteed mode
	js          *jsJournal   // relay.journal = jetstream: the journal, and this node's role
	active      atomic.Bool  // this node holds the lease (relay.journal = jetstream)
	holder      atomic.Pointer[string]
	msgLog      *messageLog

	ln      net.Listener
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	centerW sync.WaitGroup // center links, routes watcher, message log flusher

	mu        sync.Mutex
	clients   map[*client]struct{}
	sessions  map[string]*client        // login I -> latest session
	commands  map[string]string         // command id -> login I
	cmdBytes  int                       // bytes the commands hold (ids, logins, entry overhead)
	requests  map[string]pendingRequest // E request id -> where it came from and went
	reqOrder  []string
	reqBytes  int           // bytes of the ids in reqOrder
	upCh      chan struct{} // closed when a center logs in, then replaced
	reloadMu  sync.Mutex
	routesSrc []byte // the content of the table in use (under reloadMu)
	dropWarn  atomic.Int64
	nakWarn   atomic.Int64
	exprWarn  atomic.Int64
	cmdWarn   atomic.Int64
	shutdown  atomic.Bool
	stop      lifecycle.StopOnce
}

// maxPendingCommands and maxPendingCommandBytes bound the E request ids remembered for routing R back
// (the oldest are forgotten first).
const (
	maxPendingCommands     = 10000
	maxPendingCommandBytes = 4 << 20
)

// maxCommandBytes bounds the command registry (C instructions: command id -> application); a C that would
// pass it gets S=1 until commands are removed (C with L=0).
const maxCommandBytes = 4 << 20

// entryOverhead is what one remembered map entry costs beyond its strings, for byte bounds.
const entryOverhead = 64

// pendingRequest is an E delivered to an application and not answered yet.
type pendingRequest struct {
	center int    // the center that sent the E, where the R goes
	login  string // the application the E went to, the only one whose R is taken
}

// New validates cfg (the relay: section), loads the routes file and opens the journal. Nothing
// listens or dials until Start.
func New(cfg Config, opts Options) (*Relay, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	log := opts.Log
	if log == nil {
		l := logrus.New()
		l.SetOutput(discardWriter{})
		log = logrus.NewEntry(l)
	}
	r := &Relay{cfg: cfg, compile: opts.Compile, log: log.WithField("part", "relay"), m: newMetrics(cfg.MaxAppSeries),
		clients: map[*client]struct{}{}, sessions: map[string]*client{}, commands: map[string]string{},
		requests: map[string]pendingRequest{}, upCh: make(chan struct{})}
	r.centerNames = cfg.CenterNames()
	r.objects = NewObjectIndex(cfg.RoutesCacheSize)
	r.follow, _ = ParseFollowMode(cfg.FollowObjects)
	if err := r.initRoutes(); err != nil {
		return nil, err
	}
	for i, name := range r.centerNames {
		addr, useTLS := centerAddr(cfg.Centers[name])
		d := &transport.Dialer{Addr: addr, Timeout: 5 * time.Second, KeepAlive: cfg.KeepAlive,
			Backoff: transport.Backoff{Initial: 100 * time.Millisecond, Max: 5 * time.Second},
			Log:     r.log.WithField("center", name)}
		if own, ok := cfg.centerTLS(name); ok || useTLS {
			tc, err := centerClientTLS(addr, cfg.CenterCA, own)
			if err != nil {
				return nil, fmt.Errorf("relay: center %s: tls: %w", name, err)
			}
			d.TLS = tc
		}
		c := &Center{Name: name, Index: i, r: r, dialer: d, log: r.log.WithField("center", name),
			queue: make(chan []byte, cfg.CenterQueue), free: make(chan []byte, 16), direct: make(chan []byte, 1024),
			out: r.m.centerOut.WithLabelValues(name), dropped: r.m.dropped.WithLabelValues(name),
			acksOK: r.m.centerAcks.WithLabelValues(name, "ok"), acksErr: r.m.centerAcks.WithLabelValues(name, "error"),
			upGauge: r.m.centerUp.WithLabelValues(name), stalledGauge: r.m.centerStalled.WithLabelValues(name),
			connects: r.m.reconnects.WithLabelValues(name)}
		d.OnDialError = c.noteDialError
		r.centers = append(r.centers, c)
	}
	r.m.queueDepthFns = append(r.m.queueDepthFns,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "switchboard_relay_center_queue_depth",
			Help: "Messages waiting for centers (sum over centers, non-guaranteed mode)."}, func() float64 {
			n := 0
			for _, c := range r.centers {
				n += c.QueueLen()
			}
			return float64(n)
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "switchboard_relay_journal_bytes",
			Help: "Bytes held in journal segments (guaranteed mode)."}, func() float64 {
			if r.journal == nil {
				return 0
			}
			return float64(r.journal.Size())
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "switchboard_relay_client_queue_bytes",
			Help: "Bytes of statuses and E lines waiting for applications to read them (sum over connections)."}, func() float64 {
			r.mu.Lock()
			defer r.mu.Unlock()
			n := int64(0)
			for cl := range r.clients {
				n += cl.queued.Load()
			}
			return float64(n)
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "switchboard_relay_active",
			Help: "1 while this relay node takes applications and drives the centers (always, unless relay.journal is jetstream and another node holds the lease)."}, func() float64 {
			if r.Active() {
				return 1
			}
			return 0
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "switchboard_relay_routes_objects",
			Help: "Objects remembered by the object index (relay.routes_cache_size)."}, func() float64 { return float64(r.objects.Len()) }))
	switch {
	case cfg.Guaranteed && cfg.Journal == JournalJetStream:
		j, err := newJSJournal(cfg, opts.Cluster, r.centerNames, r.log.WithField("journal", "jetstream"))
		if err != nil {
			return nil, err
		}
		j.onDropped = func(center string, n uint64) { r.m.journalDropped.WithLabelValues(center, "limits").Add(float64(n)) }
		j.onResent = func(n int) { r.m.journalResent.Add(float64(n)) }
		if r.objects != nil {
			r.objects.sink = newObjectSink(r.objects, r.log.WithField("journal", "jetstream"))
		}
		r.js, r.journal = j, j
	case cfg.Guaranteed:
		j, err := OpenJournal(cfg.PersistDir, cfg.SegmentBytes, r.centerNames, r.log.WithField("persist_dir", cfg.PersistDir))
		if err != nil {
			return nil, err
		}
		j.OnSync = func(d time.Duration, _ int) { r.m.fsync.Observe(d.Seconds()) }
		r.journal = localJournal{j}
		for _, c := range r.centers {
			c.slot = j.Slot(c.Name)
		}
	}
	if cfg.LogMessages {
		ml, err := openMessageLog(cfg.MessageLog)
		if err != nil {
			r.closeJournal()
			return nil, err
		}
		r.msgLog = ml
	}
	if err := r.m.register(opts.Metrics); err != nil {
		r.closeJournal()
		return nil, err // metrics: ...
	}
	return r, nil
}

// centerClientTLS is the TLS client configuration of a center at addr: verified by its own CA, else by
// relay.center_ca, else by the system roots; presenting its own certificate when it has one.
func centerClientTLS(addr, defaultCA string, own CenterTLSConfig) (*tls.Config, error) {
	host, _, _ := net.SplitHostPort(addr)
	ca := defaultCA
	if own.CA != "" {
		ca = own.CA
	}
	tc, err := transport.ClientTLS(host, ca)
	if err != nil {
		return nil, err
	}
	if own.Cert != "" {
		cert, err := tls.LoadX509KeyPair(own.Cert, own.Key)
		if err != nil {
			return nil, fmt.Errorf("client certificate %s, %s: %w", own.Cert, own.Key, err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

type discardWriter struct{}

func (discardWriter) Write(p []byte) (int, error) { return len(p), nil }

func (r *Relay) closeJournal() { _ = r.shutdownJournal(context.Background()) }

// shutdownJournal closes the local journal within ctx's deadline, or a second past it when that has
// passed already (a stalled center used it up): a disk that does not answer does not hold the exit.
func (r *Relay) shutdownJournal(ctx context.Context) error {
	var err error
	if r.journal != nil {
		jctx := context.WithoutCancel(ctx)
		if d, ok := ctx.Deadline(); ok {
			var cancel context.CancelFunc
			jctx, cancel = context.WithTimeout(jctx, max(time.Until(d), time.Second))
			defer cancel()
		}
		err = r.journal.Shutdown(jctx)
	}
	if r.msgLog != nil {
		r.msgLog.close()
	}
	return err
}

// Table returns the routes table in use.
func (r *Relay) Table() *Table { return r.table.Load() }

// CenterAddr returns the address a center is dialed at.
func (r *Relay) CenterAddr(name string) string {
	addr, _ := centerAddr(r.cfg.Centers[name])
	return addr
}

// Applications returns the ids (login I) of the applications logged in now, sorted.
func (r *Relay) Applications() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]string, 0, len(r.sessions))
	for id := range r.sessions {
		out = append(out, id)
	}
	sort.Strings(out)
	return out
}

// Centers returns the centers by index.
func (r *Relay) Centers() []*Center { return r.centers }

// exprFailed counts and logs an expression evaluation that failed (its rule counted as false): a
// non-boolean result once per rule (it is a mistake in the file, the same for every message), other errors
// at most once a second.
func (r *Relay) exprFailed(rule *Rule, err error) {
	var nb *NotBooleanError
	if errors.As(err, &nb) {
		r.m.exprNotBool.Inc()
		if rule.FirstNotBoolean() {
			r.log.WithFields(logrus.Fields{"route": rule.Name, "line": rule.Line, "expression": rule.Expr, "yields": nb.Yields,
				"value": nb.Value}).Warn("route expression yielded a non-boolean: the rule counts as false (logged once per rule; counted in switchboard_relay_expression_not_boolean_total)")
		}
		return
	}
	r.m.exprErrors.Inc()
	r.warnEvery(&r.exprWarn, r.log.WithFields(logrus.Fields{"route": rule.Name, "line": rule.Line}).WithError(err), "route expression failed")
}

// Start listens (unless the port is -1), starts the center links and the
// routes file watcher, and returns once listening.
func (r *Relay) Start(ctx context.Context) error {
	ctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	r.cancel = cancel
	if !r.cfg.ListenDisabled() {
		lc, err := r.cfg.Section().ListenConfig()
		if err != nil {
			cancel()
			return err
		}
		lc.Log = r.log
		lc.OnRefuse = func(c net.Conn, reason string) {
			var b []byte
			b = AppendStatus(b, time.Now().UnixMilli(), 0, 1, "connection refused: "+reason)
			_, _ = c.Write(append(b, '\n'))
		}
		ln, err := transport.Listen(lc)
		if err != nil {
			cancel()
			return err // listen tcp <addr>: ...
		}
		r.ln = ln
		r.log.WithField("addr", ln.Addr().String()).Info("listening")
	}
	if r.js == nil {
		for _, c := range r.centers {
			r.centerW.Add(1)
			go func() {
				defer r.centerW.Done()
				c.run(ctx)
			}()
		}
	} else {
		// the center links run while this node is active
		r.centerW.Add(1)
		go func() {
			defer r.centerW.Done()
			r.runCluster(ctx)
		}()
	}
	if r.cfg.RoutesFile != "" {
		if err := r.watchRoutes(ctx); err != nil {
			r.log.WithError(err).Warn("routes file not watched; reload with SIGHUP")
		}
	}
	if r.msgLog != nil {
		r.centerW.Add(1)
		go func() {
			defer r.centerW.Done()
			r.msgLog.flushEvery(ctx, 200*time.Millisecond)
		}()
	}
	if len(r.centers) > 0 {
		r.centerW.Add(1)
		go func() {
			defer r.centerW.Done()
			r.watchStalls(ctx)
		}()
	}
	if r.journal != nil && r.js == nil {
		r.centerW.Add(1)
		go func() {
			defer r.centerW.Done()
			r.journal.keep(ctx, r, time.Second)
		}()
	}
	if r.ln != nil {
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			r.acceptLoop(ctx)
		}()
	}
	return nil
}

// Addrs reports the bound listener address.
func (r *Relay) Addrs() map[string]net.Addr {
	if r.ln == nil {
		return map[string]net.Addr{}
	}
	return map[string]net.Addr{"relay": r.ln.Addr()}
}

func (r *Relay) acceptLoop(ctx context.Context) {
	for {
		c, err := r.ln.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			r.log.WithError(err).Warn("accept")
			continue
		}
		cl := newClient(r, c)
		r.mu.Lock()
		if r.shutdown.Load() {
			r.mu.Unlock()
			c.Close()
			continue
		}
		r.clients[cl] = struct{}{}
		r.mu.Unlock()
		r.m.connections.Inc()
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			cl.serve(ctx)
			r.mu.Lock()
			delete(r.clients, cl)
			last := cl.login != "" && r.sessions[cl.login] == cl
			if last {
				delete(r.sessions, cl.login)
			}
			r.mu.Unlock()
			r.m.connections.Dec()
			if last {
				cl.log.Debug("application logged out")
			}
		}()
	}
}

// Shutdown stops accepting, says goodbye to applications (their queued
// statuses are flushed), stops the center links and flushes the journal. It is idempotent (a second call
// waits for the first) and safe on a relay that never started.
func (r *Relay) Shutdown(ctx context.Context) error {
	return r.stop.Do(ctx, func() error { return r.shutdownOnce(ctx) })
}

func (r *Relay) shutdownOnce(ctx context.Context) error {
	r.shutdown.Store(true)
	if r.ln != nil {
		r.ln.Close()
	}
	r.mu.Lock()
	for cl := range r.clients {
		cl.stop()
	}
	r.mu.Unlock()
	done := make(chan struct{})
	go func() {
		r.wg.Wait()
		close(done)
	}()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		err = ctx.Err()
	}
	// centers: give non-guaranteed queues a moment to drain, bounded by ctx (a stalled center drains nothing)
	if r.journal == nil {
		for _, c := range r.centers {
			for c.State() == "up" && c.QueueLen() > 0 && ctx.Err() == nil {
				time.Sleep(5 * time.Millisecond)
			}
		}
	}
	if r.cancel != nil {
		r.cancel()
	}
	// the links stop: a stalled center takes nothing, so its link is cut now (what it did not acknowledge
	// is counted as dropped, or stays in the journal); one blocked writing for less long is cut once ctx ends
	for _, c := range r.centers {
		if c.State() == "stalled" {
			c.log.Warn("shutdown: the center is stalled; its link is cut")
			c.cut()
		}
	}
	stopped := make(chan struct{})
	go func() {
		r.centerW.Wait()
		close(stopped)
	}()
	select {
	case <-stopped:
	case <-ctx.Done():
		for _, c := range r.centers {
			c.cut()
		}
		<-stopped
		if err == nil {
			err = ctx.Err()
		}
	}
	if r.journal == nil {
		// what never left a queue is lost: counted like any other message not delivered
		for _, c := range r.centers {
			if n := c.queued.Load(); n > 0 {
				c.dropped.Add(float64(n))
				c.log.WithField("messages", n).Warn("shutdown: messages still queued for the center are dropped (counted)")
			}
		}
	}
	if jerr := r.shutdownJournal(ctx); jerr != nil {
		r.log.WithError(jerr).Error("shutdown: the journal was not closed")
		if err == nil {
			err = jerr
		}
	}
	r.m.unregister()
	return err
}

// watchStalls shows centers that stop reading: a write blocked for more than a second makes a center
// stalled (logged, switchboard_relay_center_stalled 1, center_up 0) until the write goes through or
// relay.write_timeout cuts the link.
func (r *Relay) watchStalls(ctx context.Context) {
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	stalled := make([]bool, len(r.centers))
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for i, c := range r.centers {
			now := c.State() == "stalled"
			if now == stalled[i] {
				continue
			}
			stalled[i] = now
			if now {
				c.stalledGauge.Set(1)
				c.upGauge.Set(0)
				c.log.WithField("write_timeout", r.cfg.WriteTimeout.String()).Warn("center stalled: it does not read (a write has been blocked for more than a second); the link is cut at relay.write_timeout")
				continue
			}
			c.stalledGauge.Set(0)
			if c.Connected() {
				c.upGauge.Set(1)
			}
			c.log.Info("center no longer stalled")
		}
	}
}

// retainJournal applies retention to the local journal (relay.journal_retention_bytes and _age, per
// center) and removes the segments every center has passed (localJournal.keep runs it when a segment
// starts and every second). What retention drops is counted in
// switchboard_relay_journal_dropped_total{center,reason} and logged.
func (r *Relay) retainJournal(j *Journal, now time.Time) {
	for _, d := range j.Retain(now, r.cfg.JournalRetentionBytes, r.cfg.JournalRetentionAge) {
		r.m.journalDropped.WithLabelValues(d.Center, d.Reason).Add(float64(d.Records))
		bound := "relay.journal_retention_bytes=" + strconv.FormatInt(r.cfg.JournalRetentionBytes, 10)
		if d.Reason == "age" {
			bound = "relay.journal_retention_age=" + r.cfg.JournalRetentionAge.String()
		}
		r.log.WithFields(logrus.Fields{"center": d.Center, "records": d.Records, "from": d.From, "to": d.To, "reason": d.Reason,
			"bound": bound, "configured": !d.Orphan}).Warn("journal retention: records the center had not acknowledged are dropped for it")
	}
	j.Collect()
}

// centerUp wakes logins held by wait_for_center.
func (r *Relay) centerUp() {
	r.mu.Lock()
	close(r.upCh)
	r.upCh = make(chan struct{})
	r.mu.Unlock()
}

func (r *Relay) anyCenterUp() (bool, <-chan struct{}) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range r.centers {
		if c.Connected() {
			return true, nil
		}
	}
	return false, r.upCh
}

// deliverCommand sends a center's E to the application it is for (see
// commandTarget) and remembers the request so that application's R goes back
// to this center. When that application is not connected, or does not read,
// the center gets `R|I=<request>|S=1|M="<reason>"` at once.
func (r *Relay) deliverCommand(c *Center, m *Message) {
	reqID, _ := m.Text("I")
	cmd, _ := m.Text("C")
	typ, _ := m.Text("T")
	var owners []string
	obj := m.lookup("O")
	if obj != nil && typ != "" {
		owners = r.objects.OwnersOf(typ, obj) // before r.mu: the index has its own locks
	}
	r.mu.Lock()
	login, cl, reason := r.commandTarget(cmd, typ, obj, owners)
	if cl != nil && reqID != "" {
		if _, seen := r.requests[reqID]; !seen {
			reqID = strings.Clone(reqID) // m's strings live in the center reader's buffers
			r.reqOrder = append(r.reqOrder, reqID)
			r.reqBytes += len(reqID) + entryOverhead
			for len(r.reqOrder) > maxPendingCommands || r.reqBytes > maxPendingCommandBytes && len(r.reqOrder) > 1 {
				old := r.reqOrder[0]
				delete(r.requests, old)
				r.reqBytes -= len(old) + entryOverhead
				r.reqOrder[0] = ""
				r.reqOrder = r.reqOrder[1:]
			}
		}
		r.requests[reqID] = pendingRequest{center: c.Index, login: login}
	}
	r.mu.Unlock()
	if cl != nil {
		line := AppendHeader(nil, 'E', -1, time.Now().UnixMilli())
		line = AppendParams(line, m.Params)
		if cl.sendLine(line) {
			if len(owners) > 0 {
				r.m.commands.WithLabelValues("object").Inc()
			} else {
				r.m.commands.WithLabelValues("command").Inc()
			}
			return
		}
		if reqID != "" {
			r.takeRequest(reqID, login)
		}
		reason = fmt.Sprintf("application %q does not read: command not delivered", login)
	}
	r.m.commands.WithLabelValues("undelivered").Inc()
	r.warnEvery(&r.cmdWarn, c.log.WithFields(logrus.Fields{"command": cmd, "request": reqID, "reason": reason}),
		"E not delivered (the center got R with S=1)")
	line := AppendHeader(nil, 'R', -1, time.Now().UnixMilli())
	line = AppendParams(line, []Param{{Key: "I", Val: Value{Kind: KindString, S: reqID}},
		{Key: "S", Val: Value{Kind: KindInt, I: 1}},
		{Key: "M", Val: Value{Kind: KindString, S: reason}}})
	if !c.sendDirect(line) {
		c.log.WithField("request", reqID).Warn("center link busy: undelivered-command answer dropped")
	}
}

// commandTarget picks the application an E goes to (under r.mu). An E that
// names an object the index knows (O and T) goes to the application that
// sent that object; when several applications sent the same type and id,
// the one that registered the command wins (connected or not: another one
// may not know the command), else the first connected one by login. Any other E goes to the application that registered the command
// (C). With no connected target, cl is nil and reason says why.
func (r *Relay) commandTarget(cmd, typ string, obj *Value, owners []string) (login string, cl *client, reason string) {
	if len(owners) > 0 {
		login = owners[0]
		if len(owners) > 1 {
			sort.Strings(owners)
			login = owners[0]
			for _, o := range owners {
				if r.sessions[o] != nil {
					login = o
					break
				}
			}
			if cmdOwner := r.commands[cmd]; slices.Contains(owners, cmdOwner) {
				login = cmdOwner
			}
		}
		if cl = r.sessions[login]; cl == nil {
			return login, nil, fmt.Sprintf("application %q that sent %s %s is not connected", login, typ, AppendValue(nil, *obj))
		}
		return login, cl, ""
	}
	login = r.commands[cmd]
	if login == "" {
		return "", nil, fmt.Sprintf("no application owns command %q", cmd)
	}
	if cl = r.sessions[login]; cl == nil {
		return login, nil, fmt.Sprintf("application %q that registered command %q is not connected", login, cmd)
	}
	return login, cl, ""
}

// registerCommand records (C) or removes (C with L=0) the application that owns command id. A new
// command that would take the registry past maxCommandBytes is refused with the reason.
func (r *Relay) registerCommand(id, login string, remove bool) (refused string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	prev, known := r.commands[id]
	if remove {
		if known {
			delete(r.commands, id)
			r.cmdBytes -= len(id) + len(prev) + entryOverhead
		}
		return ""
	}
	if known {
		r.cmdBytes += len(login) - len(prev)
		r.commands[id] = login
		return ""
	}
	cost := len(id) + len(login) + entryOverhead
	if r.cmdBytes+cost > maxCommandBytes {
		return fmt.Sprintf("Too many commands registered (%d of %d bytes): remove some with L=0", r.cmdBytes, maxCommandBytes)
	}
	r.commands[strings.Clone(id)] = login
	r.cmdBytes += cost
	return ""
}

// takeRequest returns the center that sent the E with request id, if that E
// went to application login.
func (r *Relay) takeRequest(id, login string) (*Center, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	p, ok := r.requests[id]
	if !ok || p.login != login {
		return nil, false
	}
	delete(r.requests, id)
	return r.centers[p.center], true
}

// warnEvery logs msg at most once a second per counter.
func (r *Relay) warnEvery(last *atomic.Int64, log *logrus.Entry, msg string) {
	now := time.Now().UnixNano()
	prev := last.Load()
	if now-prev < int64(time.Second) || !last.CompareAndSwap(prev, now) {
		return
	}
	log.Warn(msg)
}

// messageLog writes every message in and out to a file (relay.log_messages).
type messageLog struct {
	mu sync.Mutex
	f  *os.File
	w  *bufio.Writer
}

func openMessageLog(path string) (*messageLog, error) {
	if dir := filepath.Dir(path); dir != "" {
		_ = os.MkdirAll(dir, 0o755)
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("relay.message_log: %w", err)
	}
	return &messageLog{f: f, w: bufio.NewWriterSize(f, 64<<10)}, nil
}

func (l *messageLog) write(dir, peer string, line []byte) {
	l.mu.Lock()
	l.w.WriteString(time.Now().UTC().Format("2006-01-02T15:04:05.000Z "))
	l.w.WriteString(dir)
	l.w.WriteByte(' ')
	l.w.WriteString(peer)
	l.w.WriteByte(' ')
	l.w.Write(line)
	l.w.WriteByte('\n')
	l.mu.Unlock()
}

func (l *messageLog) flushEvery(ctx context.Context, d time.Duration) {
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			l.mu.Lock()
			_ = l.w.Flush()
			l.mu.Unlock()
		}
	}
}

func (l *messageLog) close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	_ = l.w.Flush()
	_ = l.f.Close()
}
