package socket

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchboard/switchboard/internal/testutil"
)

// Go versions of the shipped actions, so the protocol is tested without Lua.
func testActions() ActionMap {
	var cacheMu sync.Mutex
	cache := map[string]string{}
	atLeast3 := func(v any) error {
		if s, _ := v.(string); len(s) < 3 {
			return errors.New("inputs should be at least 3 letters long")
		}
		return nil
	}
	return ActionMap{
		"randomNumber": &ActionFunc{ActionInfo{Name: "randomNumber", Description: "I am an API method which will generate a random number"},
			func(ctx context.Context, c *Conn, p Params) (any, error) {
				return Object{{"randomNumber", 0.25}, {"stringRandomNumber", "Your random number is 0.25"}}, nil
			}},
		"cacheTest": &ActionFunc{ActionInfo{Name: "cacheTest", Inputs: []Input{{Name: "key", Required: true, Validate: atLeast3}, {Name: "value", Required: true, Validate: atLeast3}}},
			func(ctx context.Context, c *Conn, p Params) (any, error) {
				key := "cacheTest_" + p.String("key")
				cacheMu.Lock()
				cache[key] = p.String("value")
				size := len(cache)
				delete(cache, key)
				cacheMu.Unlock()
				return Object{{"cacheTestResults", Object{{"saveResp", true}, {"sizeResp", size},
					{"loadResp", Object{{"key", key}, {"value", p.String("value")}}}, {"deleteResp", true}}}}, nil
			}},
		"sleepTest": &ActionFunc{ActionInfo{Name: "sleepTest", Inputs: []Input{{Name: "sleepDuration", Default: "200"}}},
			func(ctx context.Context, c *Conn, p Params) (any, error) {
				var ms int
				fmt.Sscan(p.String("sleepDuration"), &ms)
				select {
				case <-time.After(time.Duration(ms) * time.Millisecond):
				case <-ctx.Done():
					return nil, ctx.Err()
				}
				return Object{{"sleepDuration", ms}}, nil
			}},
		"boom": &ActionFunc{ActionInfo{Name: "boom"}, func(ctx context.Context, c *Conn, p Params) (any, error) {
			return nil, errors.New("boom")
		}},
		"hang": &ActionFunc{ActionInfo{Name: "hang", Timeout: 150 * time.Millisecond}, func(ctx context.Context, c *Conn, p Params) (any, error) {
			<-ctx.Done()
			return nil, ctx.Err()
		}},
	}
}

type testServer struct {
	*Server
	addr string
}

func startServer(t *testing.T, mod func(*Config, *Options)) *testServer {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Listen = "127.0.0.1:0"
	cfg.PublicDir = "testdata/public"
	opts := Options{Actions: testActions(), Verbs: VerbMap{
		"shout": VerbFunc(func(ctx context.Context, c *Conn, args string) (any, error) { return strings.ToUpper(args), nil }),
		"big": VerbFunc(func(ctx context.Context, c *Conn, args string) (any, error) {
			return strings.Repeat("x", 64<<10), nil
		}),
	}}
	if mod != nil {
		mod(&cfg, &opts)
	}
	s, err := New(cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	ts := &testServer{Server: s, addr: s.Addrs()["socket"].String()}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil { // Serve's result included
			t.Errorf("shutdown: %v", err)
		}
	})
	return ts
}

type client struct {
	t *testing.T
	c net.Conn
	r *bufio.Reader
}

func dial(t *testing.T, addr string) *client {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &client{t: t, c: c, r: bufio.NewReader(c)}
}

