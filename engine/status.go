package engine

import (
	"bytes"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"net/http/pprof"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/switchboard/switchboard/engine/channel"
	"github.com/switchboard/switchboard/engine/esl"
	"github.com/switchboard/switchboard/engine/relay"
	"github.com/switchboard/switchboard/engine/socket"
	"github.com/switchboard/switchboard/internal/buildinfo"
	"github.com/switchboard/switchboard/luabind"
)

// The status page: GET / (statusui/index.html with its script and style under /ui/) and the JSON behind it
// under /api/. Every list is paginated (?offset=&limit=, limit 1 to maxListLimit, default defaultListLimit),
// every string a peer or a script chooses is cut to a few hundred bytes, and every response stops adding
// list items before admin.status_max_bytes, saying so ("truncated": true). The page polls once a second.

//go:embed statusui
var statusUI embed.FS

const (
	defaultListLimit = 100
	maxListLimit     = 1000
	maxFirstMembers  = 100 // members shown per room in /api/socket/rooms (?members=, default 10)
	maxConnRooms     = 32  // rooms listed per connection (rooms_count says how many)
	maxReloadErrors  = 100 // errors kept from one failed load (errors_total says how many)
	shortText        = 256 // names, ids, addresses, caller ids
	longText         = 2048
)

// ReloadOutcome is the result of the last script load (at start, SIGHUP or POST /reload).
type ReloadOutcome struct {
	At         time.Time     `json:"at"`
	OK         bool          `json:"ok"`
	Generation int64         `json:"generation"` // the generation serving after it
	Errors     []ReloadError `json:"errors"`
	// ErrorsTotal counts every error; Errors keeps the first maxReloadErrors.
	ErrorsTotal int `json:"errors_total"`
}

// ReloadError is one problem of a failed load: a script's file:line and message, or a part's own reload
// (the relay's routes file).
type ReloadError struct {
	Part    string `json:"part"` // "scripts", or the part whose reload failed
	File    string `json:"file"`
	Line    int    `json:"line"`
	Message string `json:"message"`
	Text    string `json:"text"` // as logged: "scripts/x.lua:3: message"
}

// reloadLog keeps the last load's outcome and when the serving generation was loaded.
type reloadLog struct {
	mu       sync.Mutex
	last     ReloadOutcome
	loadedAt time.Time
}

// noteReload records a load's outcome: scriptsErr from the Lua runtime, partErrs from the parts' reloads.
func (e *Engine) noteReload(scriptsErr error, partErrs []error) {
	now := time.Now()
	out := ReloadOutcome{At: now, OK: scriptsErr == nil && len(partErrs) == 0, Errors: []ReloadError{}}
	if g := e.lua.Current(); g != nil {
		out.Generation = g.ID()
	}
	add := func(re ReloadError) {
		out.ErrorsTotal++
		if len(out.Errors) < maxReloadErrors {
			re.File, re.Message, re.Text = clip(re.File, shortText), clip(re.Message, longText), clip(re.Text, longText)
			out.Errors = append(out.Errors, re)
		}
	}
	var le *luabind.LoadError
	switch {
	case scriptsErr == nil:
	case errors.As(scriptsErr, &le):
		for _, se := range le.Errors {
			add(ReloadError{Part: "scripts", File: se.File, Line: se.Line, Message: se.Message, Text: se.Error()})
		}
	default:
		add(ReloadError{Part: "scripts", Message: scriptsErr.Error(), Text: scriptsErr.Error()})
	}
	for _, err := range partErrs {
		msg := err.Error()
		part, _, _ := strings.Cut(msg, ":") // the engine wraps a part's reload error as "<part>: ..."
		add(ReloadError{Part: part, Message: msg, Text: msg})
	}
	e.reloadLog.mu.Lock()
	if scriptsErr == nil {
		e.reloadLog.loadedAt = now
	}
	e.reloadLog.last = out
	e.reloadLog.mu.Unlock()
}

// LastReload is the outcome of the last script load.
func (e *Engine) LastReload() ReloadOutcome {
	e.reloadLog.mu.Lock()
	defer e.reloadLog.mu.Unlock()
	return e.reloadLog.last
}

