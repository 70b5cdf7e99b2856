package engine

import (
	"errors"
	"io"
	"io/fs"

	"github.com/sirupsen/logrus"

	"github.com/switchboard/switchboard/engine/relay"
	"github.com/switchboard/switchboard/engine/relay/relaylua"
	"github.com/switchboard/switchboard/luabind"
)

// CheckWarnings lists what in a valid configuration deserves attention, for `switchboard check` to print
// as warnings (it still exits 0): e.g. a relay journal without retention.
func CheckWarnings(cfg Config) []string { return cfg.Relay.Warnings() }

// Check validates offline what a start would load, without listening: every script (compiled, top level run),
// then the relay's routes file with its expressions compiled. Each problem is one error reading
// `file:line: message`. scripts nil reads cfg.Lua.ScriptsDir.
func Check(cfg Config, scripts fs.FS, display string) []error {
	l := logrus.New()
	l.SetOutput(io.Discard)
	rt, _, err := ScriptRuntime(cfg, scripts, display, logrus.NewEntry(l))
	if err != nil {
		return []error{err}
	}
	defer rt.Close()
	if err := rt.Load(); err != nil {
		var le *luabind.LoadError
		if errors.As(err, &le) {
			out := make([]error, len(le.Errors))
			for i, se := range le.Errors {
				out[i] = se
			}
			return out
		}
		return []error{err}
	}
	return relay.CheckConfig(cfg.Relay, relaylua.Compiler(rt))
}