func (c *client) send(s string) {
	c.t.Helper()
	if _, err := c.c.Write([]byte(s)); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// line reads one reply and checks it is JSON ending in \r\n.
func (c *client) line() string {
	c.t.Helper()
	_ = c.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	s, err := c.r.ReadString('\n')
	if err != nil {
		c.t.Fatalf("read: %v (got %q)", err, s)
	}
	if !strings.HasSuffix(s, "\r\n") {
		c.t.Fatalf("reply %q does not end in \\r\\n", s)
	}
	s = strings.TrimSuffix(s, "\r\n")
	if !json.Valid([]byte(s)) {
		c.t.Fatalf("reply is not JSON: %q", s)
	}
	return s
}

func (c *client) expectEOF() {
	c.t.Helper()
	_ = c.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if s, err := c.r.ReadString('\n'); err != io.EOF {
		c.t.Fatalf("expected EOF, got %q, %v", s, err)
	}
}

var (
	uuidRe = regexp.MustCompile(`[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}`)
	msRe   = regexp.MustCompile(`("(?:connectedAt|sentAt|joinedAt)":)1[0-9]{12}`)
	portRe = regexp.MustCompile(`("remotePort":)[0-9]+`)
)

// shape replaces ids, times and ports so a reply can be compared byte for byte.
func shape(s string) string {
	s = uuidRe.ReplaceAllString(s, "UUID")
	s = msRe.ReplaceAllString(s, "${1}MS")
	return portRe.ReplaceAllString(s, "${1}PORT")
}

func expectShape(t *testing.T, got, want string) {
	t.Helper()
	if shape(got) != want {
		t.Fatalf("reply\n got %s\nwant %s", shape(got), want)
	}
}

func TestSeedSession(t *testing.T) {
	ts := startServer(t, nil)
	c := dial(t, ts.addr)
	expectShape(t, c.line(), `{"welcome":"Hello! Welcome to the switchboard api","context":"api"}`)
	steps := []struct{ send, want string }{
		{"detailsView", `{"status":"OK","context":"response","data":{"id":"UUID","fingerprint":"UUID","remoteIP":"127.0.0.1","remotePort":PORT,"params":{},"connectedAt":MS,"rooms":[],"totalActions":0,"pendingActions":0},"messageId":"UUID","messageCount":1}`},
		{"randomNumber", `{"randomNumber":0.25,"stringRandomNumber":"Your random number is 0.25","context":"response","messageId":"UUID","messageCount":2}`},
		{"cacheTest", `{"error":"key is a required parameter for this action","context":"response","messageId":"UUID","messageCount":3}`},
		{"paramAdd key=myKey", `{"status":"OK","context":"response","messageId":"UUID","messageCount":4}`},
		{"paramAdd value=myValue", `{"status":"OK","context":"response","messageId":"UUID","messageCount":5}`},
		{"paramsView", `{"status":"OK","context":"response","data":{"action":"cacheTest","key":"myKey","value":"myValue"},"messageId":"UUID","messageCount":6}`},
		{"cacheTest", `{"cacheTestResults":{"saveResp":true,"sizeResp":1,"loadResp":{"key":"cacheTest_myKey","value":"myValue"},"deleteResp":true},"context":"response","messageId":"UUID","messageCount":7}`},
		{"roomAdd defaultRoom", `{"status":"OK","context":"response","data":true,"messageId":"UUID","messageCount":8}`},
		{"say defaultRoom hooray!", `{"status":"OK","context":"response","messageId":"UUID","messageCount":9}`},
	}
	var id string
	for _, st := range steps {
		c.send(st.send + "\r\n")
		got := c.line()
		expectShape(t, got, st.want)
		if st.send == "detailsView" {
			var d struct{ Data struct{ ID string } }
			_ = json.Unmarshal([]byte(got), &d)
			id = d.Data.ID
		}
	}
	got := c.line()
	expectShape(t, got, `{"message":"hooray!","room":"defaultRoom","from":"UUID","context":"user","sentAt":MS}`)
	if !strings.Contains(got, `"from":"`+id+`"`) {
		t.Fatalf("broadcast from another id than detailsView's %s: %s", id, got)
	}
	c.send("quit\r\n")
	expectShape(t, c.line(), `{"status":"Bye!","context":"api"}`)
	c.expectEOF()
}

func TestTLSSameProtocol(t *testing.T) {
	cert := testutil.SelfSigned(t).TLS
	ts := startServer(t, func(cfg *Config, o *Options) {
		cfg.Secure = true
		cfg.TLS.Cert, cfg.TLS.Key = "unused", "unused"
		o.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	})
	tc, err := tls.Dial("tcp", ts.addr, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	c := &client{t: t, c: tc, r: bufio.NewReader(tc)}
	expectShape(t, c.line(), `{"welcome":"Hello! Welcome to the switchboard api","context":"api"}`)
	c.send("randomNumber\n")
	expectShape(t, c.line(), `{"randomNumber":0.25,"stringRandomNumber":"Your random number is 0.25","context":"response","messageId":"UUID","messageCount":1}`)
	c.send("exit\n")
	expectShape(t, c.line(), `{"status":"Bye!","context":"api"}`)
}

func TestPipelinedRepliesCarryTheirOwnID(t *testing.T) {
	ts := startServer(t, func(cfg *Config, o *Options) { cfg.SimultaneousActions = 10 })
	c := dial(t, ts.addr)
	c.line()
	var b strings.Builder
	want := map[string]bool{}
	for i := 1; i <= 10; i++ {
		id := fmt.Sprintf("req-%d", i)
		want[id] = true
		switch i % 3 {
		case 0:
			fmt.Fprintf(&b, `{"action":"cacheTest","params":{"messageId":"%s","key":"kkk","value":"vvv"}}`+"\n", id)
		case 1:
			fmt.Fprintf(&b, `{"action":"randomNumber","params":{"messageId":"%s"}}`+"\n", id)
		case 2:
			fmt.Fprintf(&b, `{"action":"sleepTest","params":{"messageId":"%s","sleepDuration":"10"}}`+"\n", id)
		}
	}
	c.send(b.String())
	counts := map[float64]bool{}
	for i := 0; i < 10; i++ {
		var r struct {
			MessageID    string  `json:"messageId"`
			MessageCount float64 `json:"messageCount"`
			Error        string  `json:"error"`
		}
		line := c.line()
		if err := json.Unmarshal([]byte(line), &r); err != nil || r.Error != "" {
			t.Fatalf("reply %s: %v", line, err)
		}
		if !want[r.MessageID] || r.MessageID != fmt.Sprintf("req-%d", int(r.MessageCount)) {
			t.Fatalf("reply does not carry its own request's id: %s", line)
		}
		delete(want, r.MessageID)
		counts[r.MessageCount] = true
	}
	if len(counts) != 10 {
		t.Fatalf("messageCounts not distinct: %v", counts)
	}
	if len(want) != 0 {
		t.Fatalf("no reply for %v", want)
	}
	// The verb race of the reference: roomAdd then an action in one write.
	c.send("paramAdd messageId=m1\nroomAdd defaultRoom\nparamAdd messageId=m2\nparamView messageId\n")
	got := []string{c.line(), c.line(), c.line(), c.line()}
	expectShape(t, got[1], `{"status":"OK","context":"response","data":true,"messageId":"m1","messageCount":12}`)
	expectShape(t, got[3], `{"status":"OK","context":"response","data":"m2","messageId":"m2","messageCount":14}`)
}

func TestVerbs(t *testing.T) {
	ts := startServer(t, nil)
	c := dial(t, ts.addr)
	c.line()
	steps := []struct{ send, want string }{
		{"paramAdd key=a=b", `{"status":"OK","context":"response","messageId":"UUID","messageCount":1}`},
		{"paramView key", `{"status":"OK","context":"response","data":"a","messageId":"UUID","messageCount":2}`},
		{"paramAdd key two words", `{"status":"OK","context":"response","messageId":"UUID","messageCount":3}`},
		{"paramView key", `{"status":"OK","context":"response","data":"two","messageId":"UUID","messageCount":4}`},
		{"paramAdd notAnInput=1", `{"status":"OK","context":"response","messageId":"UUID","messageCount":5}`},
		{"paramView notAnInput", `{"status":"OK","context":"response","messageId":"UUID","messageCount":6}`},
		{"paramAdd key", `{"status":"OK","context":"response","messageId":"UUID","messageCount":7}`},
		{"paramsView", `{"status":"OK","context":"response","data":{},"messageId":"UUID","messageCount":8}`},
		{"paramAdd value=v", `{"status":"OK","context":"response","messageId":"UUID","messageCount":9}`},
		{"paramDelete value", `{"status":"OK","context":"response","messageId":"UUID","messageCount":10}`},
		{"paramAdd value=v", `{"status":"OK","context":"response","messageId":"UUID","messageCount":11}`},
		{"paramsDelete", `{"status":"OK","context":"response","messageId":"UUID","messageCount":12}`},
		{"paramsView", `{"status":"OK","context":"response","data":{},"messageId":"UUID","messageCount":13}`},
		{"roomAdd nowhere", `{"error":"room does not exist","context":"response","messageId":"UUID","messageCount":14}`},
		{"roomView defaultRoom", `{"error":"connection not in this room (defaultRoom)","context":"response","messageId":"UUID","messageCount":15}`},
		{"roomView", `{"error":"connection not in this room ()","context":"response","messageId":"UUID","messageCount":16}`},
		{"roomAdd defaultRoom", `{"status":"OK","context":"response","data":true,"messageId":"UUID","messageCount":17}`},
		{"roomAdd defaultRoom", `{"error":"connection already in this room (defaultRoom)","context":"response","messageId":"UUID","messageCount":18}`},
		{"roomView defaultRoom", `{"status":"OK","context":"response","data":{"room":"defaultRoom","members":{"UUID":{"id":"UUID","joinedAt":MS}},"membersCount":1},"messageId":"UUID","messageCount":19}`},
		{"say defaultRoom", `{"error":"both room and message are required","context":"response","messageId":"UUID","messageCount":20}`},
		{"say otherRoom hi", `{"error":"connection not in this room (otherRoom)","context":"response","messageId":"UUID","messageCount":21}`},
		{"roomLeave defaultRoom", `{"status":"OK","context":"response","data":true,"messageId":"UUID","messageCount":22}`},
		{"roomLeave defaultRoom", `{"error":"connection not in this room (defaultRoom)","context":"response","messageId":"UUID","messageCount":23}`},
		{"shout hello there", `{"status":"OK","context":"response","data":"HELLO THERE","messageId":"UUID","messageCount":24}`},
		{"boom", `{"error":"boom","context":"response","messageId":"UUID","messageCount":25}`},
		{"nothing", `{"error":"unknown action or invalid apiVersion","context":"response","messageId":"UUID","messageCount":26}`},
		{`{"action":`, `{"error":"unknown action or invalid apiVersion","context":"response","messageId":"UUID","messageCount":27}`},
		{"\xff\xfe", `{"error":"unknown action or invalid apiVersion","context":"response","messageId":"UUID","messageCount":28}`},
		{`{"params":{"key":"k"}}`, `{"error":"unknown action or invalid apiVersion","context":"response","messageId":"UUID","messageCount":29}`},
		{`{"action":"cacheTest","params":{"key":"ab","value":"abc"}}`, `{"error":"inputs should be at least 3 letters long","context":"response","messageId":"UUID","messageCount":30}`},
		{`123`, `{"error":"inputs should be at least 3 letters long","context":"response","messageId":"UUID","messageCount":31}`},
		{"file hello.txt", ``},
		{"file ../server.go", `"That file is not found"`},
		{"file /etc/passwd", `"That file is not found"`},
	}
	for _, st := range steps {
		c.send(st.send + "\n")
		if st.want == "" {
			_ = c.c.SetReadDeadline(time.Now().Add(5 * time.Second))
			got, _ := c.r.ReadString('\n')
			if got != "hello from public\n" {
				t.Fatalf("file: got %q", got)
			}
			continue
		}
		expectShape(t, c.line(), st.want)
	}
	c.send("documentation\n")
	var doc struct {
		Data map[string]map[string]struct {
			Name   string
			Inputs map[string]struct{ Required bool }
		}
	}
	if err := json.Unmarshal([]byte(c.line()), &doc); err != nil {
		t.Fatal(err)
	}
	if d := doc.Data["cacheTest"]["1"]; d.Name != "cacheTest" || !d.Inputs["key"].Required {
		t.Fatalf("documentation of cacheTest: %+v", d)
	}
}

func TestFramedFile(t *testing.T) {
	ts := startServer(t, func(cfg *Config, o *Options) { cfg.FileMode = FileFramed })
	c := dial(t, ts.addr)
	c.line()
	c.send("file hello.txt\nfile missing.txt\n")
	expectShape(t, c.line(), `{"status":"OK","context":"response","data":{"file":"hello.txt","length":18,"encoding":"base64","content":"aGVsbG8gZnJvbSBwdWJsaWMK"},"messageId":"UUID","messageCount":1}`)
	expectShape(t, c.line(), `{"error":"That file is not found","context":"response","messageId":"UUID","messageCount":2}`)
}

func TestChatReachesOtherMembers(t *testing.T) {
	ts := startServer(t, nil)
	a, b := dial(t, ts.addr), dial(t, ts.addr)
	a.line()
	b.line()
	a.send("roomAdd defaultRoom\n")
	a.line()
	b.send("roomAdd defaultRoom\n")
	b.line()
	b.send("say defaultRoom   spaced  out  \n")
	expectShape(t, b.line(), `{"status":"OK","context":"response","messageId":"UUID","messageCount":2}`)
	want := `{"message":"  spaced  out  ","room":"defaultRoom","from":"UUID","context":"user","sentAt":MS}`
	expectShape(t, b.line(), want)
	expectShape(t, a.line(), want)
}

type sayDropper struct{}

func (sayDropper) Connect(ctx context.Context, c *Conn)    {}
func (sayDropper) Disconnect(ctx context.Context, c *Conn) {}
func (sayDropper) Say(ctx context.Context, c *Conn, room, text string) (string, bool, error) {
	if text == "drop" {
		return "", false, nil
	}
	return "<" + text + ">", true, nil
}

func TestSayHookRewritesAndDrops(t *testing.T) {
	ts := startServer(t, func(cfg *Config, o *Options) { o.Hooks = sayDropper{} })
	c := dial(t, ts.addr)
	c.line()
	c.send("roomAdd defaultRoom\nsay defaultRoom drop\nsay defaultRoom hi\n")
	c.line()
	expectShape(t, c.line(), `{"status":"OK","context":"response","messageId":"UUID","messageCount":2}`)
	expectShape(t, c.line(), `{"status":"OK","context":"response","messageId":"UUID","messageCount":3}`)
	expectShape(t, c.line(), `{"message":"<hi>","room":"defaultRoom","from":"UUID","context":"user","sentAt":MS}`)
}

func TestTooManyPendingAndOutOfOrder(t *testing.T) {
	ts := startServer(t, nil)
	c := dial(t, ts.addr)
	c.line()
	c.send(strings.Repeat("sleepTest\n", 6) + "randomNumber\n")
	// 6th sleepTest refused at once; randomNumber is the 7th and also over the limit.
	first := c.line()
	expectShape(t, first, `{"error":"you have too many pending requests","context":"response","messageId":"UUID","messageCount":6}`)
	expectShape(t, c.line(), `{"error":"you have too many pending requests","context":"response","messageId":"UUID","messageCount":7}`)
	for i := 0; i < 5; i++ {
		if got := c.line(); !strings.HasPrefix(got, `{"sleepDuration":200,`) {
			t.Fatalf("sleepTest reply %d: %s", i, got)
		}
	}
	// Out of order: a slow action sent first is answered last.
	c.send("paramAdd sleepDuration=300\nsleepTest\nrandomNumber\n")
	c.line()
	if got := c.line(); !strings.HasPrefix(got, `{"randomNumber"`) {
		t.Fatalf("expected randomNumber first, got %s", got)
	}
	if got := c.line(); !strings.HasPrefix(got, `{"sleepDuration":300`) {
		t.Fatalf("expected sleepTest second, got %s", got)
	}
}

func TestHangingActionTimesOutOthersServed(t *testing.T) {
	ts := startServer(t, nil)
	a, b := dial(t, ts.addr), dial(t, ts.addr)
	a.line()
	b.line()
	a.send("hang\n")
	b.send("randomNumber\n")
	expectShape(t, b.line(), `{"randomNumber":0.25,"stringRandomNumber":"Your random number is 0.25","context":"response","messageId":"UUID","messageCount":1}`)
	expectShape(t, a.line(), `{"error":"the action hang did not finish within its time limit of 150ms","context":"response","messageId":"UUID","messageCount":1}`)
}

func TestLimits(t *testing.T) {
	t.Run("max_data_length", func(t *testing.T) {
		ts := startServer(t, func(cfg *Config, o *Options) { cfg.MaxDataLength = 20 })
		c := dial(t, ts.addr)
		c.line()
		c.send(strings.Repeat("a", 41) + "\nrandomNumber\n")
		expectShape(t, c.line(), `{"status":"error","error":"data length is too big (41 received/20 max)","context":"response","messageId":"UUID","messageCount":1}`)
		expectShape(t, c.line(), `{"randomNumber":0.25,"stringRandomNumber":"Your random number is 0.25","context":"response","messageId":"UUID","messageCount":2}`)
	})
	t.Run("10MB without delimiter", func(t *testing.T) {
		ts := startServer(t, nil)
		c, other := dial(t, ts.addr), dial(t, ts.addr)
		c.line()
		other.line()
		chunk := []byte(strings.Repeat("x", 1<<20))
		go func() {
			for i := 0; i < 10; i++ {
				if _, err := c.c.Write(chunk); err != nil {
					return
				}
			}
			_, _ = c.c.Write([]byte("\nrandomNumber\n"))
		}()
		expectShape(t, c.line(), `{"status":"error","error":"data length is too big (more than 1048576 received/1048576 max)","context":"response","messageId":"UUID","messageCount":1}`)
		other.send("randomNumber\n")
		expectShape(t, other.line(), `{"randomNumber":0.25,"stringRandomNumber":"Your random number is 0.25","context":"response","messageId":"UUID","messageCount":1}`)
		expectShape(t, c.line(), `{"randomNumber":0.25,"stringRandomNumber":"Your random number is 0.25","context":"response","messageId":"UUID","messageCount":2}`)
	})
	t.Run("crlf delimiter", func(t *testing.T) {
		ts := startServer(t, func(cfg *Config, o *Options) { cfg.Delimiter = "\r\n" })
		c := dial(t, ts.addr)
		c.line()
		c.send("paramAdd key=a\nb\r\nparamView key\r\n")
		c.line()
		expectShape(t, c.line(), `{"status":"OK","context":"response","data":"a\nb","messageId":"UUID","messageCount":2}`)
	})
	t.Run("bare CR ends a line", func(t *testing.T) {
		ts := startServer(t, nil)
		c := dial(t, ts.addr)
		c.line()
		c.send("randomNumber\rparamView action\r\n")
		got := c.line() + c.line() // the action and the verb may finish in either order
		if !strings.Contains(got, `"messageCount":1}`) || !strings.Contains(got, `{"status":"OK","context":"response","data":"randomNumber","messageId":`) {
			t.Fatalf("got %s", got)
		}
	})
	t.Run("ctrl-d", func(t *testing.T) {
		ts := startServer(t, nil)
		c := dial(t, ts.addr)
		c.line()
		c.send("\x04")
		expectShape(t, c.line(), `{"status":"Bye!","context":"api"}`)
		c.expectEOF()
	})
	t.Run("ctrl-c", func(t *testing.T) {
		ts := startServer(t, nil)
		c := dial(t, ts.addr)
		c.line()
		c.send("\xff\xf4\xff\xfd\x06")
		expectShape(t, c.line(), `{"status":"Bye!","context":"api"}`)
		c.expectEOF()
	})
	t.Run("idle timeout", func(t *testing.T) {
		ts := startServer(t, func(cfg *Config, o *Options) { cfg.IdleTimeout = 100 * time.Millisecond; cfg.Welcome = "" })
		c := dial(t, ts.addr)
		expectShape(t, c.line(), `{"status":"Bye!","context":"api"}`)
		c.expectEOF()
	})
	t.Run("max connections", func(t *testing.T) {
		ts := startServer(t, func(cfg *Config, o *Options) { cfg.MaxConnections = 1 })
		a := dial(t, ts.addr)
		a.line()
		b := dial(t, ts.addr)
		expectShape(t, b.line(), `{"error":"too many connections","context":"response","messageId":"UUID","messageCount":0}`)
		b.expectEOF()
	})
	t.Run("client that never reads", func(t *testing.T) {
		ts := startServer(t, func(cfg *Config, o *Options) { cfg.OutboundQueue = 8 })
		c := dial(t, ts.addr)
		other := dial(t, ts.addr)
		other.line()
		if tc, ok := c.c.(*net.TCPConn); ok {
			_ = tc.SetReadBuffer(4096)
		}
		go func() {
			for i := 0; i < 2000; i++ {
				if _, err := c.c.Write([]byte("big\n")); err != nil {
					return
				}
			}
		}()
		testutil.WaitFor(t, "the slow reader to be disconnected", func() bool { return ts.Conns() <= 1 })
		other.send("randomNumber\n")
		expectShape(t, other.line(), `{"randomNumber":0.25,"stringRandomNumber":"Your random number is 0.25","context":"response","messageId":"UUID","messageCount":1}`)
	})
}

func TestShutdownAnswersPendingThenSaysGoodbye(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Listen = "127.0.0.1:0"
	s, err := New(cfg, Options{Actions: testActions()})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	addr := s.Addrs()["socket"].String()
	busy, idle := dial(t, addr), dial(t, addr)
	busy.line()
	idle.line()
	busy.send("sleepTest\n")
	testutil.WaitFor(t, "the action to start", func() bool { return pendingActions(s) > 0 })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil { // Serve's result included
		t.Fatal(err)
	}
	expectShape(t, idle.line(), `{"status":"Bye!","context":"api"}`)
	idle.expectEOF()
	expectShape(t, busy.line(), `{"sleepDuration":200,"context":"response","messageId":"UUID","messageCount":1}`)
	expectShape(t, busy.line(), `{"status":"Bye!","context":"api"}`)
	busy.expectEOF()
}

// pendingActions counts the actions running or waiting on every connection of s.
func pendingActions(s *Server) int {
	page, _ := s.ConnsPage("", 0, 1000)
	n := 0
	for _, c := range page {
		n += c.Pending
	}
	return n
}