// statusAPI serves the status page and its JSON.
type statusAPI struct {
	e        *Engine
	maxBytes int
}

// routes adds the page, /api/... and, with admin.pprof, /debug/pprof/ to mux. adminGuard checks the Host
// header and the token of these paths (statusPath).
func (a *statusAPI) routes(mux *http.ServeMux, pprofOn bool) {
	ui, _ := fs.Sub(statusUI, "statusui")
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		pageHeaders(w)
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		http.ServeFileFS(w, r, ui, "index.html")
	})
	assets := http.StripPrefix("/ui/", http.FileServerFS(ui))
	mux.Handle("GET /ui/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		pageHeaders(w)
		assets.ServeHTTP(w, r)
	}))
	mux.HandleFunc("GET /api/status", a.status)
	mux.HandleFunc("GET /api/scripts", a.scripts)
	mux.HandleFunc("GET /api/socket/connections", a.socketConns)
	mux.HandleFunc("GET /api/socket/rooms", a.socketRooms)
	mux.HandleFunc("GET /api/relay", a.relay)
	mux.HandleFunc("GET /api/calls", a.calls)
	mux.HandleFunc("GET /api/channels", a.channels)
	mux.HandleFunc("GET /api/cluster", a.cluster)
	mux.HandleFunc("/api/", func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			apiError(w, http.StatusMethodNotAllowed, "the status API is read-only: use GET")
			return
		}
		apiError(w, http.StatusNotFound, fmt.Sprintf("no such endpoint: %s (see docs/operations.md, Status page)", clip(r.URL.Path, shortText)))
	})
	if pprofOn {
		mux.HandleFunc("GET /debug/pprof/", pprof.Index)
		mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
		// Profile and Trace move their response's write deadline past ?seconds= themselves.
		mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	}
}

// statusPath reports whether path belongs to the status page, its API or the profiler: what adminGuard
// protects on reads too.
func statusPath(path string) bool {
	return path == "/" || path == "/api" || strings.HasPrefix(path, "/ui/") || strings.HasPrefix(path, "/api/") ||
		strings.HasPrefix(path, "/debug/pprof")
}

// pageHeaders keep the page to its own script and style, out of frames, and out of caches.
func pageHeaders(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-store")
}

// list is one page of a list: the items from offset, at most limit, within the byte bound.
type list struct {
	Total  int `json:"total"`
	Offset int `json:"offset"`
	Limit  int `json:"limit"`
	// Items are JSON values (encoded once, so that the byte bound is exact).
	Items []json.RawMessage `json:"items"`
	// Truncated says the byte bound (admin.status_max_bytes) cut the page before limit items.
	Truncated bool `json:"truncated"`
}

// budget counts the bytes of one response.
type budget struct{ left int }

// spend counts what v encodes to (a part of the answer that is not a list).
func (b *budget) spend(v any) {
	raw, _ := json.Marshal(v)
	b.left -= len(raw)
}

// addItems encodes items into l while they fit in b.
func addItems[T any](l *list, b *budget, items []T) {
	l.Items = make([]json.RawMessage, 0, len(items))
	for _, it := range items {
		raw, err := json.Marshal(it)
		if err != nil {
			continue
		}
		if len(raw)+1 > b.left {
			l.Truncated = true
			return
		}
		b.left -= len(raw) + 1
		l.Items = append(l.Items, raw)
	}
}

// envelope is the bytes a response spends outside its lists.
const envelope = 8 << 10

func (a *statusAPI) newBudget() *budget { return &budget{left: a.maxBytes - envelope} }

// pageArgs reads ?offset= and ?limit=.
func pageArgs(r *http.Request) (offset, limit int, err error) {
	offset, limit = 0, defaultListLimit
	if v := r.URL.Query().Get("offset"); v != "" {
		if offset, err = strconv.Atoi(v); err != nil || offset < 0 {
			return 0, 0, fmt.Errorf("offset: expected a number from 0, got %q", clip(v, 32))
		}
	}
	if v := r.URL.Query().Get("limit"); v != "" {
		if limit, err = strconv.Atoi(v); err != nil || limit < 1 || limit > maxListLimit {
			return 0, 0, fmt.Errorf("limit: expected a number from 1 to %d, got %q", maxListLimit, clip(v, 32))
		}
	}
	return offset, limit, nil
}

