// Package luacontain tests, end to end, that scripts cannot keep the engine from stopping (issue 10 item 4).
package luacontain

import (
	"bufio"
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/switchboard/switchboard/internal/testutil"
	"github.com/switchboard/switchboard/tests/harness"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const runaway = `
local sb = require "switchboard"
sb.action{ name = "spin", timeout = 3600000, run = function() while true do end end }
sb.action{ name = "sleepy", timeout = 3600000, run = function() sb.sleep(3600000) end }
-- A hook that triggers itself: without a depth limit it recursed until the machine ran out of memory.
sb.on("socket.say", function(conn, room, text) conn:say(room, text .. "+") end)
sb.every(1, function() local x = 0 for i = 1, 1e5 do x = x + i end end)
-- Connections still busy when the budget runs out are closed after it: their disconnect hooks must not run
-- another second each.
sb.on("socket.disconnect", function() while true do end end)
`

// The engine shuts down within its budget whatever its scripts do: an hour-long spin, an hour-long sleep, a
// re-entrant hook, a busy timer and disconnect hooks that spin.
func TestShutdownInTimeWithRunawayScripts(t *testing.T) {
	e := harness.Start(t, "socket:\n  listen: 127.0.0.1:0\n", harness.Options{Scripts: map[string]string{"runaway.lua": runaway}})
	addr := e.Addr(t, "socket")
	send := func(lines ...string) (net.Conn, *bufio.Reader) {
		c := harness.Dial(t, addr)
		r := bufio.NewReader(c)
		if _, err := r.ReadString('\n'); err != nil { // welcome
			t.Fatal(err)
		}
		for _, l := range lines {
			if _, err := c.Write([]byte(l + "\n")); err != nil {
				t.Fatal(err)
			}
		}
		return c, r
	}
	send("spin")
	send("sleepy")
	c, r := send("roomAdd defaultRoom", "say defaultRoom x")
	// The re-entrant hook ends at the depth limit: the say is answered.
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	for replies := 0; replies < 2; {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("say: %v", err)
		}
		if strings.HasPrefix(line, `{"status":"OK"`) {
			replies++ // roomAdd, then say
		}
	}
	rt := e.Runtime()
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = e.Shutdown(ctx)
	if took := time.Since(start); took > 1900*time.Millisecond {
		t.Fatalf("shutdown took %v with a 1s budget", took)
	}
	testutil.WaitFor(t, "every Lua VM to close after shutdown", func() bool { return rt.LiveVMs() == 0 })
}
