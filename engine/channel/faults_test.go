package channel

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/switchboard/switchboard/internal/testutil"
)

// Item 4: a response that never completes fails its request after response_timeout with that reason; the
// connection is reopened and the next request is served.
func TestResponseTimeout(t *testing.T) {
	for _, tc := range []struct{ name, partial string }{
		{"short content-length", "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n0123456789"},
		{"keep-alive without length", "HTTP/1.1 200 OK\r\nConnection: keep-alive\r\n\r\nsome body"},
		{"head never ends", "HTTP/1.1 200 OK\r\nX-Slow: "},
		{"nothing at all", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u := rawHTTP(t, func(c net.Conn, r *bufio.Reader, _ int) {
				for {
					req, err := http.ReadRequest(r)
					if err != nil {
						return
					}
					if req.URL.Path == "/stall" {
						io.WriteString(c, tc.partial)
						io.Copy(io.Discard, r) // and never more
						return
					}
					writeReply(c, req, "")
				}
			})
			cfg := httpConfig(u)
			cfg.ResponseTimeout = 300 * time.Millisecond
			f := startSet(t, cfg, nil)
			f.event(t, true)
			ch, _ := f.set.Channel("web")
			_, err := ch.Request(context.Background(), "GET /stall", 20*time.Second)
			if !errors.Is(err, ErrResponseTimeout) || !strings.Contains(err.Error(), "response_timeout 300ms") {
				t.Fatalf("stalled response: %v", err)
			}
			down := f.event(t, false)
			if !errors.Is(down.Err, ErrResponseTimeout) {
				t.Errorf("down event: %v", down.Err)
			}
			f.event(t, true)
			if got := body(t)(ch.Request(context.Background(), "GET /next", 5*time.Second)); got != "200 /next" {
				t.Fatalf("after the timeout: %q", got)
			}
		})
	}
}

// Item 4 on a text channel: a request whose reply never comes fails after response_timeout.
func TestResponseTimeoutText(t *testing.T) {
	u := newUpstream(t, func(c net.Conn) {
		sc := bufio.NewScanner(c)
		for sc.Scan() {
			if sc.Text() == "mute" {
				io.WriteString(c, "half a li") // no delimiter, ever
				continue
			}
			fmt.Fprintf(c, "re %s\n", sc.Text())
		}
	})
	cfg := textConfig(u)
	cfg.RedirectIn, cfg.RedirectOut, cfg.TopicIn, cfg.TopicOut = false, false, "", ""
	cfg.ResponseTimeout, cfg.ReconnectionTimeout = 300*time.Millisecond, 50*time.Millisecond
	f := startSet(t, cfg, nil)
	f.event(t, true)
	ch, _ := f.set.Channel("echo")
	if r, err := ch.Request(context.Background(), "a", 5*time.Second); err != nil || r != "re a" {
		t.Fatalf("a: %v %v", r, err)
	}
	// Quiet time with nothing due is not a timeout.
	time.Sleep(500 * time.Millisecond)
	if st, _ := ch.State(); st != StateUp {
		t.Fatalf("state %s after a quiet moment", st)
	}
	if _, err := ch.Request(context.Background(), "mute", 20*time.Second); !errors.Is(err, ErrResponseTimeout) {
		t.Fatalf("mute: %v", err)
	}
	f.event(t, false)
	f.event(t, true)
	if r, err := ch.Request(context.Background(), "b", 5*time.Second); err != nil || r != "re b" {
		t.Fatalf("b: %v %v", r, err)
	}
}

