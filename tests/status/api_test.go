package status

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/switchboard/switchboard/engine/relay/relaytest"
	"github.com/switchboard/switchboard/tests/harness"
)

const socketYAML = "socket:\n  listen: 127.0.0.1:0\n  rooms: { starting: [defaultRoom], autocreate: true }\n"

// Lists are paginated server-side: 230 connections come in pages of at most limit, oldest first, every
// connection once; bad arguments get 400 with the reason; a room filter lists that room's members.
func TestAPIPagination(t *testing.T) {
	e := harness.Start(t, socketYAML, harness.Options{Scripts: map[string]string{"x.lua": ""}})
	admin, sock := e.Addr(t, "admin"), e.Addr(t, "socket")
	const n = 230
	clients := make([]*client, n)
	for i := range clients {
		clients[i] = connect(t, sock)
	}
	for _, cl := range clients[:7] {
		cl.join(t, "lobby")
	}

	var first page[conn]
	getJSON(t, url(admin, "/api/socket/connections"), &first)
	must(t, first.Total == n && first.Offset == 0 && first.Limit == 100 && len(first.Items) == 100 && !first.Truncated,
		"default page: total %d offset %d limit %d items %d truncated %v", first.Total, first.Offset, first.Limit, len(first.Items), first.Truncated)
	seen := map[string]bool{}
	var last time.Time
	for _, off := range []int{0, 100, 200} {
		var p page[conn]
		getJSON(t, url(admin, fmt.Sprintf("/api/socket/connections?offset=%d&limit=100", off)), &p)
		want := min(100, n-off)
		must(t, p.Total == n && len(p.Items) == want, "offset %d: total %d, %d items, want %d", off, p.Total, len(p.Items), want)
		for _, c := range p.Items {
			must(t, !seen[c.ID], "connection %s listed twice", c.ID)
			seen[c.ID] = true
			host, _, err := net.SplitHostPort(c.Remote)
			must(t, err == nil && host == "127.0.0.1", "remote %q", c.Remote)
			must(t, !c.ConnectedAt.Before(last), "not oldest first: %v after %v", c.ConnectedAt, last)
			last = c.ConnectedAt
		}
	}
	must(t, len(seen) == n, "%d distinct connections listed, want %d", len(seen), n)
	var past page[conn]
	getJSON(t, url(admin, "/api/socket/connections?offset=5000"), &past)
	must(t, past.Total == n && len(past.Items) == 0, "past the end: %+v", past)

	for q, want := range map[string]string{
		"limit=0":       `{"error":"limit: expected a number from 1 to 1000, got \"0\""}`,
		"limit=1001":    `{"error":"limit: expected a number from 1 to 1000, got \"1001\""}`,
		"limit=ten":     `{"error":"limit: expected a number from 1 to 1000, got \"ten\""}`,
		"offset=-1":     `{"error":"offset: expected a number from 0, got \"-1\""}`,
		"offset=1e3":    `{"error":"offset: expected a number from 0, got \"1e3\""}`,
		"members=101":   `{"error":"members: expected a number from 0 to 100, got \"101\""}`,
		"members=-1":    `{"error":"members: expected a number from 0 to 100, got \"-1\""}`,
		"limit=1&x=<b>": "", // unknown arguments are ignored
	} {
		path := "/api/socket/connections?" + q
		if strings.HasPrefix(q, "members") {
			path = "/api/socket/rooms?" + q
		}
		code, body, _ := api(t, "GET", url(admin, path), nil)
		if want == "" {
			must(t, code == 200, "%s: %d %s", path, code, body)
			continue
		}
		must(t, code == http.StatusBadRequest && strings.TrimSpace(string(body)) == want, "%s: %d %s, want 400 %s", path, code, body, want)
	}

	var lobby page[conn]
	getJSON(t, url(admin, "/api/socket/connections?room=lobby&limit=5"), &lobby)
	must(t, lobby.Total == 7 && len(lobby.Items) == 5, "lobby: %+v", lobby)
	for i, c := range lobby.Items {
		must(t, c.RoomsCount == 1 && c.Rooms[0] == "lobby", "member %d: %+v", i, c)
	}
	var nobody page[conn]
	getJSON(t, url(admin, "/api/socket/connections?room=nosuch"), &nobody)
	must(t, nobody.Total == 0 && len(nobody.Items) == 0, "no such room: %+v", nobody)

	var rooms page[room]
	getJSON(t, url(admin, "/api/socket/rooms?members=3"), &rooms)
	must(t, rooms.Total == 2 && len(rooms.Items) == 2, "rooms: %+v", rooms)
	must(t, rooms.Items[0].Name == "defaultRoom" && rooms.Items[0].Members == 0 && len(rooms.Items[0].First) == 0, "defaultRoom: %+v", rooms.Items[0])
	must(t, rooms.Items[1].Name == "lobby" && rooms.Items[1].Members == 7 && len(rooms.Items[1].First) == 3, "lobby: %+v", rooms.Items[1])
	must(t, rooms.Items[1].First[0].ID == lobby.Items[0].ID, "members in join order: %s, %s", rooms.Items[1].First[0].ID, lobby.Items[0].ID)

	// Totals follow the connections as they come and go.
	for _, cl := range clients[:30] {
		cl.c.Close()
	}
	type totals struct {
		Totals struct {
			Conns int `json:"socket_connections"`
			Rooms int `json:"rooms"`
		} `json:"totals"`
	}
	waitJSON(t, url(admin, "/api/status"), func(s totals) bool { return s.Totals.Conns == n-30 && s.Totals.Rooms == 2 })
}

