package channel

import (
	"bufio"
	"context"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/sirupsen/logrus"
	"github.com/sirupsen/logrus/hooks/test"

	"github.com/switchboard/switchboard/engine/bus"
	"github.com/switchboard/switchboard/internal/testutil"
)

// upstream is a loopback server that can be killed and restarted on the same port.
type upstream struct {
	t       *testing.T
	addr    string
	handle  func(c net.Conn)
	accepts atomic.Int64

	mu    sync.Mutex
	ln    net.Listener
	conns map[net.Conn]bool
	wg    sync.WaitGroup
}

func newUpstream(t *testing.T, handle func(c net.Conn)) *upstream {
	u := &upstream{t: t, addr: "127.0.0.1:0", handle: handle}
	u.start()
	t.Cleanup(u.kill)
	return u
}

func (u *upstream) start() {
	var ln net.Listener
	var err error
	// the old port may linger for a moment
	if !testutil.Poll(time.Second, func() bool { ln, err = net.Listen("tcp", u.addr); return err == nil }) {
		u.t.Fatal(err)
	}
	u.mu.Lock()
	u.ln, u.addr, u.conns = ln, ln.Addr().String(), map[net.Conn]bool{}
	u.mu.Unlock()
	u.wg.Add(1)
	go func() {
		defer u.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			u.accepts.Add(1)
			u.mu.Lock()
			u.conns[c] = true
			u.mu.Unlock()
			u.wg.Add(1)
			go func() {
				defer u.wg.Done()
				defer c.Close()
				u.handle(c)
			}()
		}
	}()
}

func (u *upstream) kill() {
	u.mu.Lock()
	if u.ln != nil {
		u.ln.Close()
	}
	for c := range u.conns {
		c.Close()
	}
	u.mu.Unlock()
	u.wg.Wait()
}

func (u *upstream) port() int { return u.ln.Addr().(*net.TCPAddr).Port }

func echo(c net.Conn) { _, _ = io.Copy(c, c) }

type fixture struct {
	set    *Set
	bus    *bus.Bus
	events chan Event
	in     chan any
	hook   *test.Hook
	reg    *prometheus.Registry
}

func startSet(t *testing.T, cfg Config, tr func(channel, dir string) Transform) *fixture {
	t.Helper()
	logger, hook := test.NewNullLogger()
	logger.SetLevel(logrus.DebugLevel)
	f := &fixture{bus: bus.New(bus.Options{}), events: make(chan Event, 64), in: make(chan any, 1024), hook: hook,
		reg: prometheus.NewRegistry()}
	t.Cleanup(f.bus.Close)
	if cfg.TopicIn != "" {
		sub, err := f.bus.Subscribe(cfg.TopicIn, func(m bus.Message) { f.in <- m.Payload })
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(sub.Close)
	}
	set, err := New([]Config{cfg}, Options{Bus: f.bus, Log: logrus.NewEntry(logger), Metrics: f.reg,
		Transform: tr, OnEvent: func(ev Event) { f.events <- ev }})
	if err != nil {
		t.Fatal(err)
	}
	if err := set.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := set.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	f.set = set
	return f
}

func (f *fixture) event(t *testing.T, up bool) Event {
	t.Helper()
	select {
	case ev := <-f.events:
		if ev.Up != up {
			t.Fatalf("got event up=%v (%v), want up=%v", ev.Up, ev.Err, up)
		}
		return ev
	case <-time.After(10 * time.Second):
		t.Fatalf("no channel event up=%v", up)
	}
	return Event{}
}

func (f *fixture) recv(t *testing.T) any {
	t.Helper()
	select {
	case m := <-f.in:
		return m
	case <-time.After(10 * time.Second):
		t.Fatal("nothing published on topic_in")
	}
	return nil
}

func textConfig(u *upstream) Config {
	c := DefaultConfig()
	c.Name, c.Host, c.Port, c.Permanent = "echo", "127.0.0.1", u.port(), true
	c.RedirectIn, c.RedirectOut, c.TopicIn, c.TopicOut = true, true, "echo.in", "echo.out"
	c.ReconnectionTimeout = 500 * time.Millisecond
	return c
}