func apiError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, map[string]string{"error": msg})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	raw, err := json.Marshal(v) // escapes <, > and & too
	if err != nil {
		code, raw = http.StatusInternalServerError, []byte(`{"error":"encoding the answer failed"}`)
	}
	w.WriteHeader(code)
	_, _ = w.Write(append(raw, '\n'))
}

// clip cuts s to at most n bytes on a rune boundary, ending it with "…" when cut; invalid UTF-8 is
// replaced.
func clip(s string, n int) string {
	if !utf8.ValidString(s) {
		s = string(bytes.ToValidUTF8([]byte(s), []byte("\uFFFD")))
	}
	if len(s) <= n {
		return s
	}
	cut := n - len("…")
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

// findPart returns the engine's part of type T, and false when that part is not enabled.
func findPart[T Part](e *Engine) (T, bool) {
	for _, np := range e.parts {
		if p, ok := np.p.(T); ok {
			return p, true
		}
	}
	var zero T
	return zero, false
}

// partOf is findPart's part alone (nil when the part is not enabled).
func partOf[T Part](e *Engine) T {
	p, _ := findPart[T](e)
	return p
}

// The parts, found by type.
func (e *Engine) socketServer() *socket.Server { return partOf[*socket.Server](e) }
func (e *Engine) relayPart() *relay.Relay      { return partOf[*relay.Relay](e) }
func (e *Engine) eslServer() *esl.Server       { return partOf[*esl.Server](e) }
func (e *Engine) channelSet() *channel.Set     { return partOf[*channel.Set](e) }

// PartStatus is one part on /api/status.
type PartStatus struct {
	Name  string   `json:"name"`
	Addrs []string `json:"addrs"`
}

// Totals are the sizes of every list, for the page's headings.
type Totals struct {
	SocketConnections int `json:"socket_connections"`
	Rooms             int `json:"rooms"`
	RelayConnections  int `json:"relay_connections"`
	RelayApps         int `json:"relay_applications"`
	Centers           int `json:"centers"`
	CentersUp         int `json:"centers_up"`
	CentersDown       int `json:"centers_down"`
	CentersStalled    int `json:"centers_stalled"`
	Calls             int `json:"calls"`
	Channels          int `json:"channels"`
	ChannelsUp        int `json:"channels_up"`
}

func (a *statusAPI) status(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, a.statusBody())
}

// statusBody is /api/status, and what this node answers to another node's status request.
func (a *statusAPI) statusBody() any {
	e := a.e
	bi := buildinfo.Get()
	now := time.Now()
	out := struct {
		Version    string        `json:"version"`
		Commit     string        `json:"commit"`
		Go         string        `json:"go"`
		StartedAt  time.Time     `json:"started_at"`
		Uptime     float64       `json:"uptime_s"`
		Config     string        `json:"config_file"`
		Generation int64         `json:"generation"`
		Parts      []PartStatus  `json:"parts"`
		Totals     Totals        `json:"totals"`
		LastReload ReloadOutcome `json:"last_reload"`
		// Node is the node this status describes (cluster.node_id); "" for an engine in no cluster.
		Node    string `json:"node"`
		Cluster string `json:"cluster"` // cluster.name, "" for an engine in no cluster
	}{Version: bi.Version, Commit: bi.Commit, Go: bi.Go, StartedAt: e.started, Uptime: now.Sub(e.started).Seconds(),
		Config: e.cfg.Origin.File, Parts: []PartStatus{}, LastReload: e.LastReload()}
	if e.node != nil {
		out.Node, out.Cluster = e.node.ID(), e.node.Name()
	}
	if g := e.lua.Current(); g != nil {
		out.Generation = g.ID()
	}
	addrs := e.Addrs()
	names := make([]string, 0, len(e.parts)+1)
	for _, np := range e.parts {
		names = append(names, np.name)
	}
	if e.admin != nil {
		names = append(names, "admin")
	}
	for _, name := range names {
		ps := PartStatus{Name: name, Addrs: []string{}}
		if ad, ok := addrs[name]; ok {
			ps.Addrs = append(ps.Addrs, ad.String())
		}
		out.Parts = append(out.Parts, ps)
	}
	t := &out.Totals
	if s := e.socketServer(); s != nil {
		t.SocketConnections, t.Rooms = s.Conns(), s.RoomCount()
	}
	if rl := e.relayPart(); rl != nil {
		st := rl.Status(now)
		t.RelayConnections = st.Connections
		_, t.RelayApps = rl.AppsPage(0, 0)
		t.Centers = len(st.Centers)
		for _, c := range st.Centers {
			switch c.State {
			case relay.CenterUp:
				t.CentersUp++
			case relay.CenterStalled:
				t.CentersStalled++
			default:
				t.CentersDown++
			}
		}
	}
	if s := e.eslServer(); s != nil {
		t.Calls = s.Active()
	}
	if set := e.channelSet(); set != nil {
		page, n := set.StatusPage(0, len(set.Names()))
		t.Channels = n
		for _, c := range page {
			if c.State == channel.StateUp {
				t.ChannelsUp++
			}
		}
	}
	return out
}

