package relay

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/sirupsen/logrus"
)

// routesQuiet is how long the routes file must see no change event, and then keep the same content,
// before a file event loads it: editors truncate and write in several steps, and no half-written file
// may become the live table.
const routesQuiet = 100 * time.Millisecond

// PlaceholderRoutes is what a missing routes file is created with: the format, and no rule (every message
// goes to every center until rules are added).
const PlaceholderRoutes = `# relay.routes — which centers each AMI message goes to. Created by switchboard because the file named by
# relay.routes_file did not exist. It has no rule yet, so every message goes to every center.
# Edit it while the relay runs: a change applies within a second (a broken file is logged as
# relay.routes:LINE: reason and changes nothing; a file with no rule is applied only by SIGHUP or POST /reload).
#
# ROUTE_NAME;PRIORITY;MESSAGE_TYPES;OBJECT_TYPES;PARAM_TYPES;EXPRESSION;ROUTE_LIST;ON_TRUE;ON_FALSE
#   PRIORITY      lower runs first; ties by name
#   MESSAGE_TYPES comma list of O, D, C, S, A, or *
#   OBJECT_TYPES  comma list of T values, * = all, blank = rule skipped
#   PARAM_TYPES   comma list of "Name Type [nonull]" (String Int Integer Long Short Byte Double Float Boolean
#                 Char UTC UTCN BigInteger BigDecimal Number)
#   EXPRESSION    a boolean Lua expression over the declared params (AMIScript's && || != ! are accepted);
#                 blank = true
#   ROUTE_LIST    comma list of relay.centers names, * = all centers, blank = none
#   ON_TRUE/ON_FALSE  BREAK stops, blank or CONTINUE goes on to the next rule
# A center gets a message at most once; when rules exist and none routes a message, it is acknowledged and
# dropped (counted in switchboard_relay_unrouted_total). Example (3forge's configuration guide):
#RULE0;0;O,D;NewOrder,Cancel;Symbol String nonull;Symbol < "F";Center0;BREAK;
#RULE1;1;O,D;NewOrder,Cancel;Symbol String nonull;Symbol < "Q";Center1;BREAK;
#RULE2;2;O,D;NewOrder,Cancel;Symbol String nonull;true;Center2,Center3;BREAK;
#RULE3;3;*;*;;true;*;BREAK;
`

// initRoutes loads the routes file at New. A missing file is created with PlaceholderRoutes (as 3forge
// does): no rule, every message to every center.
func (r *Relay) initRoutes() error {
	src, err := r.readRoutes()
	if errors.Is(err, os.ErrNotExist) {
		src = []byte(PlaceholderRoutes)
		log := r.log.WithField("routes_file", r.cfg.RoutesFile)
		if werr := writePlaceholder(r.cfg.RoutesFile); werr != nil {
			log.WithError(werr).Warn("routes file not found and not created: every message goes to every center until it exists")
		} else {
			log.Warn("routes file not found: created it with instructions and no rule (every message goes to every center until rules are added)")
		}
		err = nil
	}
	if err != nil {
		return err
	}
	tab, err := r.parseRoutes(src)
	if err != nil {
		return err
	}
	r.table.Store(tab)
	r.routesSrc = src
	return nil
}

