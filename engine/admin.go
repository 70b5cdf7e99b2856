package engine

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/sirupsen/logrus"

	"github.com/switchboard/switchboard/engine/transport"
	"github.com/switchboard/switchboard/luabind"
)

// admin serves /healthz, /metrics (Prometheus text) and POST /reload on admin.listen.
type admin struct {
	e   *Engine
	srv *http.Server
	ln  net.Listener
	wg  chan struct{}
}

// Bounds of admin.status_max_bytes: room for a page of items, and not a response a browser chokes on.
const (
	minStatusBytes = 64 << 10
	maxStatusBytes = 64 << 20
)

// validate checks the admin keys other than admin.listen.
func (c AdminConfig) validate() []error {
	var errs []error
	if c.Token != "" && c.TokenFile != "" {
		errs = append(errs, errors.New("admin.token_file: expected either admin.token or admin.token_file, got both"))
	}
	if c.StatusMaxBytes < minStatusBytes || c.StatusMaxBytes > maxStatusBytes {
		errs = append(errs, fmt.Errorf("admin.status_max_bytes: expected %d to %d bytes, got %d", minStatusBytes, maxStatusBytes, c.StatusMaxBytes))
	}
	if c.MaxConnections < 1 {
		errs = append(errs, fmt.Errorf("admin.max_connections: expected a positive number, got %d", c.MaxConnections))
	}
	for i, h := range c.Hosts {
		if h == "" || strings.ContainsAny(h, "/: ") {
			errs = append(errs, fmt.Errorf("admin.hosts[%d]: expected a host name without port or scheme, such as switchboard.example.net, got %q", i, h))
		}
	}
	return errs
}

// adminToken returns the token that write requests must present ("" = none), reading admin.token_file.
func (c AdminConfig) adminToken(log *logrus.Entry) (string, error) {
	if c.TokenFile == "" {
		return c.Token, nil
	}
	st, err := os.Stat(c.TokenFile)
	if err != nil {
		return "", fmt.Errorf("admin.token_file: %w", err)
	}
	data, err := os.ReadFile(c.TokenFile)
	if err != nil {
		return "", fmt.Errorf("admin.token_file: %w", err)
	}
	tok := strings.TrimSpace(string(data))
	if tok == "" {
		return "", fmt.Errorf("admin.token_file: %s is empty", c.TokenFile)
	}
	if st.Mode().Perm()&0o077 != 0 {
		log.WithFields(logrus.Fields{"file": c.TokenFile, "mode": st.Mode().Perm().String()}).
			Warn("admin.token_file can be read by other users; chmod 600 it")
	}
	return tok, nil
}