// Every answer is bounded in bytes: a page of big items stops before admin.status_max_bytes and says so.
func TestAPIByteBound(t *testing.T) {
	const maxBytes = 65536
	e := harness.Start(t, socketYAML+"admin:\n  listen: 127.0.0.1:0\n  status_max_bytes: 65536\n",
		harness.Options{Scripts: map[string]string{"x.lua": ""}})
	admin, sock := e.Addr(t, "admin"), e.Addr(t, "socket")
	const conns, roomsEach = 12, 40
	for i := 0; i < conns; i++ {
		cl := connect(t, sock)
		for j := 0; j < roomsEach; j++ {
			cl.join(t, fmt.Sprintf("%03d-%03d-%s", i, j, strings.Repeat("r", 400)))
		}
	}
	code, body, _ := api(t, "GET", url(admin, "/api/socket/connections?limit=1000"), nil)
	must(t, code == 200 && len(body) <= maxBytes, "connections: %d, %d bytes", code, len(body))
	var p page[conn]
	must(t, json.Unmarshal(body, &p) == nil, "connections: %s", body)
	must(t, p.Total == conns && p.Truncated && len(p.Items) > 0 && len(p.Items) < conns, "connections page: total %d items %d truncated %v", p.Total, len(p.Items), p.Truncated)
	c := p.Items[0]
	must(t, c.RoomsCount == roomsEach && len(c.Rooms) == 32, "rooms of a connection: %d listed of %d", len(c.Rooms), c.RoomsCount)
	must(t, len(c.Rooms[0]) <= 256 && strings.HasSuffix(c.Rooms[0], "…"), "a long room name is cut: %d bytes %q", len(c.Rooms[0]), c.Rooms[0][len(c.Rooms[0])-8:])

	code, body, _ = api(t, "GET", url(admin, "/api/socket/rooms?limit=1000&members=100"), nil)
	must(t, code == 200 && len(body) <= maxBytes, "rooms: %d, %d bytes", code, len(body))
	var r page[room]
	must(t, json.Unmarshal(body, &r) == nil, "rooms: %s", body)
	must(t, r.Total == conns*roomsEach+1 && r.Truncated && len(r.Items) < 1000, "rooms page: total %d items %d truncated %v", r.Total, len(r.Items), r.Truncated)

	// A small page of the same list fits and is not truncated.
	var small page[room]
	getJSON(t, url(admin, "/api/socket/rooms?limit=10"), &small)
	must(t, len(small.Items) == 10 && !small.Truncated, "small page: %d items truncated %v", len(small.Items), small.Truncated)
}