// Item 5: a failed connection attempt shows as down with its error and fires channel.down (rate-limited).
func TestConnectFailureVisible(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	for _, tc := range []struct{ name, host, want string }{
		{"closed port", "127.0.0.1", "refused"},
		{"unresolvable host", "nohost.invalid", "nohost.invalid"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.Name, cfg.Host, cfg.Port, cfg.Permanent = "gone", tc.host, port, true
			cfg.ReconnectionTimeout, cfg.ReconnectMax, cfg.DialTimeout = 10*time.Millisecond, 20*time.Millisecond, 3*time.Second
			f := startSet(t, cfg, nil)
			ev := f.event(t, false)
			if ev.Err == nil || !strings.Contains(ev.Err.Error(), tc.want) || !ev.Failed {
				t.Fatalf("down event %+v", ev)
			}
			ch, _ := f.set.Channel("gone")
			st, err := ch.State()
			if st != StateDown || err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("state %s, %v", st, err)
			}
			// Dozens of attempts in the next half second, but at most one more event.
			time.Sleep(500 * time.Millisecond)
			if n := len(f.events); n > 1 {
				t.Errorf("%d more down events in 500ms; want them rate-limited", n)
			}
		})
	}
	t.Run("non-permanent", func(t *testing.T) {
		cfg := DefaultConfig()
		cfg.Name, cfg.Host, cfg.Port = "gone", "127.0.0.1", port
		f := startSet(t, cfg, nil)
		ch, _ := f.set.Channel("gone")
		if err := ch.Send(context.Background(), "x"); err != nil {
			t.Fatal(err)
		}
		ev := f.event(t, false)
		if ev.Err == nil || !strings.Contains(ev.Err.Error(), "refused") {
			t.Fatalf("down event %+v", ev)
		}
		if st, err := ch.State(); st != StateDown || err == nil {
			t.Fatalf("state %s %v", st, err)
		}
	})
}

// Item 7: the send buffer is bounded in bytes.
func TestSendBufferBytes(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	cfg := DefaultConfig()
	cfg.Name, cfg.Host, cfg.Port, cfg.Permanent = "down", "127.0.0.1", port, true
	cfg.ReconnectionTimeout, cfg.ReconnectMax = time.Hour, time.Hour
	cfg.SendBufferBytes = 3 << 20
	f := startSet(t, cfg, nil)
	f.event(t, false)
	ch, _ := f.set.Channel("down")
	big := strings.Repeat("x", 1<<20-1)
	var full int
	for i := 0; i < 60; i++ {
		if err := ch.Send(context.Background(), big); err != nil {
			if !errors.Is(err, ErrBufferFull) || !strings.Contains(err.Error(), "send_buffer_bytes") {
				t.Fatalf("send %d: %v", i, err)
			}
			full++
		}
	}
	if full != 57 {
		t.Fatalf("%d sends refused, want 57 (3 MiB of 1 MiB messages kept)", full)
	}
	if v := metricValue(ch.m.bufferedBytes); v != 3<<20 {
		t.Errorf("buffered_bytes = %v", v)
	}
	if v := metricValue(ch.m.dropped("buffer_full")); v != 57 {
		t.Errorf("dropped{buffer_full} = %v", v)
	}
}