func writePlaceholder(path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(PlaceholderRoutes); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// readRoutes reads the routes file ("" = no file: no rules).
func (r *Relay) readRoutes() ([]byte, error) {
	if r.cfg.RoutesFile == "" {
		return nil, nil
	}
	src, err := os.ReadFile(r.cfg.RoutesFile)
	if err != nil {
		return nil, fmt.Errorf("relay.routes_file: %w", err)
	}
	return src, nil
}

// parseRoutes builds a table from the routes file's content, ready for use.
func (r *Relay) parseRoutes(src []byte) (*Table, error) {
	name := "relay.routes"
	if r.cfg.RoutesFile != "" {
		name = filepath.Base(r.cfg.RoutesFile)
	}
	t, err := ParseRoutes(name, src, r.centerNames, r.compile)
	if err != nil {
		return nil, err
	}
	t.SetMemo(r.cfg.ExpressionCache, r.cfg.ExpressionCacheBytes)
	t.OnEvalError(r.exprFailed)
	return t, nil
}

// Reload re-reads the routes file (SIGHUP, POST /reload); a bad file keeps the table in use. A file with
// no rule is applied (every message then goes to every center), with a warning.
func (r *Relay) Reload(ctx context.Context) error {
	src, err := r.readRoutes()
	if err != nil {
		r.m.routeReloads.WithLabelValues("failed").Inc()
		r.log.WithError(err).Error("routes not reloaded; the previous table stays in use")
		return err
	}
	_, err = r.applyRoutes(src, true)
	return err
}

// applyRoutes parses src and makes it the table in use. From a file event (explicit false), a file with no
// rule does not replace a table that has rules: an editor that truncates before it writes would otherwise
// send everything everywhere for a moment. applied is false when the table in use stayed.
func (r *Relay) applyRoutes(src []byte, explicit bool) (applied bool, err error) {
	r.reloadMu.Lock()
	defer r.reloadMu.Unlock()
	if !explicit && bytes.Equal(src, r.routesSrc) {
		return false, nil // an event that changed nothing (editors touch files several times per save)
	}
	tab, err := r.parseRoutes(src)
	if err != nil {
		r.m.routeReloads.WithLabelValues("failed").Inc()
		r.log.WithError(err).Error("routes not reloaded; the previous table stays in use")
		return false, err
	}
	cur := len(r.table.Load().Rules())
	if len(tab.Rules()) == 0 && cur > 0 {
		log := r.log.WithFields(logrus.Fields{"routes_file": r.cfg.RoutesFile, "rules_in_use": cur})
		if !explicit {
			r.m.routeReloads.WithLabelValues("held").Inc()
			log.Warn("routes file has no rule: not applied from a file change (the table in use stays); reload (SIGHUP or POST /reload) to send every message to every center")
			return false, nil
		}
		log.Warn("routes file has no rule: every message now goes to every center (explicit reload)")
	}
	r.table.Store(tab)
	r.routesSrc = src
	r.m.routeReloads.WithLabelValues("ok").Inc()
	r.log.WithField("rules", len(tab.Rules())).Info("routes loaded")
	return true, nil
}

// watchRoutes reloads the routes file when it changes. The directory is watched, so editors that replace
// the file by renaming are seen too. A change is loaded once the file has had no event for routesQuiet and
// then read the same twice, routesQuiet apart.
func (r *Relay) watchRoutes(ctx context.Context) error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return err
	}
	abs, err := filepath.Abs(r.cfg.RoutesFile)
	if err != nil {
		w.Close()
		return err
	}
	if err := w.Add(filepath.Dir(abs)); err != nil {
		w.Close()
		return err
	}
	r.centerW.Add(1)
	go func() {
		defer r.centerW.Done()
		defer w.Close()
		timer := time.NewTimer(time.Hour)
		timer.Stop()
		defer timer.Stop()
		var (
			armed    bool
			snapshot []byte // the content read when the file went quiet; nil = not read yet
			readErr  error
		)
		arm := func() {
			timer.Reset(routesQuiet)
			armed, snapshot, readErr = true, nil, nil
		}
		for {
			var fire <-chan time.Time
			if armed {
				fire = timer.C
			}
			select {
			case <-ctx.Done():
				return
			case ev, ok := <-w.Events:
				if !ok {
					return
				}
				if filepath.Clean(ev.Name) == abs && ev.Op&(fsnotify.Write|fsnotify.Create|fsnotify.Rename|fsnotify.Remove) != 0 {
					if !timer.Stop() && armed {
						select {
						case <-timer.C:
						default:
						}
					}
					arm()
				}
			case <-fire:
				src, err := os.ReadFile(abs)
				if snapshot == nil && readErr == nil {
					// quiet for routesQuiet: read, and read again routesQuiet later
					snapshot, readErr = src, err
					if snapshot == nil {
						snapshot = []byte{}
					}
					timer.Reset(routesQuiet)
					continue
				}
				if (err == nil) != (readErr == nil) || !bytes.Equal(src, snapshot) {
					arm() // still changing
					continue
				}
				armed = false
				if err != nil {
					if !errors.Is(err, os.ErrNotExist) {
						r.m.routeReloads.WithLabelValues("failed").Inc()
						r.log.WithError(err).Error("routes not reloaded; the previous table stays in use")
					} else {
						r.log.WithField("routes_file", r.cfg.RoutesFile).Warn("routes file removed: the table in use stays")
					}
					continue
				}
				_, _ = r.applyRoutes(src, false)
			case err, ok := <-w.Errors:
				if !ok {
					return
				}
				r.log.WithError(err).Warn("routes file watcher")
			}
		}
	}()
	return nil
}
