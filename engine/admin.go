package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

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

func (e *Engine) startAdmin() error {
	if e.cfg.Admin.Listen == "" {
		return nil
	}
	ln, err := transport.Listen(transport.ListenConfig{Addr: e.cfg.Admin.Listen, Log: e.log.WithField("part", "admin")})
	if err != nil {
		return fmt.Errorf("admin: listen %s: %w", e.cfg.Admin.Listen, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", e.healthz)
	mux.Handle("/metrics", promhttp.HandlerFor(e.registry, promhttp.HandlerOpts{ErrorLog: e.log.WithField("part", "admin")}))
	mux.HandleFunc("/reload", e.reloadHTTP)
	mux.HandleFunc("/lua", e.luaHTTP)
	a := &admin{e: e, ln: ln, wg: make(chan struct{}),
		srv: &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, ErrorLog: nil}}
	go func() {
		defer close(a.wg)
		if err := a.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			e.log.WithField("part", "admin").WithError(err).Error("admin server stopped")
		}
	}()
	e.admin = a
	e.log.WithFields(map[string]any{"part": "admin", "addr": ln.Addr().String()}).Info("listening")
	return nil
}

func (a *admin) shutdown(ctx context.Context) error {
	err := a.srv.Shutdown(ctx)
	<-a.wg
	return err
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
	res := g.RunAPIScript(r.Context(), cmd, e.cfg.ESL, e.log.WithField("part", "admin"))
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if res.Err != nil {
		w.WriteHeader(http.StatusUnprocessableEntity)
	}
	_, _ = w.Write([]byte(res.Output))
}