func TestTextChannelEchoAndTransforms(t *testing.T) {
	u := newUpstream(t, echo)
	cfg := textConfig(u)
	cfg.Delimiter = "\x01"
	cfg.ShowMessages = true
	f := startSet(t, cfg, func(ch, dir string) Transform {
		return TransformFunc(func(ctx context.Context, m Message) (Message, bool, error) {
			s := m.Payload.(string)
			if s == "drop" {
				return m, false, nil
			}
			m.Payload = s + "|" + dir
			return m, true, nil
		})
	})
	f.event(t, true)
	f.bus.Publish("echo.out", "drop")
	f.bus.Publish("echo.out", "hello")
	if got := f.recv(t); got != "hello|out|in" {
		t.Fatalf("got %q", got)
	}
	ch, _ := f.set.Channel("echo")
	if st, _ := ch.State(); st != StateUp {
		t.Fatalf("state %s", st)
	}
	got, err := ch.Request(context.Background(), "ping", 5*time.Second)
	if err != nil || got != "ping|out|in" {
		t.Fatalf("request: %q %v", got, err)
	}
	if v := metricValue(ch.m.msgsOut); v != 2 {
		t.Errorf("messages out = %v, want 2 (one dropped by the transform)", v)
	}
	if v := metricValue(ch.m.dropped("transform")); v != 1 {
		t.Errorf("dropped{transform} = %v, want 1", v)
	}
	found := false
	for _, e := range f.hook.AllEntries() {
		if e.Message == "message in" && e.Data["channel"] == "echo" && e.Data["message"] == `"hello|out"` {
			found = true
		}
	}
	if !found {
		t.Error("showmessages: no 'message in' log line with the channel name and the escaped message")
	}
}

func TestReconnectKeepsBufferedMessagesInOrder(t *testing.T) {
	u := newUpstream(t, echo)
	cfg := textConfig(u)
	cfg.ReconnectionTimeout = time.Second
	cfg.SendBuffer = 8
	f := startSet(t, cfg, nil)
	f.event(t, true)
	f.bus.Publish("echo.out", "before")
	if got := f.recv(t); got != "before" {
		t.Fatalf("got %q", got)
	}
	u.kill()
	down := f.event(t, false)
	downAt := time.Now()
	if down.Err == nil || !strings.Contains(down.Err.Error(), "closed by peer") {
		t.Errorf("down error: %v", down.Err)
	}
	ch, _ := f.set.Channel("echo")
	for i := 0; i < 10; i++ {
		f.bus.Publish("echo.out", fmt.Sprintf("m%d", i))
	}
	testutil.WaitFor(t, "the condition", func() bool { return metricValue(ch.m.dropped("buffer_full")) == 2 })
	if v := metricValue(ch.m.buffered); v != 8 {
		t.Errorf("buffered = %v, want 8", v)
	}
	u.start()
	f.event(t, true)
	took := time.Since(downAt)
	t.Logf("reconnected %v after the break (reconnection_timeout %v)", took, cfg.ReconnectionTimeout)
	// Acceptance: within reconnection_timeout + 10 %, plus scheduling slack on a loaded machine.
	if took > cfg.ReconnectionTimeout*11/10+300*time.Millisecond {
		t.Errorf("reconnected after %v, want <= %v", took, cfg.ReconnectionTimeout*11/10)
	}
	for i := 0; i < 8; i++ {
		if got := f.recv(t); got != fmt.Sprintf("m%d", i) {
			t.Fatalf("message %d: got %q", i, got)
		}
	}
	if v := metricValue(ch.m.reconnects); v != 1 {
		t.Errorf("reconnects = %v", v)
	}
}

