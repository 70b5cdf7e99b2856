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
)

// rawHTTP is a loopback HTTP server written by hand, so that a test can send exactly the bytes a fault needs.
// serve is called once per connection with a reader of requests; it returns when it wants the connection
// closed.
func rawHTTP(t *testing.T, serve func(c net.Conn, r *bufio.Reader, conn int)) *upstream {
	var n atomic.Int64
	return newUpstream(t, func(c net.Conn) {
		serve(c, bufio.NewReader(c), int(n.Add(1)))
	})
}

// reply writes a complete response whose body is the request's path.
func writeReply(c net.Conn, req *http.Request, extra string) {
	body := req.URL.Path
	fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n%s\r\n%s", len(body), extra, body)
}

func httpConfig(u *upstream) Config {
	cfg := DefaultConfig()
	cfg.Name, cfg.Protocol, cfg.Host, cfg.Port, cfg.Permanent = "web", HTTP, "127.0.0.1", u.port(), true
	cfg.ReconnectionTimeout = 200 * time.Millisecond
	return cfg
}

func body(t *testing.T) func(r any, err error) string {
	return func(r any, err error) string {
		t.Helper()
		if err != nil {
			t.Fatalf("request: %v", err)
		}
		m, ok := r.(map[string]any)
		if !ok {
			t.Fatalf("reply %T %v", r, r)
		}
		return fmt.Sprint(m["status"], " ", m["body"])
	}
}

// Item 1: an in transform that drops or fails answers the request it belongs to with that reason, and the
// next request gets its own reply.
func TestInTransformDropKeepsPairing(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("/ok", func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "fine") })
	mux.HandleFunc("/boom", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(500) })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: mux}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	cfg := DefaultConfig()
	cfg.Name, cfg.Protocol, cfg.Host, cfg.Port, cfg.Permanent = "webt", HTTP, "127.0.0.1", ln.Addr().(*net.TCPAddr).Port, true
	f := startSet(t, cfg, func(ch, dir string) Transform {
		if dir != In {
			return nil
		}
		// The documented example: drop everything but 200; a 500 makes the transform fail.
		return TransformFunc(func(ctx context.Context, m Message) (Message, bool, error) {
			switch m.Payload.(map[string]any)["status"] {
			case int64(200):
				return m, true, nil
			case int64(500):
				return m, false, errors.New("transform exploded")
			}
			return m, false, nil
		})
	})
	f.event(t, true)
	ch, _ := f.set.Channel("webt")
	for i := 0; i < 3; i++ {
		_, err := ch.Request(context.Background(), "GET /missing", 5*time.Second)
		if !errors.Is(err, ErrReplyDropped) || !strings.Contains(err.Error(), "reply dropped by the in transform") {
			t.Fatalf("404 dropped by the transform: got %v", err)
		}
		if got := body(t)(ch.Request(context.Background(), "GET /ok", 5*time.Second)); got != "200 fine" {
			t.Fatalf("request after a dropped reply: %q", got)
		}
		_, err = ch.Request(context.Background(), "GET /boom", 5*time.Second)
		if err == nil || !strings.Contains(err.Error(), "in transform: transform exploded") {
			t.Fatalf("500 failing in the transform: got %v", err)
		}
		if got := body(t)(ch.Request(context.Background(), "GET /ok", 5*time.Second)); got != "200 fine" {
			t.Fatalf("request after a failed transform: %q", got)
		}
	}
	if v := metricValue(ch.m.dropped("transform")); v != 3 {
		t.Errorf("dropped{transform} = %v, want 3", v)
	}

	// Same on a text channel.
	u := newUpstream(t, echo)
	tc := textConfig(u)
	tc.Name, tc.RedirectIn, tc.RedirectOut = "text", false, false
	ft := startSet(t, tc, func(ch, dir string) Transform {
		if dir != In {
			return nil
		}
		return TransformFunc(func(ctx context.Context, m Message) (Message, bool, error) {
			return m, m.Payload != "drop", nil
		})
	})
	ft.event(t, true)
	tch, _ := ft.set.Channel("text")
	if _, err := tch.Request(context.Background(), "drop", 5*time.Second); !errors.Is(err, ErrReplyDropped) {
		t.Fatalf("text reply dropped: %v", err)
	}
	if r, err := tch.Request(context.Background(), "keep", 5*time.Second); err != nil || r != "keep" {
		t.Fatalf("text request after a drop: %v %v", r, err)
	}
}