// Text a peer chose is JSON-escaped (no raw <, >, &) and made valid UTF-8.
func TestAPIEscapesPeerText(t *testing.T) {
	e := harness.Start(t, socketYAML, harness.Options{Scripts: map[string]string{"x.lua": ""}})
	admin := e.Addr(t, "admin")
	cl := connect(t, e.Addr(t, "socket"))
	evil := `<img/src=x/onerror=alert(1)>&"'` // roomAdd takes one word
	cl.join(t, evil)
	cl.join(t, "bad\xff\xfeutf8")
	code, body, _ := api(t, "GET", url(admin, "/api/socket/rooms"), nil)
	must(t, code == 200, "rooms: %d %s", code, body)
	must(t, !strings.ContainsAny(string(body), "<>&"), "raw markup in the answer: %s", body)
	must(t, strings.Contains(string(body), `\u003cimg/src=x/onerror=alert(1)\u003e\u0026\"'`), "escaped name missing: %s", body)
	var p page[room]
	must(t, json.Unmarshal(body, &p) == nil, "rooms: %s", body)
	names := map[string]bool{}
	for _, r := range p.Items {
		names[r.Name] = true
	}
	must(t, names[evil] && names["bad\uFFFD\uFFFDutf8"], "names: %v", names)
}

// The page and /api are read-only GETs; with admin.token they need the token (Bearer, or Basic with the
// token as password); /healthz and /metrics stay open; another Host or Origin is refused on reads too.
func TestAPIGuarded(t *testing.T) {
	const token = "s3cret-token"
	e := harness.Start(t, "admin:\n  listen: 127.0.0.1:0\n  token: "+token+"\n", harness.Options{Scripts: map[string]string{"x.lua": ""}})
	admin := e.Addr(t, "admin")
	bearer := map[string]string{"Authorization": "Bearer " + token}
	basic := map[string]string{"Authorization": "Basic " + base64.StdEncoding.EncodeToString([]byte("ops:"+token))}
	for _, path := range []string{"/", "/ui/app.js", "/api/status", "/api/scripts", "/api/channels"} {
		code, body, hdr := api(t, "GET", url(admin, path), nil)
		must(t, code == http.StatusUnauthorized && hdr.Get("WWW-Authenticate") == `Basic realm="switchboard admin", charset="UTF-8"`,
			"%s without the token: %d %v %s", path, code, hdr, body)
		must(t, strings.Contains(string(body), "the status page needs the admin token"), "%s: %s", path, body)
		for _, h := range []map[string]string{bearer, basic} {
			code, body, _ = api(t, "GET", url(admin, path), h)
			must(t, code == http.StatusOK, "%s with %s: %d %s", path, h["Authorization"][:6], code, body)
		}
		code, body, _ = api(t, "GET", url(admin, path), map[string]string{"Authorization": "Bearer wrong"})
		must(t, code == http.StatusUnauthorized && strings.Contains(string(body), `"error":"the admin token is wrong"`), "%s wrong token: %d %s", path, code, body)
	}
	for _, path := range []string{"/healthz", "/metrics"} {
		code, body, _ := api(t, "GET", url(admin, path), map[string]string{"Host": "evil.example.com"})
		must(t, code == http.StatusOK, "%s stays open: %d %s", path, code, body)
	}
	code, body, _ := api(t, "GET", url(admin, "/api/status"), map[string]string{"Authorization": bearer["Authorization"], "Host": "evil.example.com"})
	must(t, code == http.StatusForbidden && strings.Contains(string(body), `the Host header \"evil.example.com\" does not name this admin listener`), "rebinding: %d %s", code, body)
	code, body, _ = api(t, "GET", url(admin, "/api/status"), map[string]string{"Authorization": bearer["Authorization"], "Origin": "http://evil.example.com"})
	must(t, code == http.StatusForbidden && strings.Contains(string(body), `requests from the web origin \"http://evil.example.com\" are not accepted`), "cross-origin read: %d %s", code, body)
	for _, m := range []string{"POST", "PUT", "DELETE"} {
		code, body, hdr := api(t, m, url(admin, "/api/status"), bearer)
		must(t, code == http.StatusMethodNotAllowed && strings.Contains(hdr.Get("Allow"), "GET"), "%s /api/status: %d %s", m, code, body)
		code, body, _ = api(t, m, url(admin, "/api/nosuch"), bearer)
		must(t, code == http.StatusMethodNotAllowed && strings.TrimSpace(string(body)) == `{"error":"the status API is read-only: use GET"}`, "%s /api/nosuch: %d %s", m, code, body)
	}
	code, body, _ = api(t, "GET", url(admin, "/api/nosuch"), bearer)
	must(t, code == http.StatusNotFound && strings.Contains(string(body), "no such endpoint: /api/nosuch"), "unknown endpoint: %d %s", code, body)
	// The page's own security headers.
	_, _, hdr := api(t, "GET", url(admin, "/"), bearer)
	must(t, strings.Contains(hdr.Get("Content-Security-Policy"), "script-src 'self'") && hdr.Get("X-Frame-Options") == "DENY" &&
		hdr.Get("Cache-Control") == "no-store", "page headers: %v", hdr)
	// Parts that are off answer 404 with the reason.
	code, body, _ = api(t, "GET", url(admin, "/api/calls"), bearer)
	must(t, code == http.StatusNotFound && strings.TrimSpace(string(body)) == `{"error":"the esl part is disabled"}`, "calls: %d %s", code, body)
}

