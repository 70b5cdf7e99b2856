package esl

import (
	"io"
	"net"
	"net/http"
	"runtime"
	"runtime/metrics"
	"strings"
	"testing"
	"time"

	"github.com/switchboard/switchboard/engine/esl/esltest"
	"github.com/switchboard/switchboard/internal/testutil"
	"github.com/switchboard/switchboard/tests/harness"
)

func liveHeap() uint64 {
	runtime.GC()
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

func fetchMetrics(t *testing.T, e *harness.Engine) string {
	t.Helper()
	resp, err := http.Get("http://" + e.Addr(t, "admin") + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// Issue 10 item 14, end to end: 140 dial-ins announce a 16 MiB connect reply each and trickle it. The
// engine's heap stays where it was (it used to allocate every announced body at once: 2.2 GB, which the
// memory guard then answered by cancelling every running handler), and a caller meanwhile goes through
// the shipped IVR flow. Then the dial-ins hang up and nothing is left held.
func TestDialInsAnnouncingHugeBodies(t *testing.T) {
	e := harness.Start(t, eslYAML+"  connect_timeout: 1m\n", harness.Options{Scripts: ivrScript(t)})
	addr := e.Addr(t, "esl")
	bystander := func() {
		t.Helper()
		res := call(t, esltest.Call{Addr: addr, Async: true, Full: true, PressOnRead: "3"}) // the digit comes with the prompt, whatever the load
		if !strings.Contains(strings.Join(res.Transcript(), "\n"), "execute say en number pronounced 42") {
			t.Fatalf("bystander call:\n%s", res)
		}
	}
	bystander()
	before := liveHeap()
	chunk := []byte(strings.Repeat("x", 1000))
	var conns []net.Conn
	for i := 0; i < 140; i++ {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 16)
		if n, _ := io.ReadAtLeast(c, buf, 9); string(buf[:n]) != "connect\n\n" {
			t.Fatalf("engine spoke %q first", buf[:n])
		}
		c.Write([]byte("Content-Type: command/reply\nContent-Length: 16777216\n\n"))
		c.Write(chunk)
		conns = append(conns, c)
	}
	for round := 0; round < 5; round++ {
		for _, c := range conns {
			c.Write(chunk)
		}
		time.Sleep(10 * time.Millisecond)
	}
	bystander()
	if grew := int64(liveHeap()) - int64(before); grew > 48<<20 {
		t.Fatalf("the heap grew by %d MiB for 140 dial-ins that sent 6 KB each", grew>>20)
	}
	if m := fetchMetrics(t, e); !strings.Contains(m, "switchboard_esl_body_bytes_in_flight ") ||
		!strings.Contains(m, "switchboard_lua_memory_cancellations_total 0") {
		t.Fatalf("/metrics:\n%s", m)
	}
	for _, c := range conns {
		c.Close()
	}
	testutil.WaitFor(t, "no body bytes in flight after the dial-ins left", func() bool {
		return strings.Contains(fetchMetrics(t, e), "switchboard_esl_body_bytes_in_flight 0\n")
	})
	bystander()
}
