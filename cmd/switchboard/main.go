// Command switchboard runs the engine: `switchboard [run] [-c file]`, `switchboard check`, `switchboard version`,
// `switchboard flow test <flow>`.
//
// Exit codes: 0 success; 1 the configuration, the scripts, the start or the shutdown failed; 2 the command
// line is wrong (unknown command or flag, missing or extra argument, malformed flag value).
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/spf13/cobra"

	"github.com/switchboard/switchboard"
	"github.com/switchboard/switchboard/engine"
	"github.com/switchboard/switchboard/engine/gcfloor"
	"github.com/switchboard/switchboard/internal/buildinfo"
)

const (
	exitError = 1
	exitUsage = 2
)

// configSearch is where a configuration file is looked for when -c is not given, in order. Without one
// the built-in defaults and scripts are used.
func configSearch() []string {
	return []string{filepath.Join("configs", "switchboard.yaml"), "/etc/switchboard/switchboard.yaml"}
}

type rootOptions struct {
	ConfigFile string   // -c; "" = the first of search that exists, else the built-in defaults
	Set        []string // --set key=value
	LogLevel   string
	LogFormat  string
	search     []string
	stdout     io.Writer
	stderr     io.Writer
}

func main() {
	os.Exit(execute(os.Args[1:], os.Stdout, os.Stderr))
}

// usageError is a wrong command line; it exits 2.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usagef(format string, a ...any) error { return usageError{fmt.Errorf(format, a...)} }

// usageArgs makes a failed positional-argument check a usage error.
func usageArgs(check cobra.PositionalArgs) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if err := check(cmd, args); err != nil {
			return usageError{err}
		}
		return nil
	}
}

func execute(args []string, stdout, stderr io.Writer) int {
	opts := &rootOptions{stdout: stdout, stderr: stderr, search: configSearch()}
	root := &cobra.Command{
		Use:           "switchboard",
		Short:         "Switchboard: a network engine scripted in Lua (socket server, AMI relay, FreeSWITCH call control, active sockets)",
		Version:       versionString(),
		SilenceUsage:  true,
		SilenceErrors: true,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usagef("unknown command %q (commands: run, check, version, flow)", args[0])
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, _ []string) error { return run(cmd.Context(), opts) },
	}
	root.SetVersionTemplate("{{.Version}}\n")
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	pf := root.PersistentFlags()
	pf.StringVarP(&opts.ConfigFile, "config", "c", "", "configuration file (default: "+strings.Join(opts.search, ", then ")+
		", else the built-in defaults); relative paths in it resolve from its folder")
	pf.StringArrayVar(&opts.Set, "set", nil, "override a key: --set socket.listen=127.0.0.1:5001 (repeatable; relative paths resolve from the working directory)")
	pf.StringVar(&opts.LogLevel, "log-level", "", "override log.level (debug, info, warn, error)")
	pf.StringVar(&opts.LogFormat, "log-format", "", "override log.format (text, json)")
	root.AddCommand(
		&cobra.Command{Use: "run", Short: "run the engine (the default command)", Args: usageArgs(cobra.NoArgs),
			RunE: func(cmd *cobra.Command, _ []string) error { return run(cmd.Context(), opts) }},
		&cobra.Command{Use: "check", Short: "validate the configuration and compile and load every script", Args: usageArgs(cobra.NoArgs),
			RunE: func(cmd *cobra.Command, _ []string) error { return check(opts) }},
		&cobra.Command{Use: "version", Short: "print the version", Args: usageArgs(cobra.NoArgs),
			Run: func(cmd *cobra.Command, _ []string) { fmt.Fprintln(stdout, versionString()) }},
		flowCmd(opts),
		runScriptCmd(opts),
	)
	err := root.ExecuteContext(context.Background())
	var usage usageError
	var quiet errReported
	switch {
	case err == nil:
		return 0
	case errors.As(err, &usage):
		fmt.Fprintf(stderr, "switchboard: %v\nRun 'switchboard --help' for usage.\n", err)
		return exitUsage
	case errors.As(err, &quiet):
		return exitError
	default:
		fmt.Fprintln(stderr, "switchboard:", err)
		return exitError
	}
}

// errReported is an error whose details were already printed.
type errReported struct{ n int }

func (e errReported) Error() string { return fmt.Sprintf("%d problem(s)", e.n) }

