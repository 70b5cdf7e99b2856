package status

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"image/png"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/switchboard/switchboard/engine/relay/relaytest"
	"github.com/switchboard/switchboard/internal/testutil"
	"github.com/switchboard/switchboard/tests/harness"
)

var updateScreenshot = flag.Bool("update-screenshot", false, "write docs/status-page.png from TestScreenshot")

// chromiumPath is the browser the page tests drive. .ci/run installs Debian's chromium; under CI=1 a
// missing browser fails the tests, elsewhere they are skipped.
func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, p := range []string{os.Getenv("SB_CHROMIUM"), "/usr/bin/chromium", "/usr/bin/chromium-browser"} {
		if p == "" {
			continue
		}
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("no Chromium at /usr/bin/chromium (.ci/run installs Debian's chromium package)")
	}
	t.Skip("no Chromium at /usr/bin/chromium: apt-get install chromium (or set SB_CHROMIUM) to run the status page tests")
	return ""
}

// browser starts headless Chromium with a fresh profile and returns a tab's context, closed when the test
// ends. The flags keep it off the network: the machine has none but loopback.
func browser(t *testing.T, width, height int) context.Context {
	t.Helper()
	exe := chromiumPath(t)
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(exe),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("hide-scrollbars", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(width, height),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelTab := chromedp.NewContext(actx)
	t.Cleanup(func() { cancelTab(); cancelAlloc() })
	// The first action starts the browser, which lives as long as the context of that action: not a
	// shorter one (go test's -timeout bounds a browser that never starts).
	if err := chromedp.Do(ctx, chromedp.Navigate("about:blank")); err != nil {
		t.Fatalf("start %s: %v", exe, err)
	}
	return ctx
}

// eval runs a JavaScript expression in the page and decodes its value.
func eval[T any](t *testing.T, ctx context.Context, js string) T {
	t.Helper()
	c, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	v, err := chromedp.Run(c, chromedp.Evaluate[T](js))
	if err != nil {
		t.Fatalf("evaluate %s: %v", js, err)
	}
	return v
}

// textOf is the rendered text of the first element matching sel ("" when there is none).
func textOf(t *testing.T, ctx context.Context, sel string) string {
	t.Helper()
	q, _ := json.Marshal(sel)
	return eval[string](t, ctx, fmt.Sprintf(`(document.querySelector(%s) || {innerText: ""}).innerText`, q))
}

// waitText polls the page until the element matching sel shows every one of wants.
func waitText(t *testing.T, ctx context.Context, sel string, wants ...string) string {
	t.Helper()
	var got, missing string
	if !testutil.Poll(deadline, func() bool {
		got, missing = textOf(t, ctx, sel), ""
		for _, w := range wants {
			if !strings.Contains(got, w) {
				missing = w
				break
			}
		}
		return missing == ""
	}) {
		t.Fatalf("%s never showed %q; it shows:\n%s", sel, missing, got)
	}
	return got
}

// connID finds, through the API, the id of the socket connection whose local address is cl's.
func connID(t *testing.T, admin string, cl *client) string {
	t.Helper()
	local := cl.c.LocalAddr().String()
	var found string
	waitJSON(t, url(admin, "/api/socket/connections?limit=1000"), func(p page[conn]) bool {
		for _, c := range p.Items {
			if c.Remote == local {
				found = c.ID
				return true
			}
		}
		return false
	})
	return found
}

// scene is the built binary running with traffic on every part: a relay with a center up and one down and
// an application logged in, call control, a channel that cannot connect; tests add socket clients and calls.
type scene struct {
	p                         *harness.Process
	admin, socket, relay, esl string
}

func liveScene(t *testing.T) *scene {
	t.Helper()
	center, err := relaytest.NewCenter("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(center.Close)
	down := closedPort(t)
	p := harness.StartBinary(t, fmt.Sprintf(`socket:
  listen: 127.0.0.1:0
  rooms: { starting: [defaultRoom], autocreate: true }
relay:
  listen: 127.0.0.1:0
  routes_file: ""
  centers: { primary: %s, risk: %s }
esl:
  listen: 127.0.0.1:0
channels:
  - {name: quotes, protocol: text-messages, host: 127.0.0.1, port: %s, permanent: true, reconnection_timeout: 200ms}
`, center.Addr(), down, portOf(down)), harness.Options{Scripts: map[string]string{
		"hold.lua": holdFlow,
		"chat.lua": "local sb = require \"switchboard\"\nsb.on(\"socket.connect\", function(conn) end)\n" +
			"sb.action{ name = \"ping\", run = function(conn, params) return { pong = true } end }\n",
	}}, "socket", "relay", "esl", "admin")
	s := &scene{p: p, admin: p.Addr(t, "admin"), socket: p.Addr(t, "socket"), relay: p.Addr(t, "relay"), esl: p.Addr(t, "esl")}
	app, err := relaytest.Dial(s.relay, "oms-7", "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { app.Close() })
	return s
}

// writeScript writes a script into the running engine's scripts directory (reload to load it).
func (s *scene) writeScript(t *testing.T, name, src string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(s.p.Dir, "scripts", name), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
}

// The page in a real browser: what it shows of live traffic, that it updates without a reload, that a
// broken reload shows its file:line error, that peer text stays text, and that the room filter works.
func TestPageInBrowser(t *testing.T) {
	ctx := browser(t, 1400, 1000)
	s := liveScene(t)
	sock := s.socket
	alice := connect(t, sock)
	alice.join(t, "lobby")
	aliceID := connID(t, s.admin, alice)
	startCall(t, s.esl, "page-call-42", "+15551230000")

	if err := chromedp.Do(ctx, chromedp.Navigate(url(s.admin, "/"))); err != nil {
		t.Fatal(err)
	}
	// A mark that a reload of the page would wipe.
	eval[bool](t, ctx, `window.notReloaded = true`)

	waitText(t, ctx, "#live", "live, updated")
	waitText(t, ctx, "#parts tbody", "socket", sock, "relay", s.relay, "esl", s.esl, "admin", s.admin, "1 connection, 2 rooms",
		"1 application, centers 1 up / 1 down / 0 stalled", "1 call", "0 of 1 up")
	waitText(t, ctx, "#socket tbody", aliceID, "lobby")
	waitText(t, ctx, "#socket-total", "1")
	waitText(t, ctx, "#rooms tbody", "lobby", "defaultRoom")
	centers := waitText(t, ctx, "#centers tbody", "primary", "up", "risk", "down", "connection refused")
	must(t, strings.Contains(textOf(t, ctx, `#centers tr[data-center="risk"]`), "down"), "risk row: %s", centers)
	waitText(t, ctx, "#centers-total", "1 up, 1 down, 0 stalled")
	waitText(t, ctx, "#apps tbody", "oms-7")
	waitText(t, ctx, "#calls tbody", "page-call-42", "hold", "+15551230000 (Ada Lovelace)", "answered")
	waitText(t, ctx, "#channels tbody", "quotes", "text-messages", "connection refused")
	waitText(t, ctx, "#scripts", "scripts/chat.lua", "on socket.connect, action ping", "scripts/hold.lua", "flow hold", "ok")

	// Live: a new connection appears without reloading the page.
	bob := connect(t, sock)
	bobID := connID(t, s.admin, bob)
	waitText(t, ctx, "#socket tbody", aliceID, bobID)
	waitText(t, ctx, "#socket-total", "2")
	// And leaves again.
	bob.c.Close()
	testutil.WaitWithin(t, deadline, "the closed connection "+bobID+" to go", func() bool {
		return !strings.Contains(textOf(t, ctx, "#socket tbody"), bobID)
	})

	// A broken reload: the error with its file:line, and the generation that keeps serving.
	s.writeScript(t, "broken.lua", "local sb = require \"switchboard\"\n\nsb.action{ name = \"x\", run = function() return { end }\n")
	code, body, _ := api(t, "POST", url(s.admin, "/reload"), nil)
	must(t, code == http.StatusUnprocessableEntity, "reload: %d %s", code, body)
	waitText(t, ctx, "#reload-errors", "scripts/broken.lua:3: ")
	waitText(t, ctx, "#reload", "failed", "generation 1 keeps serving; 1 error")

	// Peer text stays text: a room named like markup is shown as written, and nothing runs.
	evil := `<img/src=x/onerror=document.title='pwned'>`
	alice.join(t, evil)
	waitText(t, ctx, "#rooms tbody", evil)
	waitText(t, ctx, "#socket tbody", evil)
	must(t, eval[int](t, ctx, `document.querySelectorAll("main img").length`) == 0, "an <img> element was made from a room name")
	must(t, eval[string](t, ctx, `document.title`) == "Switchboard status", "the page title changed")

	// The room filter: clicking a room lists its members only.
	carol := connect(t, sock)
	carolID := connID(t, s.admin, carol)
	waitText(t, ctx, "#socket tbody", carolID)
	c, cancel := context.WithTimeout(ctx, 10*time.Second)
	err := chromedp.Do(c, chromedp.Click(`//section[@id="rooms"]//button[text()="lobby"]`))
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	waitText(t, ctx, "#socket-total", `1 in room "lobby"`)
	waitText(t, ctx, "#room-filter", "members of lobby")
	must(t, !strings.Contains(textOf(t, ctx, "#socket tbody"), carolID), "the room filter lists a non-member")

	must(t, eval[bool](t, ctx, `window.notReloaded === true`), "the page was reloaded")
}

// TestScreenshot shows the page with live traffic; with -update-screenshot it writes docs/status-page.png:
//
//	go test ./tests/status -run Screenshot -update-screenshot
func TestScreenshot(t *testing.T) {
	ctx := browser(t, 1400, 900)
	s := liveScene(t)
	sock := s.socket
	for i, rooms := range [][]string{{"lobby"}, {"lobby", "support"}, {"support"}, {"trading"}, {}} {
		cl := connect(t, sock)
		for _, r := range rooms {
			cl.join(t, r)
		}
		if i == 1 {
			cl.do(t, "ping")
		}
	}
	startCall(t, s.esl, "6f1c2a9e-4b7d-4e0a-9c3f-2d8b5e7a1c44", "+442079460018")
	startCall(t, s.esl, "a83d7b10-59e2-4c61-8f4a-0b6c9d2e3f57", "+15551230000")
	s.writeScript(t, "routing.lua", "local sb = require \"switchboard\"\n\nsb.verb(\"route\", function(conn, args)\n  conn:send{ to = args[1] \nend)\n")
	if code, body, _ := api(t, "POST", url(s.admin, "/reload"), nil); code != http.StatusUnprocessableEntity {
		t.Fatalf("reload: %d %s", code, body)
	}
	if err := chromedp.Do(ctx, chromedp.Navigate(url(s.admin, "/"))); err != nil {
		t.Fatal(err)
	}
	waitText(t, ctx, "#calls-total", "2 in flight")
	waitText(t, ctx, "#socket-total", "5")
	waitText(t, ctx, "#reload-errors", "scripts/routing.lua:5:")
	waitText(t, ctx, "#channels tbody", "connection refused")
	waitText(t, ctx, "#live", "live")
	c, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	shot, err := chromedp.Run(c, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(bytes.NewReader(shot))
	if err != nil {
		t.Fatalf("screenshot is not a PNG: %v", err)
	}
	if b := img.Bounds(); b.Dx() < 1000 || b.Dy() < 600 {
		t.Fatalf("screenshot of %v", b)
	}
	if !*updateScreenshot {
		return
	}
	out := filepath.Join(harness.Root(), "docs", "status-page.png")
	if err := os.WriteFile(out, shot, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote %s (%d bytes)", out, len(shot))
}

// With admin.token the browser is asked for credentials (any user, the token as password) and sends them
// with the page's own requests (here given in the URL, as a person would type them in the prompt); without
// them the page is refused.
func TestPageWithToken(t *testing.T) {
	ctx := browser(t, 1200, 800)
	e := harness.Start(t, "admin:\n  listen: 127.0.0.1:0\n  token: page-token\n", harness.Options{Scripts: map[string]string{"x.lua": ""}})
	admin := e.Addr(t, "admin")
	// Headless, nobody answers the browser's credentials prompt: the navigation fails.
	err := chromedp.Do(ctx, chromedp.Navigate(url(admin, "/")))
	must(t, err != nil && strings.Contains(err.Error(), "ERR_INVALID_AUTH_CREDENTIALS"), "without credentials: %v", err)
	if err := chromedp.Do(ctx, chromedp.Navigate("http://ops:page-token@"+admin+"/")); err != nil {
		t.Fatal(err)
	}
	waitText(t, ctx, "#live", "live, updated")
	waitText(t, ctx, "#parts tbody", "admin", admin)
}