// Item 8: with a heartbeat, a peer that stops answering is detected, and a connection sitting in a stopped
// server's listen queue never shows as up.
func TestHeartbeatDetectsSilentPeer(t *testing.T) {
	var mute atomic.Bool
	var pings atomic.Int64
	u := newUpstream(t, func(c net.Conn) {
		sc := bufio.NewScanner(c)
		for sc.Scan() {
			if mute.Load() {
				continue // stopped: reads, never answers
			}
			if sc.Text() == "PING" {
				pings.Add(1)
				io.WriteString(c, "PONG\n")
				continue
			}
			fmt.Fprintf(c, "re %s\n", sc.Text())
		}
	})
	cfg := textConfig(u)
	cfg.Heartbeat, cfg.HeartbeatReply = "PING", "PONG"
	cfg.HeartbeatInterval, cfg.HeartbeatTimeout = 50*time.Millisecond, 300*time.Millisecond
	cfg.ReconnectionTimeout = 50 * time.Millisecond
	f := startSet(t, cfg, nil)
	f.event(t, true)
	testutil.WaitFor(t, "the condition", func() bool { return pings.Load() >= 3 })
	ch, _ := f.set.Channel("echo")
	// heartbeat replies are consumed: they neither answer requests nor reach topic_in
	if r, err := ch.Request(context.Background(), "x", 5*time.Second); err != nil || r != "re x" {
		t.Fatalf("request between heartbeats: %v %v", r, err)
	}
	if got := f.recv(t); got != "re x" {
		t.Fatalf("topic_in got %q", got)
	}
	mute.Store(true)
	down := f.event(t, false)
	if down.Err == nil || !strings.Contains(down.Err.Error(), "heartbeat") {
		t.Fatalf("down: %v", down.Err)
	}
	// Reconnects land on a peer that still does not answer: never up.
	time.Sleep(700 * time.Millisecond)
	for len(f.events) > 0 {
		if ev := <-f.events; ev.Up {
			t.Fatal("channel.up for a peer that never answered the heartbeat")
		}
	}
	if st, _ := ch.State(); st == StateUp {
		t.Fatal("state up for a peer that never answered")
	}
	mute.Store(false)
	for {
		if ev := f.event(t, true); ev.Up {
			break
		}
	}
	if len(f.in) != 0 {
		t.Fatalf("heartbeat replies reached topic_in: %v", <-f.in)
	}
}

func TestHeartbeatListenQueue(t *testing.T) {
	// A listener that never accepts: the kernel completes the handshake and the connection waits in the
	// listen queue, as with a SIGSTOPped server.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	cfg := DefaultConfig()
	cfg.Name, cfg.Host, cfg.Port, cfg.Permanent = "stopped", "127.0.0.1", ln.Addr().(*net.TCPAddr).Port, true
	cfg.Heartbeat, cfg.HeartbeatInterval, cfg.HeartbeatTimeout = "PING", time.Second, 200*time.Millisecond
	cfg.ReconnectionTimeout = 50 * time.Millisecond
	f := startSet(t, cfg, nil)
	ch, _ := f.set.Channel("stopped")
	if err := ch.Send(context.Background(), "held"); err != nil {
		t.Fatal(err)
	}
	down := f.event(t, false)
	if down.Err == nil || !strings.Contains(down.Err.Error(), "heartbeat") {
		t.Fatalf("down: %+v", down)
	}
	if st, _ := ch.State(); st == StateUp {
		t.Fatal("up before the peer answered")
	}
	// the message waits for a peer that answers
	if v := metricValue(ch.m.buffered); v != 1 {
		t.Fatalf("buffered = %v", v)
	}
}

// Item 8: a server that accepts and closes at once gets a growing backoff, and one warning per interval.
func TestBackoffGrowsOnAcceptAndClose(t *testing.T) {
	var mu sync.Mutex
	var at []time.Time
	u := newUpstream(t, func(c net.Conn) {
		mu.Lock()
		at = append(at, time.Now())
		mu.Unlock()
	})
	cfg := textConfig(u)
	cfg.ReconnectionTimeout, cfg.ReconnectMax = 20*time.Millisecond, 10*time.Second
	f := startSet(t, cfg, nil)
	testutil.WaitFor(t, "the condition", func() bool { mu.Lock(); defer mu.Unlock(); return len(at) >= 6 })
	mu.Lock()
	first, last := at[1].Sub(at[0]), at[5].Sub(at[4])
	mu.Unlock()
	t.Logf("first gap %v, fifth gap %v", first, last)
	// Waits of 20, 40, 80, 160, 320 ms: a fixed retry would keep the fifth gap near 20 ms. (Load only makes
	// gaps longer, so the bound is on the configured wait, not on the first measured gap.)
	if last < 8*cfg.ReconnectionTimeout {
		t.Fatalf("backoff did not grow: first gap %v, fifth gap %v", first, last)
	}
	warns := 0
	for _, e := range f.hook.AllEntries() {
		if e.Level <= 3 { // warn or worse
			warns++
		}
	}
	if warns > 3 {
		t.Errorf("%d warnings for 6 short connections; want them rate-limited", warns)
	}
}