func versionString() string {
	bi := buildinfo.Get()
	rev, built := "", ""
	if c := bi.ShortCommit(); c != "" {
		rev = " " + c
	}
	if bi.Date != "" {
		built = ", built " + bi.Date
	}
	return fmt.Sprintf("switchboard %s%s (%s %s/%s%s)", bi.Version, rev, bi.Go, runtime.GOOS, runtime.GOARCH, built)
}

// findConfig returns the first file of search that exists, or "" when none does. A file that exists but
// cannot be read is an error, never a reason to fall back to the defaults.
func findConfig(search []string) (string, error) {
	for _, f := range search {
		info, err := os.Stat(f)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			continue
		case err != nil:
			return "", fmt.Errorf("config: %w", err)
		case info.IsDir():
			return "", fmt.Errorf("config: %s is a directory", f)
		}
		return f, nil
	}
	return "", nil
}

// loadConfig reads the configuration the way every command does: -c (or the first file found, or the
// built-in defaults), then SWITCHBOARD_* environment variables, then flags.
func loadConfig(opts *rootOptions) (engine.Config, error) {
	src := engine.ConfigSource{File: opts.ConfigFile, Env: os.Environ(), Set: map[string]string{}}
	if src.File == "" {
		found, err := findConfig(opts.search)
		if err != nil {
			return engine.Config{}, err
		}
		src.File = found
	}
	for _, kv := range opts.Set {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return engine.Config{}, usagef("--set %q: expected key=value", kv)
		}
		src.Set[strings.TrimSpace(k)] = v
	}
	if opts.LogLevel != "" {
		src.Set["log.level"] = opts.LogLevel
	}
	if opts.LogFormat != "" {
		src.Set["log.format"] = opts.LogFormat
	}
	return engine.LoadConfig(src)
}

// scripts is what a command loads: a directory (fsys nil) or the built-in scripts.
type scripts struct {
	fsys    fs.FS  // nil: read dir
	dir     string // absolute; "" for the built-in scripts
	display string // prefix of script names in errors: dir relative to the working directory when below it
}

func (s scripts) String() string {
	if s.fsys != nil {
		return "built-in scripts"
	}
	return s.dir
}

// scriptsFor returns the scripts a configuration names. The built-in scripts are used only with the
// built-in defaults (no configuration file) and no lua.scripts_dir from the environment or a flag; a
// scripts_dir that is named and missing is an error, never a fallback.
func scriptsFor(cfg engine.Config) (scripts, error) {
	if cfg.Origin.File == "" && !cfg.Origin.IsOverridden("lua.scripts_dir") {
		return scripts{fsys: switchboard.DefaultScripts(), display: "scripts"}, nil
	}
	dir := cfg.Lua.ScriptsDir
	info, err := os.Stat(dir)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		from := "the working directory"
		if cfg.Origin.File != "" && !cfg.Origin.IsOverridden("lua.scripts_dir") {
			from = "the folder of " + cfg.Origin.File
		}
		return scripts{}, fmt.Errorf("lua.scripts_dir: %s: %w (a relative scripts_dir is resolved from %s)", dir, err, from)
	}
	if !info.IsDir() {
		return scripts{}, fmt.Errorf("lua.scripts_dir: %s is not a directory", dir)
	}
	return scripts{dir: dir, display: displayPath(dir)}, nil
}

// displayPath is p relative to the working directory when it lies below it, else p.
func displayPath(p string) string {
	wd, err := os.Getwd()
	if err != nil {
		return p
	}
	rel, err := filepath.Rel(wd, p)
	if err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
		return p
	}
	return rel
}

func configName(cfg engine.Config) string {
	if cfg.Origin.File == "" {
		return "built-in defaults"
	}
	return cfg.Origin.File
}

// warnIgnoredEnv logs, once, the SWITCHBOARD_* variables that name no key.
func warnIgnoredEnv(log logrus.FieldLogger, cfg engine.Config) {
	if len(cfg.Origin.IgnoredEnv) > 0 {
		log.WithField("variables", strings.Join(cfg.Origin.IgnoredEnv, ",")).
			Warn("environment variables that name no configuration key are ignored")
	}
}