// /debug/pprof/ exists only with admin.pprof: true, behind the token like the page.
func TestPProf(t *testing.T) {
	off := harness.Start(t, "", harness.Options{Scripts: map[string]string{"x.lua": ""}})
	code, _, _ := api(t, "GET", url(off.Addr(t, "admin"), "/debug/pprof/"), nil)
	must(t, code == http.StatusNotFound, "pprof off: %d", code)

	on := harness.Start(t, "admin:\n  listen: 127.0.0.1:0\n  pprof: true\n  token: tok\n", harness.Options{Scripts: map[string]string{"x.lua": ""}})
	admin := on.Addr(t, "admin")
	code, _, _ = api(t, "GET", url(admin, "/debug/pprof/"), nil)
	must(t, code == http.StatusUnauthorized, "pprof without the token: %d", code)
	code, body, _ := api(t, "GET", url(admin, "/debug/pprof/"), map[string]string{"Authorization": "Bearer tok"})
	must(t, code == http.StatusOK && strings.Contains(string(body), "goroutine"), "pprof index: %d %.200s", code, body)
	code, body, _ = api(t, "GET", url(admin, "/debug/pprof/goroutine?debug=1"), map[string]string{"Authorization": "Bearer tok"})
	must(t, code == http.StatusOK && strings.Contains(string(body), "goroutine profile: total"), "goroutine profile: %d %.200s", code, body)
}

type reload struct {
	OK         bool  `json:"ok"`
	Generation int64 `json:"generation"`
	Errors     []struct {
		Part, File, Message, Text string
		Line                      int
	} `json:"errors"`
	ErrorsTotal int `json:"errors_total"`
}

type scripts struct {
	Generation int64 `json:"generation"`
	Files      page[struct {
		File     string `json:"file"`
		Handlers []struct {
			Kind, Name, Where string
		} `json:"handlers"`
	}] `json:"files"`
	LastReload reload `json:"last_reload"`
}