// Item 2: interim 1xx responses are skipped; the final response answers the request.
func TestHTTPInterimResponsesSkipped(t *testing.T) {
	u := rawHTTP(t, func(c net.Conn, r *bufio.Reader, _ int) {
		for {
			req, err := http.ReadRequest(r)
			if err != nil {
				return
			}
			io.Copy(io.Discard, req.Body)
			io.WriteString(c, "HTTP/1.1 100 Continue\r\n\r\n")
			io.WriteString(c, "HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n")
			writeReply(c, req, "")
		}
	})
	f := startSet(t, httpConfig(u), nil)
	f.event(t, true)
	ch, _ := f.set.Channel("web")
	var wg sync.WaitGroup
	errs := make(chan error, 10)
	for i := 0; i < 10; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			path := fmt.Sprintf("/p%d", i)
			r, err := ch.Request(context.Background(), map[string]any{"method": "POST", "path": path, "body": "x",
				"headers": map[string]any{"Expect": "100-continue"}}, 5*time.Second)
			if err != nil {
				errs <- err
				return
			}
			if got := fmt.Sprint(r.(map[string]any)["status"], " ", r.(map[string]any)["body"]); got != "200 "+path {
				errs <- fmt.Errorf("%s answered with %q", path, got)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// Item 3: requests pipelined past a server's close are re-sent (idempotent) or fail with a clear error;
// nothing vanishes, and a server closing after each response is served without reconnection_timeout.
func TestHTTPPipelinePastClose(t *testing.T) {
	for _, tc := range []struct {
		name     string
		announce bool // the last response says Connection: close
		perConn  int
	}{
		{"keepalive_requests 3 announced", true, 3},
		{"closed mid-pipeline unannounced", false, 3},
		{"close after each response", true, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var posts atomic.Int64
			u := rawHTTP(t, func(c net.Conn, r *bufio.Reader, _ int) {
				for i := 1; ; i++ {
					req, err := http.ReadRequest(r)
					if err != nil {
						return
					}
					io.Copy(io.Discard, req.Body)
					if req.Method == "POST" {
						posts.Add(1)
					}
					last := i == tc.perConn
					extra := ""
					if last && tc.announce {
						extra = "Connection: close\r\n"
					}
					writeReply(c, req, extra)
					if last {
						return
					}
				}
			})
			cfg := httpConfig(u)
			cfg.ReconnectionTimeout, cfg.ReconnectMax = time.Hour, time.Hour // waiting for it would fail the test
			cfg.RedirectIn, cfg.RedirectOut, cfg.TopicIn, cfg.TopicOut = true, true, "web.in", "web.out"
			f := startSet(t, cfg, nil)
			f.event(t, true)
			ch, _ := f.set.Channel("web")
			var wg sync.WaitGroup
			errs := make(chan error, 20)
			for i := 0; i < 6; i++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					path := fmt.Sprintf("/r%d", i)
					r, err := ch.Request(context.Background(), "GET "+path, 10*time.Second)
					if err != nil {
						errs <- fmt.Errorf("%s: %w", path, err)
						return
					}
					if got := fmt.Sprint(r.(map[string]any)["body"]); got != path {
						errs <- fmt.Errorf("%s answered with %q", path, got)
					}
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Error(err)
			}
			// drain what redirect_in published for the requests above
			for i := 0; i < 6; i++ {
				f.recv(t)
			}
			// The same through topic_out: six responses arrive on topic_in.
			for i := 0; i < 6; i++ {
				f.bus.Publish("web.out", fmt.Sprintf("GET /t%d", i))
			}
			seen := map[string]bool{}
			for i := 0; i < 6; i++ {
				seen[fmt.Sprint(f.recv(t).(map[string]any)["body"])] = true
			}
			if len(seen) != 6 {
				t.Errorf("topic_in got %v", seen)
			}
			if v := metricValue(ch.m.dropped("connection_closed")); v != 0 {
				t.Errorf("dropped{connection_closed} = %v", v)
			}
		})
	}
}

// Item 3: a POST that the server never answered is not re-sent; its caller gets a clear error.
func TestHTTPNonIdempotentNotResent(t *testing.T) {
	var posts atomic.Int64
	u := rawHTTP(t, func(c net.Conn, r *bufio.Reader, conn int) {
		for {
			req, err := http.ReadRequest(r)
			if err != nil {
				return
			}
			io.Copy(io.Discard, req.Body)
			if req.Method == "POST" {
				posts.Add(1)
				if conn == 1 {
					return // dies with the POST unanswered
				}
			}
			writeReply(c, req, "")
		}
	})
	f := startSet(t, httpConfig(u), nil)
	f.event(t, true)
	ch, _ := f.set.Channel("web")
	_, err := ch.Request(context.Background(), map[string]any{"method": "POST", "path": "/pay", "body": "1"}, 5*time.Second)
	if err == nil || !strings.Contains(err.Error(), "POST is not re-sent") {
		t.Fatalf("unanswered POST: %v", err)
	}
	if got := body(t)(ch.Request(context.Background(), "GET /after", 5*time.Second)); got != "200 /after" {
		t.Fatalf("after: %q", got)
	}
	if n := posts.Load(); n != 1 {
		t.Fatalf("POST sent %d times", n)
	}
}