func newEngine(opts *rootOptions, cfg engine.Config) (*engine.Engine, *logrus.Logger, error) {
	sc, err := scriptsFor(cfg)
	if err != nil {
		return nil, nil, err
	}
	logger := engine.NewLogger(cfg.Log, opts.stderr)
	logger.WithFields(logrus.Fields{"config": configName(cfg), "scripts": sc.String()}).Info("configuration loaded")
	warnIgnoredEnv(logger, cfg)
	e, err := engine.New(engine.Options{Config: cfg, Logger: logger, Scripts: sc.fsys, ScriptsDisplay: sc.display})
	if err != nil {
		return nil, nil, err
	}
	return e, logger, nil
}

func run(ctx context.Context, opts *rootOptions) error {
	cfg, err := loadConfig(opts)
	if err != nil {
		return err
	}
	e, log, err := newEngine(opts, cfg)
	if err != nil {
		return err
	}
	gc := gcfloor.Start(cfg.GCFloor()) // process-wide, so here rather than in the engine
	defer gc.Stop()
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGHUP, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)
	if err := e.Start(ctx); err != nil {
		// Start has stopped the parts it started; release the scripts and the bus, then exit 1.
		if serr := stop(e, cfg.ShutdownTimeout, sigs, log); serr != nil {
			log.WithError(serr).Warn("cleaning up after the failed start")
		}
		return err
	}
	sd := newServiceManager(log.WithField("part", "systemd"))
	sd.ready(e, nil)
	var sig os.Signal
	for sig = range sigs {
		if sig != syscall.SIGHUP {
			break
		}
		log.WithField("signal", "SIGHUP").Info("reloading scripts and live configuration")
		sd.reloading()
		if fresh, err := loadConfig(opts); err != nil {
			log.WithError(err).Error("configuration not reloaded: it has errors; the running configuration stays")
		} else if keys := e.Reconfigure(fresh); len(keys) > 0 {
			log.WithField("keys", strings.Join(keys, ",")).Warn("these configuration changes take effect at the next start")
		}
		err := e.Reload(ctx)
		if err == nil {
			log.WithField("generation", e.Runtime().Current().ID()).Info("reload complete")
		}
		sd.ready(e, err)
	}
	sd.stopping(sig)
	log.WithFields(logrus.Fields{"signal": sig.String(), "timeout": cfg.ShutdownTimeout.String()}).Info("shutting down; send the signal again to exit at once")
	if err := stop(e, cfg.ShutdownTimeout, sigs, log); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	return nil
}

// stop shuts e down within timeout; a SIGINT or SIGTERM meanwhile exits the process at once (status 1).
func stop(e *engine.Engine, timeout time.Duration, sigs <-chan os.Signal, log logrus.FieldLogger) error {
	done := make(chan error, 1)
	go func() {
		sctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		done <- e.Shutdown(sctx)
	}()
	for {
		select {
		case err := <-done:
			return err
		case s := <-sigs:
			if s == syscall.SIGHUP {
				continue
			}
			log.WithField("signal", s.String()).Warn("second signal: exiting without waiting")
			os.Exit(exitError)
		}
	}
}

// check validates the configuration and loads every script without listening; each problem is one line,
// `file:line: message` for scripts.
func check(opts *rootOptions) error {
	cfg, err := loadConfig(opts)
	if err != nil {
		var ce *engine.ConfigError
		if errors.As(err, &ce) {
			for _, e := range ce.Errors {
				fmt.Fprintf(opts.stderr, "%s: %v\n", ce.Source, e)
			}
			return errReported{len(ce.Errors)}
		}
		return err
	}
	if len(cfg.Origin.IgnoredEnv) > 0 {
		fmt.Fprintf(opts.stderr, "switchboard: warning: environment variables that name no configuration key are ignored: %s\n",
			strings.Join(cfg.Origin.IgnoredEnv, ", "))
	}
	sc, err := scriptsFor(cfg)
	if err != nil {
		return err
	}
	for _, w := range engine.CheckWarnings(cfg) {
		fmt.Fprintf(opts.stderr, "switchboard: warning: %s\n", w)
	}
	problems := engine.Check(cfg, sc.fsys, sc.display)
	for _, p := range problems {
		fmt.Fprintln(opts.stderr, p.Error())
	}
	if len(problems) > 0 {
		return errReported{len(problems)}
	}
	fmt.Fprintf(opts.stdout, "ok: configuration and scripts are valid (configuration: %s; scripts: %s)\n", configName(cfg), sc)
	return nil
}