func (e *Engine) startAdmin() error {
	cfg := e.cfg.Admin
	if cfg.Listen == "" {
		return nil
	}
	log := e.log.WithField("part", "admin")
	token, err := cfg.adminToken(log)
	if err != nil {
		return err
	}
	ln, err := transport.Listen(transport.ListenConfig{Addr: cfg.Listen, Log: log, MaxConns: cfg.MaxConnections})
	if err != nil {
		return fmt.Errorf("admin: listen %s: %w", cfg.Listen, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", e.healthz)
	mux.Handle("/metrics", promhttp.HandlerFor(e.registry, promhttp.HandlerOpts{ErrorLog: log}))
	mux.HandleFunc("/reload", e.reloadHTTP)
	mux.HandleFunc("/lua", e.luaHTTP)
	(&statusAPI{e: e, maxBytes: cfg.StatusMaxBytes}).routes(mux, cfg.PProf)
	guard := newAdminGuard(cfg, ln.Addr(), token, log, mux)
	a := &admin{e: e, ln: ln, wg: make(chan struct{}),
		// Each connection holds one of admin.max_connections slots: idle and slow ones are let go.
		srv: &http.Server{Handler: guard, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second,
			WriteTimeout: 30 * time.Second, IdleTimeout: 30 * time.Second, MaxHeaderBytes: 64 << 10, ErrorLog: nil}}
	go func() {
		defer close(a.wg)
		if err := a.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.WithError(err).Error("admin server stopped")
		}
	}()
	e.admin = a
	log.WithFields(map[string]any{"addr": ln.Addr().String(), "token": token != "", "pprof": cfg.PProf}).Info("listening")
	return nil
}

func (a *admin) shutdown(ctx context.Context) error {
	err := a.srv.Shutdown(ctx)
	<-a.wg
	return err
}

// adminGuard protects the admin listener's write requests (any method but GET and HEAD: POST /reload
// and whatever is added later) from other web pages and other users:
//   - the Host header must name this listener (its IP, localhost for a loopback or wildcard listener, any
//     IP literal for a wildcard one, or a name in admin.hosts), which defeats DNS rebinding;
//   - an Origin header, which browsers send with every cross-site POST, must name it too (CSRF);
//   - with admin.token set, "Authorization: Bearer <token>" is required (compared in constant time).
//
// The status page, its /api and /debug/pprof/ are guarded the same way on reads too, since they show
// remote addresses, caller ids and the process's memory (with a token, Basic credentials whose password is
// the token are taken as well, so a browser can open the page). Refusals are 403 (Host, Origin) or 401
// (token) with a JSON body saying why, and a log line. GET and HEAD of /healthz and /metrics stay open: they
// change nothing and show nothing about peers.
type adminGuard struct {
	next      http.Handler
	log       *logrus.Entry
	token     [sha256.Size]byte
	hasToken  bool
	ip        net.IP // the bound address
	wildcard  bool   // bound to 0.0.0.0 or ::
	loopback  bool
	hosts     []string // lower case
	listenArg string   // the host part of admin.listen as configured, lower case
}

func newAdminGuard(cfg AdminConfig, addr net.Addr, token string, log *logrus.Entry, next http.Handler) *adminGuard {
	g := &adminGuard{next: next, log: log}
	if token != "" {
		g.token, g.hasToken = sha256.Sum256([]byte(token)), true
	}
	if ta, ok := addr.(*net.TCPAddr); ok {
		g.ip = ta.IP
		g.wildcard = ta.IP.IsUnspecified()
		g.loopback = ta.IP.IsLoopback()
	}
	for _, h := range cfg.Hosts {
		g.hosts = append(g.hosts, normalHost(h))
	}
	if h, _, err := net.SplitHostPort(cfg.Listen); err == nil {
		g.listenArg = normalHost(h)
	}
	return g
}

// normalHost lower-cases a host name and drops IPv6 brackets and a final dot.
func normalHost(h string) string {
	h = strings.TrimSuffix(strings.TrimPrefix(strings.TrimSuffix(h, "]"), "["), ".")
	return strings.ToLower(h)
}

// hostAllowed reports whether hostport (a Host header or an Origin's host) names this listener.
func (g *adminGuard) hostAllowed(hostport string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = normalHost(host)
	if host == "" {
		return false
	}
	if ip := net.ParseIP(host); ip != nil {
		// An IP literal cannot be rebound to another address by DNS.
		return g.wildcard || ip.Equal(g.ip) || g.loopback && ip.IsLoopback()
	}
	if host == "localhost" {
		return g.loopback || g.wildcard
	}
	return host == g.listenArg || slices.Contains(g.hosts, host)
}

func (g *adminGuard) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	read := r.Method == http.MethodGet || r.Method == http.MethodHead
	if read && !statusPath(r.URL.Path) {
		g.next.ServeHTTP(w, r) // /healthz, /metrics
		return
	}
	if !g.hostAllowed(r.Host) {
		g.refuse(w, r, http.StatusForbidden, fmt.Sprintf("the Host header %q does not name this admin listener (add the name to admin.hosts to allow it)", r.Host))
		return
	}
	if origin := r.Header.Get("Origin"); origin != "" {
		u, err := url.Parse(origin)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || !g.hostAllowed(u.Host) {
			g.refuse(w, r, http.StatusForbidden, fmt.Sprintf("requests from the web origin %q are not accepted", origin))
			return
		}
	}
	if g.hasToken && !g.tokenOK(r, read) {
		auth := r.Header.Get("Authorization")
		if read {
			// Browsers ask for Basic credentials themselves and send them with the page's own requests.
			w.Header().Set("WWW-Authenticate", `Basic realm="switchboard admin", charset="UTF-8"`)
			msg := "the status page needs the admin token: give any user name and the token as the password, or send Authorization: Bearer <admin.token>"
			if auth != "" {
				msg = "the admin token is wrong"
			}
			g.refuse(w, r, http.StatusUnauthorized, msg)
			return
		}
		w.Header().Set("WWW-Authenticate", `Bearer realm="switchboard admin"`)
		msg := "this request needs the admin token: Authorization: Bearer <admin.token>"
		if auth != "" {
			msg = "the admin token is wrong"
		}
		g.refuse(w, r, http.StatusUnauthorized, msg)
		return
	}
	g.next.ServeHTTP(w, r)
}

