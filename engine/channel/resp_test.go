package channel

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"reflect"
	"strings"
	"sync"
	"testing"
	"testing/iotest"
	"time"
)

func TestRESPDecoder(t *testing.T) {
	in := "+OK\r\n" +
		"-ERR unknown command 'FOO'\r\n" +
		":42\r\n" +
		":-7\r\n" +
		"$5\r\nhel\r\n\r\n" +
		"$0\r\n\r\n" +
		"$-1\r\n" +
		"*3\r\n$1\r\na\r\n:1\r\n*2\r\n+x\r\n$-1\r\n" +
		"*0\r\n" +
		"*-1\r\n"
	got, err := decodeAll(t, NewRESPDecoder(iotest.OneByteReader(strings.NewReader(in)), 100))
	want := []any{
		"OK",
		map[string]any{"err": "ERR unknown command 'FOO'"},
		int64(42), int64(-7),
		"hel\r\n", "", false,
		[]any{"a", int64(1), []any{"x", false}},
		[]any{},
		false,
	}
	if err != io.EOF || !reflect.DeepEqual(got, want) {
		t.Fatalf("got %#v, %v", got, err)
	}
}

func TestRESPDecoderErrors(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"$1000\r\n", "over 100 bytes"},
		{"+" + strings.Repeat("x", 200) + "\r\n", "over 100 bytes"},
		{"*1000000\r\n", "over 100 bytes"},
		{"*2\r\n$45\r\n" + strings.Repeat("y", 45) + "\r\n$45\r\n" + strings.Repeat("z", 45) + "\r\n", "over 100 bytes"},
		{"$3\r\nabcde", "not followed by CRLF"},
		{"+OK\n", "not ended by CRLF"},
		{"?what\r\n", "unexpected type byte"},
		{":x\r\n", "bad integer"},
		{"$-2\r\n", "bad length"},
		{"*abc\r\n", "bad length"},
		{"\r\n", "empty line"},
		{"$5\r\nab", "unexpected EOF"},
		{"*2\r\n:1\r\n", "unexpected EOF"},
	} {
		_, err := decodeAll(t, NewRESPDecoder(strings.NewReader(tc.in), 100))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%.30q: got %v, want %q", tc.in, err, tc.want)
		}
	}
	_, err := decodeAll(t, NewRESPDecoder(strings.NewReader(strings.Repeat("*1\r\n", 40)+":1\r\n"), 1000))
	if err == nil || !strings.Contains(err.Error(), "nested deeper than 32") {
		t.Errorf("deep arrays: %v", err)
	}
}

func TestEncodeRESP(t *testing.T) {
	for _, tc := range []struct {
		in   any
		want string
	}{
		{"PING", "*1\r\n$4\r\nPING\r\n"},
		{"SET  k\tv", "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n"},
		{[]any{"SET", "k", "a b\r\nc", int64(12), 1.5, true}, "*6\r\n$3\r\nSET\r\n$1\r\nk\r\n$6\r\na b\r\nc\r\n$2\r\n12\r\n$3\r\n1.5\r\n$1\r\n1\r\n"},
	} {
		b, err := encodeRESP(tc.in)
		if err != nil || string(b) != tc.want {
			t.Errorf("%v: got %q, %v; want %q", tc.in, b, err, tc.want)
		}
	}
	for _, bad := range []any{"", "  ", []any{}, []any{"SET", map[string]any{}}, 42} {
		if b, err := encodeRESP(bad); err == nil {
			t.Errorf("%v: accepted as %q", bad, b)
		}
	}
}

func FuzzRESPDecoder(f *testing.F) {
	for _, seed := range []string{
		"+OK\r\n", "-ERR x\r\n", ":123\r\n", "$3\r\nabc\r\n", "$-1\r\n", "*-1\r\n",
		"*2\r\n$1\r\na\r\n*1\r\n:1\r\n", "*3\r\n+a\r\n-b\r\n:3\r\n", "$10\r\nshort\r\n", "*99999999\r\n",
		strings.Repeat("*1\r\n", 40) + "+x\r\n", "+no crlf\n", "$4\r\nab\r\n\r\n",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		d := NewRESPDecoder(iotest.HalfReader(strings.NewReader(string(data))), 256)
		for i := 0; i < len(data)+1; i++ {
			v, err := d.Decode()
			if err != nil {
				return
			}
			if n := respWireSize(t, v, 0); n > 256 {
				t.Fatalf("reply of %d bytes over max", n)
			}
		}
		t.Fatal("more replies than bytes")
	})
}