// The scripts generation, its files and what each registers, and the last reload's outcome with
// file:line errors; a failed reload leaves the old generation serving.
func TestAPIScriptsAndReload(t *testing.T) {
	e := harness.Start(t, "", harness.Options{Scripts: map[string]string{
		"a.lua": "local sb = require \"switchboard\"\nsb.action{ name = \"hello\", run = function() return {} end }\n",
		"b.lua": "local sb = require \"switchboard\"\nsb.flow(\"main\", function(s) end)\n",
	}})
	admin := e.Addr(t, "admin")
	var s scripts
	getJSON(t, url(admin, "/api/scripts"), &s)
	must(t, s.Generation == 1 && s.LastReload.OK && s.LastReload.Generation == 1 && len(s.LastReload.Errors) == 0, "at start: %+v", s)
	dir := filepath.Join(e.Dir, "scripts") + "/" // scripts outside the working directory are named in full
	must(t, s.Files.Total == 2 && s.Files.Items[0].File == dir+"a.lua" && s.Files.Items[1].File == dir+"b.lua", "files: %+v", s.Files)
	h := s.Files.Items[0].Handlers
	must(t, len(h) == 1 && h[0].Kind == "action" && h[0].Name == "hello" && h[0].Where == dir+"a.lua:2", "a.lua handlers: %+v", h)

	e.WriteScript(t, "b.lua", "local sb = require \"switchboard\"\n\nlocal x = = 1\n")
	e.WriteScript(t, "c.lua", "local y = )\n")
	code, body, _ := api(t, "POST", url(admin, "/reload"), nil)
	must(t, code == http.StatusUnprocessableEntity, "reload: %d %s", code, body)
	getJSON(t, url(admin, "/api/scripts"), &s)
	lr := s.LastReload
	must(t, !lr.OK && lr.Generation == 1 && s.Generation == 1 && lr.ErrorsTotal == 2 && len(lr.Errors) == 2, "after a broken reload: %+v", lr)
	must(t, lr.Errors[0].Part == "scripts" && lr.Errors[0].File == dir+"b.lua" && lr.Errors[0].Line == 3 &&
		strings.HasPrefix(lr.Errors[0].Text, dir+"b.lua:3: "), "b.lua error: %+v", lr.Errors[0])
	must(t, lr.Errors[1].File == dir+"c.lua" && lr.Errors[1].Line == 1 && strings.HasPrefix(lr.Errors[1].Text, dir+"c.lua:1: "), "c.lua error: %+v", lr.Errors[1])
	var st struct {
		LastReload reload `json:"last_reload"`
	}
	getJSON(t, url(admin, "/api/status"), &st)
	must(t, !st.LastReload.OK && st.LastReload.ErrorsTotal == 2, "status: %+v", st)

	// A script whose top level raises: its file:line and message.
	e.WriteScript(t, "b.lua", "-- fixed\n")
	e.WriteScript(t, "c.lua", "\nerror(\"boom\")\n")
	code, body, _ = api(t, "POST", url(admin, "/reload"), nil)
	must(t, code == http.StatusUnprocessableEntity, "reload: %d %s", code, body)
	getJSON(t, url(admin, "/api/scripts"), &s)
	lr = s.LastReload
	must(t, !lr.OK && lr.ErrorsTotal == 1 && lr.Errors[0].File == dir+"c.lua" && lr.Errors[0].Line == 2 &&
		strings.HasPrefix(lr.Errors[0].Text, dir+"c.lua:2: boom"), "runtime error: %+v", lr)

	e.WriteScript(t, "c.lua", "-- fixed\n")
	if err := e.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	getJSON(t, url(admin, "/api/scripts?limit=1&offset=2"), &s)
	must(t, s.LastReload.OK && s.Generation == 2 && s.LastReload.Generation == 2 && len(s.LastReload.Errors) == 0, "fixed: %+v", s.LastReload)
	must(t, s.Files.Total == 3 && len(s.Files.Items) == 1 && s.Files.Items[0].File == dir+"c.lua", "files page: %+v", s.Files)
}

type relayAnswer struct {
	ID      string `json:"id"`
	Centers []struct {
		Name, Addr, State string
		LastError         string `json:"last_error"`
		Queued            int    `json:"queued"`
	} `json:"centers"`
	Applications page[struct {
		Login, Remote string
	}] `json:"applications"`
}

type call struct {
	UUID, Flow, State, Caller, Destination, Remote string
	CallerName                                     string  `json:"caller_name"`
	Answered                                       bool    `json:"answered"`
	Duration                                       float64 `json:"duration_s"`
}

type chanAnswer struct {
	Name, Protocol, Addr, State string
	LastError                   string `json:"last_error"`
	Buffered                    int    `json:"buffered_messages"`
	BufferedBytes               int    `json:"buffered_bytes"`
}