// tokenOK checks "Authorization: Bearer <token>" (or, for reads, Basic credentials whose password is the
// token: what a browser sends after asking) in constant time.
func (g *adminGuard) tokenOK(r *http.Request, allowBasic bool) bool {
	auth := r.Header.Get("Authorization")
	scheme, tok, _ := strings.Cut(auth, " ")
	tok = strings.TrimSpace(tok)
	switch {
	case strings.EqualFold(scheme, "Bearer"):
	case allowBasic && strings.EqualFold(scheme, "Basic"):
		_, pass, ok := r.BasicAuth()
		if !ok {
			return false
		}
		tok = pass
	default:
		return false
	}
	sum := sha256.Sum256([]byte(tok))
	return subtle.ConstantTimeCompare(sum[:], g.token[:]) == 1
}

func (g *adminGuard) refuse(w http.ResponseWriter, r *http.Request, code int, msg string) {
	g.log.WithFields(logrus.Fields{"remote": r.RemoteAddr, "method": r.Method, "path": r.URL.Path, "host": r.Host,
		"origin": r.Header.Get("Origin"), "status": code}).Warn("admin request refused: " + msg)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	status := "forbidden"
	if code == http.StatusUnauthorized {
		status = "unauthorized"
	}
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(map[string]string{"status": status, "error": msg})
}

func (e *Engine) healthz(w http.ResponseWriter, r *http.Request) {
	g := e.lua.Current()
	w.Header().Set("Content-Type", "application/json")
	if g == nil {
		w.WriteHeader(http.StatusServiceUnavailable)
		_ = json.NewEncoder(w).Encode(map[string]any{"status": "no scripts loaded"})
		return
	}
	_ = json.NewEncoder(w).Encode(map[string]any{"status": "ok", "generation": g.ID(), "uptime_s": int(time.Since(e.started).Seconds())})
}

func (e *Engine) reloadHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		http.Error(w, "use POST /reload", http.StatusMethodNotAllowed)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	err := e.Reload(r.Context())
	if err != nil {
		var le *luabind.LoadError
		out := map[string]any{"status": "failed", "error": err.Error()}
		if errors.As(err, &le) {
			list := make([]string, len(le.Errors))
			for i, se := range le.Errors {
				list[i] = se.Error()
			}
			out["errors"] = list
		}
		w.WriteHeader(http.StatusUnprocessableEntity)
		_ = json.NewEncoder(w).Encode(out)
		return
	}
	_ = json.NewEncoder(w).Encode(map[string]any{"status": "reloaded", "generation": e.lua.Current().ID()})
}

// luaHTTP runs an API-style mod_lua script (lua.freeswitch_dir) as FreeSWITCH's `lua` API command does:
// POST /lua?cmd=<script>+<args> answers what the script wrote to stream (text/plain), 422 when it raised.
func (e *Engine) luaHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		http.Error(w, "use POST /lua?cmd=script+args", http.StatusMethodNotAllowed)
		return
	}
	cmd := r.URL.Query().Get("cmd")
	g := e.lua.Current()
	if cmd == "" || g == nil {
		http.Error(w, "-ERR no script given: POST /lua?cmd=script+args\n", http.StatusBadRequest)
		return
	}
	res := e.eslLua.RunAPIScript(r.Context(), g, cmd, e.cfg.ESL, e.log.WithField("part", "admin"))
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if res.Err != nil {
		w.WriteHeader(http.StatusUnprocessableEntity)
	}
	_, _ = w.Write([]byte(res.Output))
}