// respWireSize is the smallest number of wire bytes v can have come from (for the fuzz bound check).
func respWireSize(t *testing.T, v any, depth int) int {
	if depth > maxRESPDepth {
		t.Fatalf("nesting over %d", maxRESPDepth)
	}
	switch x := v.(type) {
	case string:
		return len(x) + 3
	case int64, bool:
		return 3
	case map[string]any:
		return len(x["err"].(string)) + 3
	case []any:
		n := 4
		for _, e := range x {
			n += respWireSize(t, e, depth+1)
		}
		return n
	}
	t.Fatalf("unexpected value %T", v)
	return 0
}

// respServer answers a few commands the way redis does, including multi-line replies.
func respServer(c net.Conn) {
	d := NewRESPDecoder(c, 1<<20)
	w := bufio.NewWriter(c)
	store := map[string]string{}
	for {
		v, err := d.Decode()
		if err != nil {
			return
		}
		args, _ := v.([]any)
		cmd := strings.ToUpper(fmt.Sprint(args[0]))
		switch {
		case cmd == "PING":
			w.WriteString("+PONG\r\n")
		case cmd == "SET" && len(args) == 3:
			store[args[1].(string)] = args[2].(string)
			w.WriteString("+OK\r\n")
		case cmd == "GET" && len(args) == 2:
			if s, ok := store[args[1].(string)]; ok {
				fmt.Fprintf(w, "$%d\r\n%s\r\n", len(s), s)
			} else {
				w.WriteString("$-1\r\n")
			}
		case cmd == "KEYS":
			fmt.Fprintf(w, "*%d\r\n", len(store))
			for k := range store {
				fmt.Fprintf(w, "$%d\r\n%s\r\n", len(k), k)
			}
		default:
			fmt.Fprintf(w, "-ERR unknown command '%s'\r\n", cmd)
		}
		w.Flush()
	}
}

// Item 11: a resp channel pairs each command with its reply, however many lines the replies take.
func TestRESPChannel(t *testing.T) {
	u := newUpstream(t, respServer)
	cfg := DefaultConfig()
	cfg.Name, cfg.Protocol, cfg.Host, cfg.Port, cfg.Permanent = "redis", RESP, "127.0.0.1", u.port(), true
	cfg.Heartbeat, cfg.HeartbeatInterval, cfg.HeartbeatTimeout = "PING", 20*time.Millisecond, time.Second
	f := startSet(t, cfg, nil)
	f.event(t, true)
	ch, _ := f.set.Channel("redis")
	for _, kv := range [][2]string{{"a", "1"}, {"b", "two\r\nlines"}, {"c", ""}} {
		if r, err := ch.Request(context.Background(), []any{"SET", kv[0], kv[1]}, 5*time.Second); err != nil || r != "OK" {
			t.Fatalf("SET %s: %v %v", kv[0], r, err)
		}
	}
	var wg sync.WaitGroup
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var cmd any
			var want any
			switch i % 4 {
			case 0:
				cmd, want = "KEYS *", 3
			case 1:
				cmd, want = "GET b", "two\r\nlines"
			case 2:
				cmd, want = "GET missing", false
			case 3:
				cmd, want = "NOPE", map[string]any{"err": "ERR unknown command 'NOPE'"}
			}
			r, err := ch.Request(context.Background(), cmd, 5*time.Second)
			if err != nil {
				t.Errorf("%v: %v", cmd, err)
				return
			}
			if keys, ok := r.([]any); ok && want == 3 {
				if len(keys) != 3 {
					t.Errorf("KEYS: %v", keys)
				}
				return
			}
			if !reflect.DeepEqual(r, want) {
				t.Errorf("%v: got %#v, want %#v", cmd, r, want)
			}
		}()
	}
	wg.Wait()
	// Heartbeat replies (PONG) were consumed, never handed to a request.
	if _, err := ch.Request(context.Background(), "", time.Second); err == nil || !strings.Contains(err.Error(), "empty command") {
		t.Fatalf("empty command: %v", err)
	}
	if v := metricValue(ch.m.dropped("no_taker")); v != 0 {
		t.Errorf("dropped{no_taker} = %v", v)
	}
}