func (a *statusAPI) scripts(w http.ResponseWriter, r *http.Request) {
	offset, limit, err := pageArgs(r)
	if err != nil {
		apiError(w, http.StatusBadRequest, err.Error())
		return
	}
	out := struct {
		Generation int64         `json:"generation"`
		LoadedAt   time.Time     `json:"loaded_at"`
		Dir        string        `json:"dir"`
		Files      list          `json:"files"`
		LastReload ReloadOutcome `json:"last_reload"`
	}{Dir: a.e.cfg.Lua.ScriptsDir, LastReload: a.e.LastReload(), Files: list{Offset: offset, Limit: limit}}
	a.e.reloadLog.mu.Lock()
	out.LoadedAt = a.e.reloadLog.loadedAt
	a.e.reloadLog.mu.Unlock()
	var files []luabind.ScriptInfo
	if g := a.e.lua.Current(); g != nil {
		out.Generation = g.ID()
		files = g.Scripts()
	}
	out.Files.Total = len(files)
	b := a.newBudget()
	b.spend(out.LastReload) // bounded already: maxReloadErrors of at most 4.5 KiB each
	page := window(files, offset, limit)
	for i := range page {
		f := &page[i]
		f.File = clip(f.File, shortText)
		for j := range f.Handlers {
			h := &f.Handlers[j]
			h.Kind, h.Name, h.Where = clip(h.Kind, shortText), clip(h.Name, shortText), clip(h.Where, shortText)
		}
	}
	addItems(&out.Files, b, page)
	writeJSON(w, http.StatusOK, out)
}

// pagedPart starts an endpoint that pages through one part's state: the part (404 when it is disabled)
// and the page asked for (400 when malformed); ok is false when that answer is already written.
func pagedPart[T Part](e *Engine, w http.ResponseWriter, r *http.Request, name string) (p T, offset, limit int, ok bool) {
	p, found := findPart[T](e)
	if !found {
		apiError(w, http.StatusNotFound, "the "+name+" part is disabled")
		return p, 0, 0, false
	}
	offset, limit, err := pageArgs(r)
	if err != nil {
		apiError(w, http.StatusBadRequest, err.Error())
		return p, 0, 0, false
	}
	return p, offset, limit, true
}

func (a *statusAPI) socketConns(w http.ResponseWriter, r *http.Request) {
	s, offset, limit, ok := pagedPart[*socket.Server](a.e, w, r, "socket")
	if !ok {
		return
	}
	room := r.URL.Query().Get("room")
	page, n := s.ConnsPage(room, offset, limit)
	out := struct {
		Room string `json:"room,omitempty"`
		list
	}{Room: clip(room, shortText), list: list{Total: n, Offset: offset, Limit: limit}}
	type conn struct {
		socket.ConnStatus
		RoomsCount int `json:"rooms_count"`
	}
	items := make([]conn, len(page))
	for i, c := range page {
		c.Remote = clip(c.Remote, shortText)
		items[i].RoomsCount = len(c.Rooms)
		c.Rooms = c.Rooms[:min(len(c.Rooms), maxConnRooms)]
		for j := range c.Rooms {
			c.Rooms[j] = clip(c.Rooms[j], shortText)
		}
		items[i].ConnStatus = c
	}
	addItems(&out.list, a.newBudget(), items)
	writeJSON(w, http.StatusOK, out)
}

