package socket

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchboard/switchboard/internal/testutil"
)

// An action run inline by the reader that does not finish soon hands reading to another goroutine: a
// request sent (in a write of its own) while it blocks is answered first.
func TestStalledInlineActionHandsOverReading(t *testing.T) {
	release := make(chan struct{})
	started := make(chan struct{}, 1)
	ts := startServer(t, func(_ *Config, o *Options) {
		a := o.Actions.(ActionMap)
		a["block"] = &ActionFunc{ActionInfo{Name: "block"}, func(ctx context.Context, c *Conn, p Params) (any, error) {
			started <- struct{}{}
			select {
			case <-release:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
			return Object{{"released", true}}, nil
		}}
	})
	c := dial(t, ts.addr)
	c.line() // welcome
	c.send("block\n")
	<-started
	c.send("randomNumber\n")
	expectShape(t, c.line(), `{"randomNumber":0.25,"stringRandomNumber":"Your random number is 0.25","context":"response","messageId":"UUID","messageCount":2}`)
	close(release)
	expectShape(t, c.line(), `{"released":true,"context":"response","messageId":"UUID","messageCount":1}`)
	// The connection goes on with its new reader; the old goroutine has ended with its action.
	expectShape(t, c.do("randomNumber"), `{"randomNumber":0.25,"stringRandomNumber":"Your random number is 0.25","context":"response","messageId":"UUID","messageCount":3}`)
}

// A connection whose reading moved on from a stalled inline action still ends cleanly: quit answers the
// action (here at its time limit), says goodbye and closes; shutting down answers a stalled action before
// the goodbye.
func TestHandedOverConnectionEnds(t *testing.T) {
	started := make(chan struct{}, 2)
	release := make(chan struct{})
	ts := startServer(t, func(cfg *Config, o *Options) {
		cfg.ActionTimeout = 300 * time.Millisecond
		a := o.Actions.(ActionMap)
		a["block"] = &ActionFunc{ActionInfo{Name: "block"}, func(ctx context.Context, c *Conn, p Params) (any, error) {
			started <- struct{}{}
			select {
			case <-release:
				return Object{{"released", true}}, nil
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}}
	})
	c := dial(t, ts.addr)
	c.line()
	c.send("block\n")
	<-started
	expectShape(t, c.do("paramView action"), `{"status":"OK","context":"response","data":"block","messageId":"UUID","messageCount":2}`)
	c.send("quit\n")
	expectShape(t, c.line(), `{"error":"the action block did not finish within its time limit of 300ms","context":"response","messageId":"UUID","messageCount":1}`)
	expectShape(t, c.line(), `{"status":"Bye!","context":"api"}`)
	c.expectEOF()

	d := dial(t, ts.addr)
	d.line()
	d.send("block\n")
	<-started
	expectShape(t, d.do("paramView action"), `{"status":"OK","context":"response","data":"block","messageId":"UUID","messageCount":2}`)
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		done <- ts.Shutdown(ctx)
	}()
	testutil.WaitFor(t, "Shutdown to start", ts.shutting.Load)
	close(release)
	expectShape(t, d.line(), `{"released":true,"context":"response","messageId":"UUID","messageCount":1}`)
	expectShape(t, d.line(), `{"status":"Bye!","context":"api"}`)
	d.expectEOF()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// Made-up messageIds are UUIDs, different for every request and every connection.
func TestGeneratedMessageIDsAreDistinct(t *testing.T) {
	ts := startServer(t, nil)
	re := regexp.MustCompile(`"messageId":"([0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12})"`)
	seen := map[string]bool{}
	for range 2 {
		c := dial(t, ts.addr)
		c.line()
		for range 50 {
			m := re.FindStringSubmatch(c.do("randomNumber"))
			if m == nil || seen[m[1]] {
				t.Fatalf("messageId %v missing or repeated", m)
			}
			seen[m[1]] = true
		}
	}
}

// An action may answer with an object it encoded itself; its members are spliced into the reply.
func TestEncodedObjectResult(t *testing.T) {
	ts := startServer(t, func(_ *Config, o *Options) {
		a := o.Actions.(ActionMap)
		a["enc"] = &ActionFunc{ActionInfo{Name: "enc"}, func(ctx context.Context, c *Conn, p Params) (any, error) {
			return EncodedObject(`{"a":1,"b":"x"}`), nil
		}}
		a["empty"] = &ActionFunc{ActionInfo{Name: "empty"}, func(ctx context.Context, c *Conn, p Params) (any, error) {
			return EncodedObject(`{}`), nil
		}}
		a["broken"] = &ActionFunc{ActionInfo{Name: "broken"}, func(ctx context.Context, c *Conn, p Params) (any, error) {
			return EncodedObject(`[1]`), nil
		}}
	})
	c := dial(t, ts.addr)
	c.line()
	expectShape(t, c.do("enc"), `{"a":1,"b":"x","context":"response","messageId":"UUID","messageCount":1}`)
	expectShape(t, c.do("empty"), `{"context":"response","messageId":"UUID","messageCount":2}`)
	expectShape(t, c.do("broken"), `{"error":"the action's result cannot be sent: socket: EncodedObject is not a JSON object","context":"response","messageId":"UUID","messageCount":3}`)
}

func (c *client) do(req string) string {
	c.t.Helper()
	c.send(req + "\n")
	return c.line()
}

// A client that sends simultaneous_actions requests at once and waits for all the replies before the
// next batch never hears "too many pending requests": an action frees its slot before it replies.
func TestFullBatchesNeverOverTheLimit(t *testing.T) {
	ts := startServer(t, nil)
	c := dial(t, ts.addr)
	c.line()
	batch := strings.Repeat("randomNumber\n", ts.Config().SimultaneousActions)
	for i := 0; i < 200; i++ {
		c.send(batch)
		for j := 0; j < ts.Config().SimultaneousActions; j++ {
			if got := c.line(); strings.Contains(got, `"error"`) {
				t.Fatalf("batch %d reply %d: %s", i, j, got)
			}
		}
	}
}

// Requests pipelined before quit are answered before the goodbye (the reference drops them).
func TestQuitAnswersPendingRequests(t *testing.T) {
	ts := startServer(t, nil)
	c := dial(t, ts.addr)
	c.line()
	c.send("sleepTest\nrandomNumber\nquit\n")
	got := []string{c.line(), c.line()}
	both := got[0] + got[1]
	if !strings.Contains(both, `"sleepDuration":200`) || !strings.Contains(both, `"randomNumber":`) {
		t.Fatalf("a pending reply was lost or the goodbye came first: %q", got)
	}
	expectShape(t, c.line(), `{"status":"Bye!","context":"api"}`)
	c.expectEOF()
}

// A reply the socket took whole leaves its buffer to the connection's next action (Conn.ReplyBuffer); the
// replies stay exact, one reused buffer after another, and a reply above maxSpareReply is not kept.
func TestReplyBufferReused(t *testing.T) {
	var reused, calls atomic.Int64
	ts := startServer(t, func(_ *Config, o *Options) {
		a := o.Actions.(ActionMap)
		a["enc"] = &ActionFunc{ActionInfo{Name: "enc", Inputs: []Input{{Name: "n"}}}, func(ctx context.Context, c *Conn, p Params) (any, error) {
			b := c.ReplyBuffer()
			if len(b) != 0 {
				return nil, fmt.Errorf("ReplyBuffer has %d bytes in it", len(b))
			}
			if cap(b) > 0 {
				reused.Add(1)
			}
			calls.Add(1)
			n, _ := p.Get("n")
			size, _ := strconv.Atoi(fmt.Sprint(n))
			b = append(b, `{"n":`...)
			b = strconv.AppendInt(b, int64(calls.Load()), 10)
			b = append(b, `,"pad":"`...)
			b = append(b, strings.Repeat("p", size)...)
			return EncodedObject(append(b, `"}`...)), nil
		}}
	})
	c := dial(t, ts.addr)
	c.line()
	for i := 1; i <= 20; i++ {
		expectShape(t, c.do(`{"action":"enc","params":{"action":"enc","n":3}}`),
			fmt.Sprintf(`{"n":%d,"pad":"ppp","context":"response","messageId":"UUID","messageCount":%d}`, i, i))
	}
	// the requests after the first find the previous reply's buffer (the test client reads each reply
	// before it sends the next, so the socket took them whole): all 19 when every action runs inline on
	// the reader; on a loaded machine an action can stall past stallAfter and be answered by a worker,
	// which keeps its buffer only after the write, when the next request may already have started
	if got := reused.Load(); got < 15 || got > 19 {
		t.Fatalf("%d of 20 actions got a reused buffer, want 19 (at least 15 on a loaded machine)", got)
	}
	// a reply bigger than maxSpareReply is not kept for the next action
	pad := maxSpareReply + 100
	if got := c.do(fmt.Sprintf(`{"action":"enc","params":{"action":"enc","n":%d}}`, pad)); !strings.Contains(got, strings.Repeat("p", pad)+`"`) {
		t.Fatalf("big reply: %.80s...", got)
	}
	before := reused.Load()
	expectShape(t, c.do(`{"action":"enc","params":{"action":"enc","n":1}}`),
		`{"n":22,"pad":"p","context":"response","messageId":"UUID","messageCount":22}`)
	if reused.Load() != before {
		t.Fatal("the buffer of a reply above maxSpareReply was kept")
	}
}