// Relay centers up and down with the last error, logged-in applications, calls in flight and channels.
func TestAPIRelayCallsChannels(t *testing.T) {
	up, err := relaytest.NewCenter("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(up.Close)
	downAddr := closedPort(t)
	e := harness.Start(t, fmt.Sprintf(`relay:
  listen: 127.0.0.1:0
  routes_file: ""
  centers: { primary: %s, backup: %s }
esl:
  listen: 127.0.0.1:0
channels:
  - {name: feed, protocol: text-messages, host: 127.0.0.1, port: %s, permanent: true, reconnection_timeout: 100ms}
`, up.Addr(), downAddr, portOf(downAddr)), harness.Options{Scripts: map[string]string{"hold.lua": holdFlow}})
	admin := e.Addr(t, "admin")
	app, err := relaytest.Dial(e.Addr(t, "relay"), "oms-1", "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { app.Close() })

	r := waitJSON(t, url(admin, "/api/relay"), func(r relayAnswer) bool {
		return len(r.Centers) == 2 && r.Centers[0].State == "down" && r.Centers[0].LastError != "" && r.Centers[1].State == "up"
	})
	must(t, r.ID == "relay1" && r.Centers[0].Name == "backup" && r.Centers[0].Addr == downAddr &&
		strings.Contains(r.Centers[0].LastError, "connection refused"), "down center: %+v", r.Centers[0])
	must(t, r.Centers[1].Name == "primary" && r.Centers[1].LastError == "", "up center: %+v", r.Centers[1])
	must(t, r.Applications.Total == 1 && r.Applications.Items[0].Login == "oms-1", "applications: %+v", r.Applications)

	stop := startCall(t, e.Addr(t, "esl"), "status-call-1", "+442079460000")
	calls := waitJSON(t, url(admin, "/api/calls"), func(p page[call]) bool { return p.Total == 1 && p.Items[0].Answered })
	c := calls.Items[0]
	must(t, c.UUID == "status-call-1" && c.Flow == "hold" && c.Caller == "+442079460000" && c.CallerName == "Ada Lovelace" &&
		c.Destination == "5000" && c.State != "" && c.Duration >= 0, "call: %+v", c)
	stop()
	waitJSON(t, url(admin, "/api/calls"), func(p page[call]) bool { return p.Total == 0 })

	ch := waitJSON(t, url(admin, "/api/channels"), func(p page[chanAnswer]) bool {
		return p.Total == 1 && p.Items[0].LastError != ""
	})
	f := ch.Items[0]
	must(t, f.Name == "feed" && f.Protocol == "text-messages" && f.Addr == downAddr && f.State != "up" &&
		strings.Contains(f.LastError, "connection refused"), "channel: %+v", f)

	type totals struct {
		Totals struct {
			Centers        int `json:"centers"`
			Up             int `json:"centers_up"`
			Down           int `json:"centers_down"`
			Apps           int `json:"relay_applications"`
			Channels       int `json:"channels"`
			ChannelsUp     int `json:"channels_up"`
			Calls          int `json:"calls"`
			SocketConnects int `json:"socket_connections"`
		} `json:"totals"`
		Parts []struct {
			Name  string
			Addrs []string
		} `json:"parts"`
	}
	var st totals
	getJSON(t, url(admin, "/api/status"), &st)
	tt := st.Totals
	must(t, tt.Centers == 2 && tt.Up == 1 && tt.Down == 1 && tt.Apps == 1 && tt.Channels == 1 && tt.ChannelsUp == 0 && tt.Calls == 0,
		"totals: %+v", tt)
	var names []string
	for _, p := range st.Parts {
		names = append(names, p.Name)
	}
	must(t, strings.Join(names, ",") == "relay,esl,channels,admin", "parts: %v", names)
	must(t, st.Parts[0].Addrs[0] == e.Addr(t, "relay") && st.Parts[3].Addrs[0] == admin, "addresses: %+v", st.Parts)
}

// closedPort returns a 127.0.0.1 address on which nothing listens.
func closedPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

func portOf(addr string) string {
	_, p, _ := net.SplitHostPort(addr)
	return p
}