// Item 9: inbound messages with no taker are kept for ch:receive, and counted when they overflow.
func TestReceiveAndNoTaker(t *testing.T) {
	u := newUpstream(t, func(c net.Conn) {
		for i := 0; i < 50; i++ {
			fmt.Fprintf(c, "m%02d\n", i)
		}
		io.Copy(io.Discard, c)
	})
	cfg := textConfig(u)
	cfg.RedirectIn, cfg.RedirectOut, cfg.TopicIn, cfg.TopicOut = false, false, "", ""
	cfg.ReceiveBuffer = 30 * (3 + messageOverhead) // room for 30 messages of 3 bytes
	f := startSet(t, cfg, nil)
	f.event(t, true)
	ch, _ := f.set.Channel("echo")
	testutil.WaitFor(t, "the condition", func() bool { return metricValue(ch.m.dropped("no_taker")) == 20 })
	for i := 0; i < 30; i++ {
		m, err := ch.Receive(context.Background(), time.Second)
		if err != nil || m != fmt.Sprintf("m%02d", i) {
			t.Fatalf("receive %d: %v %v", i, m, err)
		}
	}
	if _, err := ch.Receive(context.Background(), 50*time.Millisecond); !errors.Is(err, ErrNoMessage) {
		t.Fatalf("empty receive: %v", err)
	}
	logged := false
	for _, e := range f.hook.AllEntries() {
		logged = logged || strings.Contains(e.Message, "no taker")
	}
	if !logged {
		t.Error("no log line for messages dropped with no taker")
	}
}

// Item 10: redirect_in needs a connection something opens.
func TestRedirectInOpensTheConnection(t *testing.T) {
	cs, err := parseYAML(t, "channels:\n  - {name: a, host: h, port: 1, redirect_in: true, topic_in: t}\n")
	if err != nil || !cs[0].Permanent {
		t.Fatalf("redirect_in without permanent: %+v %v", cs, err)
	}
	_, err = parseYAML(t, "channels:\n  - {name: a, host: h, port: 1, redirect_in: true, topic_in: t, permanent: false}\n")
	if err == nil || !strings.Contains(err.Error(), "channels[0].permanent: ") || !strings.Contains(err.Error(), "nothing would open the connection") {
		t.Fatalf("explicit permanent: false with redirect_in only: %v", err)
	}
	if _, err := parseYAML(t, "channels:\n  - {name: a, host: h, port: 1, redirect_in: true, topic_in: t, redirect_out: true, topic_out: o, permanent: false}\n"); err != nil {
		t.Fatalf("on-demand channel with both redirects: %v", err)
	}
}

// Shutdown answers every waiting request with ErrStopped: written ones and buffered ones.
func TestShutdownAnswersWaitingRequests(t *testing.T) {
	u := newUpstream(t, func(c net.Conn) { io.Copy(io.Discard, c) }) // never answers
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	closedPort := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	quiet := textConfig(u)
	quiet.Name, quiet.RedirectIn, quiet.RedirectOut, quiet.TopicIn, quiet.TopicOut = "quiet", false, false, "", ""
	down := DefaultConfig()
	down.Name, down.Host, down.Port, down.Permanent = "down", "127.0.0.1", closedPort, true
	logger := logrus.New()
	logger.SetOutput(io.Discard)
	set, err := New([]Config{quiet, down}, Options{Log: logrus.NewEntry(logger)})
	if err != nil {
		t.Fatal(err)
	}
	if err := set.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	qc, _ := set.Channel("quiet")
	dc, _ := set.Channel("down")
	testutil.WaitFor(t, "the condition", func() bool { st, _ := qc.State(); return st == StateUp })
	errs := make(chan error, 2)
	for _, ch := range []*Channel{qc, dc} {
		go func() {
			_, err := ch.Request(context.Background(), "x", time.Minute)
			errs <- err
		}()
	}
	testutil.WaitFor(t, "the condition", func() bool { return metricValue(qc.m.msgsOut) == 1 && metricValue(dc.m.buffered) == 1 })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := set.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		if err := <-errs; !errors.Is(err, ErrStopped) {
			t.Errorf("waiting request at shutdown: %v", err)
		}
	}
	if _, err := qc.Request(context.Background(), "late", time.Second); !errors.Is(err, ErrStopped) {
		t.Errorf("request after shutdown: %v", err)
	}
}