func TestHTTPChannel(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("/page", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Path", r.URL.Path)
		fmt.Fprint(w, "<html>page body</html>")
	})
	mux.HandleFunc("/chunked", func(w http.ResponseWriter, r *http.Request) {
		for i := 0; i < 3; i++ {
			fmt.Fprintf(w, "part%d;", i)
			w.(http.Flusher).Flush()
		}
	})
	mux.HandleFunc("/echo", func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.WriteHeader(201)
		fmt.Fprintf(w, "%s %s %s", r.Method, r.Header.Get("X-K"), b)
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: mux}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })

	cfg := DefaultConfig()
	cfg.Name, cfg.Protocol, cfg.Host, cfg.Port, cfg.Permanent = "web", HTTP, "127.0.0.1", ln.Addr().(*net.TCPAddr).Port, true
	cfg.RedirectIn, cfg.RedirectOut, cfg.TopicIn, cfg.TopicOut = true, true, "http.response", "http.request"
	f := startSet(t, cfg, nil)
	f.event(t, true)
	f.bus.Publish("http.request", "GET /page")
	resp := f.recv(t).(map[string]any)
	if resp["status"] != int64(200) || resp["body"] != "<html>page body</html>" || resp["headers"].(map[string]any)["X-Path"] != "/page" {
		t.Fatalf("response %v", resp)
	}
	ch, _ := f.set.Channel("web")
	r, err := ch.Request(context.Background(), "GET /chunked", 5*time.Second)
	if err != nil || r.(map[string]any)["body"] != "part0;part1;part2;" {
		t.Fatalf("chunked: %v %v", r, err)
	}
	f.recv(t) // also published (redirect_in)
	r, err = ch.Request(context.Background(), map[string]any{"method": "POST", "path": "/echo", "body": "x=1",
		"headers": map[string]any{"X-K": "v"}}, 5*time.Second)
	if err != nil || r.(map[string]any)["status"] != int64(201) || r.(map[string]any)["body"] != "POST v x=1" {
		t.Fatalf("post: %v %v", r, err)
	}
	r, err = ch.Request(context.Background(), "GET /missing", 5*time.Second)
	if err != nil || r.(map[string]any)["status"] != int64(404) {
		t.Fatalf("404: %v %v", r, err)
	}
	if _, err := ch.Request(context.Background(), "GET a b c", time.Second); err == nil {
		t.Fatal("bad request accepted")
	}
}

func TestXMLChannel(t *testing.T) {
	u := newUpstream(t, func(c net.Conn) {
		io.WriteString(c, "<?xml version=\"1.0\"?>\n<a>1</a>\n<b x=\"2\"/>\n")
		echo(c)
	})
	cfg := textConfig(u)
	cfg.Protocol = XMLMessages
	f := startSet(t, cfg, nil)
	f.event(t, true)
	if got := f.recv(t); got != `<?xml version="1.0"?>`+"\n<a>1</a>" {
		t.Fatalf("first: %q", got)
	}
	if got := f.recv(t); got != `<b x="2"/>` {
		t.Fatalf("second: %q", got)
	}
	f.bus.Publish("echo.out", "<c><d/></c>")
	if got := f.recv(t); got != "<c><d/></c>" {
		t.Fatalf("echoed: %q", got)
	}
	ch, _ := f.set.Channel("echo")
	if err := ch.Send(context.Background(), "<c>"); err == nil {
		t.Fatal("invalid outbound XML was sent")
	}
	f.bus.Publish("echo.out", "<c>")
	testutil.WaitFor(t, "the condition", func() bool {
		for _, e := range f.hook.AllEntries() {
			if e.Message == "message from topic_out not sent" && strings.Contains(fmt.Sprint(e.Data["error"]), "invalid document") {
				return true
			}
		}
		return false
	})
}

// TestBadUpstreams: each bad stream gives a clear error, a reconnect, and the channel keeps working.
func TestBadUpstreams(t *testing.T) {
	for _, tc := range []struct {
		name, protocol, send, want string
	}{
		{"endless line", TextMessages, strings.Repeat("x", 5000), "message too long"},
		{"invalid xml", XMLMessages, "<a><b></a>", "invalid document"},
		{"lying content-length", HTTP, "HTTP/1.1 200 OK\r\nContent-Length: 500\r\n\r\nonly this", "got 9 of Content-Length 500"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u := newUpstream(t, func(c net.Conn) {
				io.WriteString(c, tc.send)
				if tc.protocol == HTTP {
					c.Close()
					return
				}
				io.Copy(io.Discard, c)
			})
			cfg := textConfig(u)
			cfg.Protocol, cfg.MaxMessageSize, cfg.ReconnectionTimeout = tc.protocol, 1000, 200*time.Millisecond
			f := startSet(t, cfg, nil)
			f.event(t, true)
			if tc.protocol == HTTP {
				f.bus.Publish("echo.out", "GET /")
			}
			down := f.event(t, false)
			if down.Err == nil || !strings.Contains(down.Err.Error(), tc.want) {
				t.Fatalf("down error %v, want %q", down.Err, tc.want)
			}
			f.event(t, true) // reconnected
			testutil.WaitFor(t, "the condition", func() bool { return u.accepts.Load() >= 2 })
		})
	}
}