func (a *statusAPI) socketRooms(w http.ResponseWriter, r *http.Request) {
	s, offset, limit, ok := pagedPart[*socket.Server](a.e, w, r, "socket")
	if !ok {
		return
	}
	members := 10
	if v := r.URL.Query().Get("members"); v != "" {
		var err error
		if members, err = strconv.Atoi(v); err != nil || members < 0 || members > maxFirstMembers {
			apiError(w, http.StatusBadRequest, fmt.Sprintf("members: expected a number from 0 to %d, got %q", maxFirstMembers, clip(v, 32)))
			return
		}
	}
	page, n := s.RoomsPage(offset, limit, members)
	for i := range page {
		page[i].Name = clip(page[i].Name, shortText)
	}
	out := list{Total: n, Offset: offset, Limit: limit}
	addItems(&out, a.newBudget(), page)
	writeJSON(w, http.StatusOK, out)
}

func (a *statusAPI) relay(w http.ResponseWriter, r *http.Request) {
	rl, offset, limit, ok := pagedPart[*relay.Relay](a.e, w, r, "relay")
	if !ok {
		return
	}
	st := rl.Status(time.Now())
	for i := range st.Centers {
		c := &st.Centers[i]
		c.Name, c.Addr, c.LastError = clip(c.Name, shortText), clip(c.Addr, shortText), clip(c.LastError, longText)
	}
	b := a.newBudget()
	b.spend(st) // one entry per configured center
	page, n := rl.AppsPage(offset, limit)
	for i := range page {
		page[i].Login, page[i].Remote = clip(page[i].Login, shortText), clip(page[i].Remote, shortText)
	}
	out := struct {
		relay.Status
		Applications list `json:"applications"`
	}{Status: st, Applications: list{Total: n, Offset: offset, Limit: limit}}
	addItems(&out.Applications, b, page)
	writeJSON(w, http.StatusOK, out)
}

func (a *statusAPI) calls(w http.ResponseWriter, r *http.Request) {
	s, offset, limit, ok := pagedPart[*esl.Server](a.e, w, r, "esl")
	if !ok {
		return
	}
	page, n := s.CallsPage(offset, limit, time.Now())
	for i := range page {
		c := &page[i]
		c.UUID, c.Flow, c.State = clip(c.UUID, shortText), clip(c.Flow, shortText), clip(c.State, shortText)
		c.Caller, c.CallerName, c.Destination = clip(c.Caller, shortText), clip(c.CallerName, shortText), clip(c.Destination, shortText)
		c.Remote = clip(c.Remote, shortText)
	}
	out := list{Total: n, Offset: offset, Limit: limit}
	addItems(&out, a.newBudget(), page)
	writeJSON(w, http.StatusOK, out)
}

func (a *statusAPI) channels(w http.ResponseWriter, r *http.Request) {
	set := a.e.channelSet()
	offset, limit, err := pageArgs(r)
	if err != nil {
		apiError(w, http.StatusBadRequest, err.Error())
		return
	}
	out := list{Offset: offset, Limit: limit}
	var page []channel.Status
	if set != nil {
		page, out.Total = set.StatusPage(offset, limit)
	}
	for i := range page {
		c := &page[i]
		c.Name, c.Addr, c.LastError = clip(c.Name, shortText), clip(c.Addr, shortText), clip(c.LastError, longText)
	}
	addItems(&out, a.newBudget(), page)
	writeJSON(w, http.StatusOK, out)
}

// window is list[offset:offset+limit], clamped.
func window[T any](items []T, offset, limit int) []T {
	if offset < 0 || offset >= len(items) || limit <= 0 {
		return nil
	}
	return items[offset:min(len(items), offset+limit)]
}