// An http server closing an idle keep-alive connection is not a failure: the channel connects again at once,
// quietly; a server that accepts and closes at once is one.
func TestHTTPIdleCloseIsQuiet(t *testing.T) {
	u := rawHTTP(t, func(c net.Conn, r *bufio.Reader, _ int) {
		c.SetReadDeadline(time.Now().Add(1200 * time.Millisecond)) // its keep-alive timeout
		for {
			req, err := http.ReadRequest(r)
			if err != nil {
				return
			}
			writeReply(c, req, "")
		}
	})
	cfg := httpConfig(u)
	cfg.ReconnectionTimeout, cfg.ReconnectMax = time.Hour, time.Hour
	f := startSet(t, cfg, nil)
	f.event(t, true)
	testutil.WaitFor(t, "the condition", func() bool { return u.accepts.Load() >= 2 }) // closed after 1.2 s, connected again
	if len(f.events) != 0 {
		t.Fatalf("events for an idle close: %+v", <-f.events)
	}
	ch, _ := f.set.Channel("web")
	if got := body(t)(ch.Request(context.Background(), "GET /after-idle", 5*time.Second)); got != "200 /after-idle" {
		t.Fatalf("after an idle close: %q", got)
	}
}

// Item 7: requests written but not yet answered (kept for a re-send) count in send_buffer_bytes too.
func TestSendBufferBytesCountsUnanswered(t *testing.T) {
	u := rawHTTP(t, func(c net.Conn, r *bufio.Reader, _ int) {
		for { // reads every request, answers none
			req, err := http.ReadRequest(r)
			if err != nil {
				return
			}
			io.Copy(io.Discard, req.Body)
		}
	})
	cfg := httpConfig(u)
	cfg.SendBufferBytes = 1 << 20
	f := startSet(t, cfg, nil)
	f.event(t, true)
	ch, _ := f.set.Channel("web")
	body := strings.Repeat("p", 100_000)
	refused := 0
	for i := 0; i < 30; i++ {
		err := ch.Send(context.Background(), map[string]any{"method": "PUT", "path": "/x", "body": body})
		if errors.Is(err, ErrBufferFull) {
			refused++
		} else if err != nil {
			t.Fatal(err)
		}
	}
	if refused < 20 {
		t.Fatalf("%d of 30 PUTs of 100 KB refused with send_buffer_bytes 1 MiB; want at least 20", refused)
	}
}

// A non-permanent http channel to a server that closes after each response: every request is served, and
// between requests the channel is down (idle), not connecting.
func TestOnDemandHTTPCloseEachResponse(t *testing.T) {
	u := rawHTTP(t, func(c net.Conn, r *bufio.Reader, _ int) {
		req, err := http.ReadRequest(r)
		if err != nil {
			return
		}
		writeReply(c, req, "Connection: close\r\n")
	})
	cfg := httpConfig(u)
	cfg.Permanent = false
	f := startSet(t, cfg, nil)
	ch, _ := f.set.Channel("web")
	for round := 0; round < 2; round++ {
		var wg sync.WaitGroup
		for i := 0; i < 4; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				p := fmt.Sprintf("/r%d-%d", round, i)
				if got := body(t)(ch.Request(context.Background(), "GET "+p, 5*time.Second)); got != "200 "+p {
					t.Errorf("%s: %q", p, got)
				}
			}()
		}
		wg.Wait()
		testutil.WaitFor(t, "the condition", func() bool { st, _ := ch.State(); return st == StateDown })
	}
}
