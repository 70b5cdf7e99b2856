package main

import (
	"fmt"
	"os"
	"sort"
	"strings"

	"github.com/sirupsen/logrus"

	"github.com/switchboard/switchboard/engine"
	"github.com/switchboard/switchboard/internal/sdnotify"
)

// serviceManager tells systemd (a Type=notify unit, deploy/systemd/switchboard.service) when the engine is
// ready, reloading and stopping. Outside systemd it does nothing. A failed notification is logged and
// otherwise ignored: the engine serves either way, and systemd's start timeout reports a unit that never
// became ready.
type serviceManager struct {
	n   *sdnotify.Notifier
	log *logrus.Entry
}

func newServiceManager(log *logrus.Entry) serviceManager {
	n, err := sdnotify.New(os.Getenv("NOTIFY_SOCKET"))
	if err != nil {
		log.WithError(err).Warn("cannot tell systemd the service state")
	}
	return serviceManager{n: n, log: log}
}

// ready follows a start or a reload; reloadErr is the reload's outcome (nil after a start).
func (s serviceManager) ready(e *engine.Engine, reloadErr error) {
	status := "serving " + describe(e)
	if reloadErr != nil {
		status = "reload failed, the previous scripts keep serving: " + firstLine(reloadErr.Error()) + "; " + status
	}
	s.report("READY", s.n.Ready(status))
}

func (s serviceManager) reloading() {
	s.report("RELOADING", s.n.Reloading("reloading scripts and configuration"))
}

func (s serviceManager) stopping(sig os.Signal) {
	s.report("STOPPING", s.n.Stopping("shutting down on "+sig.String()))
}

func (s serviceManager) report(state string, err error) {
	if err != nil {
		s.log.WithError(err).WithField("state", state).Warn("cannot tell systemd the service state")
	}
}

// describe names the script generation and every listener: "generation 3; admin 127.0.0.1:9090, esl ...".
func describe(e *engine.Engine) string {
	addrs := e.Addrs()
	names := make([]string, 0, len(addrs))
	for name := range addrs {
		names = append(names, name)
	}
	sort.Strings(names)
	for i, name := range names {
		names[i] = name + " " + addrs[name].String()
	}
	gen := int64(0)
	if g := e.Runtime().Current(); g != nil {
		gen = g.ID()
	}
	return fmt.Sprintf("generation %d; %s", gen, strings.Join(names, ", "))
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}
