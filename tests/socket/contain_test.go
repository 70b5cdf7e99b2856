package socket

import (
	"fmt"
	"strings"
	"testing"

	"github.com/switchboard/switchboard/tests/harness"
)

// containScript adds actions the containment tests drive.
const containScript = `
local sb = require "switchboard"
sb.action{ name = "countParams", timeout = 60000, run = function(conn, params)
  local n = 0
  for _ in pairs(params) do n = n + 1 end
  return { count = n, first = params.key0000000, last = params.key0199999, dup = params.dup }
end }
`

// bystanderOf dials addr and returns a check that the connection is still answered.
func bystanderOf(t *testing.T, addr string) func(t *testing.T) {
	b := dial(t, addr)
	b.line()
	return func(t *testing.T) {
		t.Helper()
		match(t, b.do("randomNumber"), `{"randomNumber":NUM,"stringRandomNumber":"Your random number is NUM","context":"response","messageId":"UUID","messageCount":NUM}`)
	}
}

// TestJSONWithManyKeysIsLinear sends one request line with 200,000 params (3.4 MB; issue 10 item 9: 40,000
// keys used to cost 16 s of CPU, so 200,000 would cost about 7 minutes) with duplicate keys: it is
// answered with the reference's duplicate semantics (the last value, at the first key's place) within the
// client's 10 s read deadline (about 1 s on a busy 2-core machine), and a bystander is served meanwhile.
func TestJSONWithManyKeysIsLinear(t *testing.T) {
	e := harness.Start(t, "socket:\n  listen: 127.0.0.1:0\n  max_buffer: 16777216\n  param_scrubbing: false\n",
		harness.Options{Scripts: scriptsWith(t, containScript)})
	addr := e.Addr(t, "socket")
	stillServed := bystanderOf(t, addr)

	const n = 200000
	var b strings.Builder
	b.WriteString(`{"action":"countParams","params":{"dup":"first"`)
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, `,"key%07d":%d`, i, i)
	}
	b.WriteString(`,"dup":"last"}}` + "\n")
	c := dial(t, addr)
	c.line()
	done := make(chan error, 1)
	go func() { _, err := c.c.Write([]byte(b.String())); done <- err }()
	stillServed(t)
	// +2: dup and action
	match(t, c.line(), fmt.Sprintf(`{"count":%d,"first":0,"last":199999,"dup":"last","context":"response","messageId":"UUID","messageCount":1}`, n+2))
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	match(t, c.do("paramView dup"), `{"status":"OK","context":"response","data":"last","messageId":"UUID","messageCount":2}`)
	stillServed(t)
}