func TestIdleTimeoutForcesReconnect(t *testing.T) {
	u := newUpstream(t, func(c net.Conn) { io.Copy(io.Discard, c) }) // a peer that never speaks
	cfg := textConfig(u)
	cfg.IdleTimeout, cfg.ReconnectionTimeout = 200*time.Millisecond, 100*time.Millisecond
	f := startSet(t, cfg, nil)
	f.event(t, true)
	down := f.event(t, false)
	if down.Err == nil || !strings.Contains(down.Err.Error(), "idle_timeout") {
		t.Fatalf("down: %v", down.Err)
	}
	f.event(t, true)
}

func TestNonPermanentConnectsOnUseOnly(t *testing.T) {
	var lines atomic.Int64
	u := newUpstream(t, func(c net.Conn) {
		sc := bufio.NewScanner(c)
		for sc.Scan() {
			lines.Add(1)
			fmt.Fprintf(c, "ok %s\n", sc.Text())
			if sc.Text() == "bye" {
				return
			}
		}
	})
	cfg := textConfig(u)
	cfg.Permanent, cfg.RedirectIn, cfg.RedirectOut, cfg.TopicIn, cfg.TopicOut = false, false, false, "", ""
	f := startSet(t, cfg, nil)
	ch, _ := f.set.Channel("echo")
	time.Sleep(100 * time.Millisecond)
	if u.accepts.Load() != 0 {
		t.Fatal("non-permanent channel connected before use")
	}
	r, err := ch.Request(context.Background(), "hi", 5*time.Second)
	if err != nil || r != "ok hi" {
		t.Fatalf("request: %v %v", r, err)
	}
	if r, err = ch.Request(context.Background(), "bye", 5*time.Second); err != nil || r != "ok bye" {
		t.Fatalf("bye: %v %v", r, err)
	}
	f.event(t, true)
	f.event(t, false)
	if st, _ := ch.State(); st != StateDown {
		t.Fatalf("state %s after the peer closed", st)
	}
	time.Sleep(300 * time.Millisecond)
	if u.accepts.Load() != 1 {
		t.Fatalf("non-permanent channel was restored: %d accepts", u.accepts.Load())
	}
	if r, err = ch.Request(context.Background(), "again", 5*time.Second); err != nil || r != "ok again" {
		t.Fatalf("again: %v %v", r, err)
	}
}

func TestNonPermanentConnectFailureDropsAndReports(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close() // nothing listens there now
	cfg := DefaultConfig()
	cfg.Name, cfg.Host, cfg.Port = "gone", "127.0.0.1", port
	f := startSet(t, cfg, nil)
	ch, _ := f.set.Channel("gone")
	if _, err := ch.Request(context.Background(), "x", 5*time.Second); err == nil || !strings.Contains(err.Error(), "dial") {
		t.Fatalf("request to a closed port: %v", err)
	}
	if v := metricValue(ch.m.dropped("connect_failed")); v != 1 {
		t.Errorf("dropped{connect_failed} = %v", v)
	}
}

func metricValue(m prometheus.Metric) float64 {
	var d dto.Metric
	if err := m.Write(&d); err != nil {
		panic(err)
	}
	switch {
	case d.Counter != nil:
		return d.Counter.GetValue()
	case d.Gauge != nil:
		return d.Gauge.GetValue()
	}
	return 0
}

