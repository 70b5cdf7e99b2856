// Package status tests the admin listener's status page: its JSON API with plain HTTP clients, and the page
// itself in headless Chromium (chromedp), against an engine with live traffic on real sockets.
package status

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/switchboard/switchboard/engine/esl/esltest"
	"github.com/switchboard/switchboard/internal/testutil"
	"github.com/switchboard/switchboard/tests/harness"
)

// deadline bounds every poll: generous, it only catches a hang.
const deadline = 15 * time.Second

// api does one request to the admin listener and returns the status, the body and the headers.
func api(t *testing.T, method, url string, hdr map[string]string) (int, []byte, http.Header) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		if k == "Host" {
			req.Host = v
			continue
		}
		req.Header.Set(k, v)
	}
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, body, resp.Header
}

// getJSON GETs url, expects 200 and decodes the body into v.
func getJSON(t *testing.T, url string, v any) []byte {
	t.Helper()
	code, body, hdr := api(t, "GET", url, nil)
	if code != http.StatusOK {
		t.Fatalf("GET %s: %d %s", url, code, body)
	}
	if ct := hdr.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("GET %s: Content-Type %q", url, ct)
	}
	if err := json.Unmarshal(body, v); err != nil {
		t.Fatalf("GET %s: %v\n%s", url, err, body)
	}
	return body
}

// page is a list answer of /api.
type page[T any] struct {
	Total     int  `json:"total"`
	Offset    int  `json:"offset"`
	Limit     int  `json:"limit"`
	Items     []T  `json:"items"`
	Truncated bool `json:"truncated"`
}

type conn struct {
	ID          string    `json:"id"`
	Remote      string    `json:"remote"`
	Rooms       []string  `json:"rooms"`
	RoomsCount  int       `json:"rooms_count"`
	Age         float64   `json:"age_s"`
	ConnectedAt time.Time `json:"connected_at"`
	Pending     int       `json:"pending_actions"`
	Requests    int       `json:"requests"`
}

type room struct {
	Name    string `json:"name"`
	Members int    `json:"members"`
	First   []struct {
		ID string `json:"id"`
	} `json:"first_members"`
}

// waitJSON polls url until ok accepts what it decodes.
func waitJSON[T any](t *testing.T, url string, ok func(T) bool) T {
	t.Helper()
	var v T
	var body []byte
	if !testutil.Poll(deadline, func() bool {
		v = *new(T)
		body = getJSON(t, url, &v)
		return ok(v)
	}) {
		t.Fatalf("GET %s never answered as expected; last:\n%s", url, body)
	}
	return v
}

// client is an actionhero socket client.
type client struct {
	c  net.Conn
	rd *bufio.Reader
}

// connect opens a socket connection and reads the welcome line.
func connect(t *testing.T, addr string) *client {
	t.Helper()
	c := harness.Dial(t, addr)
	cl := &client{c: c, rd: bufio.NewReader(c)}
	if line := cl.line(t); !strings.Contains(line, `"welcome"`) {
		t.Fatalf("welcome: %s", line)
	}
	return cl
}

func (cl *client) line(t *testing.T) string {
	t.Helper()
	line, err := cl.rd.ReadString('\n')
	if err != nil {
		t.Fatalf("socket read: %v", err)
	}
	return line
}

// do sends one request line and returns the reply line.
func (cl *client) do(t *testing.T, req string) string {
	t.Helper()
	if _, err := io.WriteString(cl.c, req+"\n"); err != nil {
		t.Fatal(err)
	}
	return cl.line(t)
}

// join adds the client to a room, failing the test unless the server says OK.
func (cl *client) join(t *testing.T, name string) {
	t.Helper()
	if reply := cl.do(t, "roomAdd "+name); !strings.Contains(reply, `"status":"OK"`) {
		t.Fatalf("roomAdd %q: %s", name, reply)
	}
}

// holdFlow answers and waits, so a call stays in flight until the caller hangs up.
const holdFlow = `local sb = require "switchboard"
sb.flow("hold", function(session)
  session:answer()
  session:sleep(60000)
end)
`

// startCall plays a call to the hold flow until the returned stop is called (the caller hangs up).
func startCall(t *testing.T, eslAddr, uuid, caller string) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := esltest.Run(ctx, esltest.Call{Addr: eslAddr, Path: "hold", Async: true, Full: true, UUID: uuid, Caller: caller,
			Vars: map[string]string{"caller_id_name": "Ada Lovelace"}, HangupAfter: time.Minute})
		done <- err
	}()
	var once bool
	stop = func() {
		if once {
			return
		}
		once = true
		cancel()
		select {
		case <-done:
		case <-time.After(deadline):
			t.Errorf("call %s did not end", uuid)
		}
	}
	t.Cleanup(stop)
	return stop
}

func must(t *testing.T, cond bool, format string, args ...any) {
	t.Helper()
	if !cond {
		t.Fatalf(format, args...)
	}
}

func url(addr, path string) string { return fmt.Sprintf("http://%s%s", addr, path) }
