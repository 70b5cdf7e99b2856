package relay_test

import (
	"strings"
	"testing"
	"time"

	"github.com/switchboard/switchboard/engine/relay"
	"github.com/switchboard/switchboard/engine/relay/relaytest"
)

// TestSurrogatePairReachesCenter: `\ud83d\ude00` (how Java escapes U+1F600) is one character on its way to
// the center; a lone surrogate is an error for that message only (issue 15 item 5).
func TestSurrogatePairReachesCenter(t *testing.T) {
	g := start(t, "", nil, "a")
	app := dial(t, g, "app", "")
	app.Raw(`O#1|T="x"|s7="\ud83d\ude00"` + "\n")
	expectStatus(t, app, 1, 0, "OK")
	app.Raw(`O#2|T="x"|s7="\ud83d"` + "\n")
	expectStatus(t, app, 2, 1, `Parse error: column 15: lone high surrogate \ud83d: expected a low surrogate escape (\uDC00-\uDFFF) after it`)
	app.Raw(`O#3|T="x"|s7="\ude00\ud83d"` + "\n")
	expectStatus(t, app, 3, 1, `Parse error: column 15: lone low surrogate \ude00`)
	app.Raw(`O#4|T="x"|s7='\uD83D\uDE00!'` + "\n")
	expectStatus(t, app, 4, 0, "OK")
	c := g.centers["a"]
	if err := c.WaitCount(2, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	want := "O|T=\"x\"|s7=\"\U0001F600\"\nO|T=\"x\"|s7='\U0001F600!'"
	if got := strings.Join(c.Bodies(), "\n"); got != want {
		t.Fatalf("center got %+q, want %+q", got, want)
	}
}

// TestOverLongLineKeepsItsSequence: an instruction past relay.max_line is answered with the Q of its own
// header (salvaged from its first bytes), and numbering goes on from there (issue 15 item 6).
func TestOverLongLineKeepsItsSequence(t *testing.T) {
	g := start(t, "", nil, "a")
	app := dial(t, g, "app", "") // L#0
	if err := app.Raw(`O#41|T="Long"|v="` + strings.Repeat("x", 1_000_000) + "\"\n"); err != nil {
		t.Fatal(err)
	}
	expectStatus(t, app, 41, 1, "instruction longer than 65536 bytes")
	app.Raw(`O|T="a"` + "\n") // no #: the next number
	expectStatus(t, app, 42, 0, "OK")
	// a header without # takes the next number too, and a lenient header is read as the parser reads it
	app.Raw(`O|T="Long"|v="` + strings.Repeat("x", 70_000) + "\"\n")
	expectStatus(t, app, 43, 1, "instruction longer than 65536 bytes")
	app.Raw(`O@1700000000000|#77|T="Long"|v="` + strings.Repeat("x", 70_000) + "\"\n")
	expectStatus(t, app, 77, 1, "instruction longer than 65536 bytes")
	app.Raw(`O#78|T="a"` + "\n")
	expectStatus(t, app, 78, 0, "OK")
	if err := g.centers["a"].WaitCount(2, 5*time.Second); err != nil {
		t.Fatal(err)
	}
}

// TestSendCR: relay.send_cr (3forge's ami.send.cr) ends the relay's lines with \r\n; a login with
// O="UNIX" forces \n again.
func TestSendCR(t *testing.T) {
	g := start(t, "", func(c *relay.Config) { c.SendCR = true }, "a")
	raw := dialRaw(t, g)
	raw.Raw("L#0|I=\"w\"\n")
	if line, err := raw.ReadLine(5 * time.Second); err != nil || !strings.HasSuffix(line, "\r") {
		t.Fatalf("send_cr: %q %v", line, err)
	}
	unix := dialRaw(t, g)
	unix.Raw("L#0|I=\"u\"|O=\"UNIX\"\n")
	if line, err := unix.ReadLine(5 * time.Second); err != nil || strings.HasSuffix(line, "\r") {
		t.Fatalf("UNIX: %q %v", line, err)
	}
}

// TestListenDisabled: port -1 (3forge's ami.port=-1) runs no listener; centers are still dialed.
func TestListenDisabled(t *testing.T) {
	center, err := relaytest.NewCenter("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer center.Close()
	cfg := relay.DefaultConfig()
	cfg.Listen = "127.0.0.1:-1"
	cfg.RoutesFile = ""
	cfg.Centers = relay.Centers{"a": center.Addr()}
	r, stop := runRelay(t, cfg, nil)
	defer stop()
	if len(r.Addrs()) != 0 {
		t.Fatalf("listening on %v", r.Addrs())
	}
	if err := center.WaitLogin(1, 5*time.Second); err != nil {
		t.Fatal(err)
	}
}