func TestAsymmetricChannel(t *testing.T) {
	// The upstream reads CRLF lines and answers each with an XML document.
	u := newUpstream(t, func(c net.Conn) {
		sc := bufio.NewScanner(c)
		for sc.Scan() {
			fmt.Fprintf(c, "<reply n=%q/>\x01", strings.TrimSuffix(sc.Text(), "\r"))
		}
	})
	cfg := textConfig(u)
	cfg.Protocol = Asymmetric
	cfg.Inbound = Framing{Protocol: XMLMessages, Delimiter: "\x01", ShowPackets: true}
	cfg.Outbound = Framing{Protocol: TextMessages, Delimiter: "\r\n", ShowPackets: true}
	f := startSet(t, cfg, nil)
	f.event(t, true)
	ch, _ := f.set.Channel("echo")
	r, err := ch.Request(context.Background(), "one", 5*time.Second)
	if err != nil || r != `<reply n="one"/>` {
		t.Fatalf("got %q, %v", r, err)
	}
	// The writer logs a packet after writing it, so the reply may come first: poll.
	testutil.WaitFor(t, "the condition", func() bool {
		var in, out bool
		for _, e := range f.hook.AllEntries() {
			in = in || (e.Message == "packet in" && e.Data["packet"] == `"<reply n=\"one\"/>\x01"`)
			out = out || (e.Message == "packet out" && e.Data["packet"] == `"one\r\n"`)
		}
		return in && out
	})
}

func TestTLSChannel(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "secure ", r.Host)
	}))
	t.Cleanup(srv.Close)
	ca := filepath.Join(t.TempDir(), "ca.pem")
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	if err := os.WriteFile(ca, pemBytes, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.Name, cfg.Protocol, cfg.Host = "tls", HTTP, "127.0.0.1"
	cfg.Port = srv.Listener.Addr().(*net.TCPAddr).Port
	cfg.Permanent, cfg.TLS, cfg.TLSServer, cfg.TLSCA = true, true, "example.com", ca
	f := startSet(t, cfg, nil)
	f.event(t, true)
	ch, _ := f.set.Channel("tls")
	r, err := ch.Request(context.Background(), "GET /", 5*time.Second)
	if err != nil || r.(map[string]any)["body"] != "secure "+cfg.Addr() {
		t.Fatalf("got %v, %v", r, err)
	}
}

// TestRequestSurvivesBreakWhileBuffered: a request made while the channel is down waits in the buffer and is
// answered after the reconnect; a request whose message went out on a connection that broke fails at once.
func TestRequestSurvivesBreakWhileBuffered(t *testing.T) {
	var silent atomic.Bool
	u := newUpstream(t, func(c net.Conn) {
		sc := bufio.NewScanner(c)
		for sc.Scan() {
			if silent.Load() {
				continue // swallow: the reply never comes
			}
			fmt.Fprintf(c, "re %s\n", sc.Text())
		}
	})
	cfg := textConfig(u)
	cfg.RedirectIn, cfg.RedirectOut, cfg.TopicIn, cfg.TopicOut = false, false, "", ""
	cfg.ReconnectionTimeout = 200 * time.Millisecond
	f := startSet(t, cfg, nil)
	f.event(t, true)
	ch, _ := f.set.Channel("echo")
	silent.Store(true)
	lostErr := make(chan error, 1)
	go func() {
		_, err := ch.Request(context.Background(), "lost", 10*time.Second)
		lostErr <- err
	}()
	testutil.WaitFor(t, "the condition", func() bool { return metricValue(ch.m.msgsOut) == 1 })
	u.kill()
	f.event(t, false)
	if err := <-lostErr; err == nil || !strings.Contains(err.Error(), "connection lost before the reply") {
		t.Fatalf("request on the broken connection: %v", err)
	}
	silent.Store(false)
	got := make(chan any, 1)
	go func() {
		r, err := ch.Request(context.Background(), "later", 10*time.Second)
		if err != nil {
			r = err
		}
		got <- r
	}()
	testutil.WaitFor(t, "the condition", func() bool { return metricValue(ch.m.buffered) == 1 })
	u.start()
	f.event(t, true)
	if r := <-got; r != "re later" {
		t.Fatalf("buffered request: %v", r)
	}
}