// Item 6: the caller of a request whose reply broke the framing gets the real reason.
func TestCallerSeesRealReason(t *testing.T) {
	u := rawHTTP(t, func(c net.Conn, r *bufio.Reader, _ int) {
		for {
			req, err := http.ReadRequest(r)
			if err != nil {
				return
			}
			if req.URL.Path == "/big" {
				big := strings.Repeat("b", 3<<20)
				fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(big), big)
				continue
			}
			if req.URL.Path == "/bigchunked" {
				io.WriteString(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
				for i := 0; i < 30; i++ {
					fmt.Fprintf(c, "%x\r\n%s\r\n", 100000, strings.Repeat("c", 100000))
				}
				io.WriteString(c, "0\r\n\r\n")
				continue
			}
			writeReply(c, req, "")
		}
	})
	f := startSet(t, httpConfig(u), nil)
	f.event(t, true)
	ch, _ := f.set.Channel("web")
	for _, p := range []string{"/big", "/bigchunked"} {
		_, err := ch.Request(context.Background(), "GET "+p, 5*time.Second)
		if !errors.Is(err, ErrTooLong) || errors.Is(err, ErrDown) {
			t.Fatalf("%s: got %v, want the size limit", p, err)
		}
		f.event(t, false)
		f.event(t, true)
	}
	if got := body(t)(ch.Request(context.Background(), "GET /small", 5*time.Second)); got != "200 /small" {
		t.Fatalf("after: %q", got)
	}
}

// Item 12: HEAD works (its response has no body) and keeps the pairing of the requests behind it.
func TestHTTPHead(t *testing.T) {
	u := rawHTTP(t, func(c net.Conn, r *bufio.Reader, _ int) {
		for {
			req, err := http.ReadRequest(r)
			if err != nil {
				return
			}
			if req.Method == "HEAD" {
				io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 12345\r\nX-Head: yes\r\n\r\n")
				continue
			}
			writeReply(c, req, "")
		}
	})
	f := startSet(t, httpConfig(u), nil)
	f.event(t, true)
	ch, _ := f.set.Channel("web")
	var wg sync.WaitGroup
	for i := 0; i < 5; i++ {
		wg.Add(2)
		go func() {
			defer wg.Done()
			r, err := ch.Request(context.Background(), "HEAD /h", 5*time.Second)
			if err != nil {
				t.Errorf("HEAD: %v", err)
				return
			}
			m := r.(map[string]any)
			if m["status"] != int64(200) || m["body"] != "" || m["headers"].(map[string]any)["X-Head"] != "yes" {
				t.Errorf("HEAD reply %v", m)
			}
		}()
		go func() {
			defer wg.Done()
			path := fmt.Sprintf("/g%d", i)
			r, err := ch.Request(context.Background(), "GET "+path, 5*time.Second)
			if err != nil || r.(map[string]any)["body"] != path {
				t.Errorf("GET after HEAD: %v %v", r, err)
			}
		}()
	}
	wg.Wait()
}

// Item 12: an absolute URL naming another host is refused unless follow_absolute is set, and then fetched
// from that host; never sent to the configured host with a foreign Host header.
func TestHTTPAbsoluteURL(t *testing.T) {
	var hosts sync.Map
	serveHost := func(name string) *upstream {
		return rawHTTP(t, func(c net.Conn, r *bufio.Reader, _ int) {
			for {
				req, err := http.ReadRequest(r)
				if err != nil {
					return
				}
				hosts.Store(name+" "+req.Host, true)
				b := name + " " + req.URL.RequestURI()
				fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(b), b)
			}
		})
	}
	home, other := serveHost("home"), serveHost("other")
	cfg := httpConfig(home)
	f := startSet(t, cfg, nil)
	f.event(t, true)
	ch, _ := f.set.Channel("web")
	own := fmt.Sprintf("GET http://127.0.0.1:%d/own?q=1", home.port())
	if got := body(t)(ch.Request(context.Background(), own, 5*time.Second)); got != "200 home /own?q=1" {
		t.Fatalf("absolute URL of the channel's own host: %q", got)
	}
	foreign := fmt.Sprintf("GET http://127.0.0.1:%d/x", other.port())
	_, err := ch.Request(context.Background(), foreign, 5*time.Second)
	if err == nil || !strings.Contains(err.Error(), "follow_absolute") {
		t.Fatalf("foreign absolute URL: %v", err)
	}
	hosts.Range(func(k, _ any) bool {
		if k != fmt.Sprintf("home 127.0.0.1:%d", home.port()) {
			t.Errorf("request with a foreign Host header reached the home server: %v", k)
		}
		return true
	})

	cfg.Name, cfg.FollowAbsolute = "follow", true
	ff := startSet(t, cfg, nil)
	ff.event(t, true)
	fch, _ := ff.set.Channel("follow")
	if got := body(t)(fch.Request(context.Background(), foreign, 5*time.Second)); got != "200 other /x" {
		t.Fatalf("followed: %q", got)
	}
	if _, ok := hosts.Load(fmt.Sprintf("other 127.0.0.1:%d", other.port())); !ok {
		t.Fatal("the other server did not see its own Host header")
	}
	if got := body(t)(fch.Request(context.Background(), "GET /home", 5*time.Second)); got != "200 home /home" {
		t.Fatalf("home after a followed URL: %q", got)
	}
}
