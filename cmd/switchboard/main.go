// Command switchboard runs the engine: `switchboard [run] [-c file]`, `switchboard check`, `switchboard version`.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/switchboard/switchboard"
	"github.com/switchboard/switchboard/engine"
	"github.com/switchboard/switchboard/engine/gcfloor"
	"github.com/switchboard/switchboard/luabind"
)

// version is set at build time with -ldflags "-X main.version=v1.2.3".
var version = "dev"

const defaultConfigFile = "configs/switchboard.yaml"

type rootOptions struct {
	ConfigFile string   // -c; "" = configs/switchboard.yaml if present, else the embedded defaults
	Set        []string // --set key=value
	LogLevel   string
	LogFormat  string
	stdout     io.Writer
	stderr     io.Writer
}

func main() {
	os.Exit(execute(os.Args[1:], os.Stdout, os.Stderr))
}

func execute(args []string, stdout, stderr io.Writer) int {
	opts := &rootOptions{stdout: stdout, stderr: stderr}
	root := &cobra.Command{
		Use:           "switchboard",
		Short:         "Switchboard: a network engine scripted in Lua (socket server, AMI relay, FreeSWITCH call control, active sockets)",
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE:          func(cmd *cobra.Command, _ []string) error { return run(cmd.Context(), opts) },
	}
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	pf := root.PersistentFlags()
	pf.StringVarP(&opts.ConfigFile, "config", "c", "", "configuration file (default "+defaultConfigFile+", or the built-in defaults when it is absent)")
	pf.StringArrayVar(&opts.Set, "set", nil, "override a key: --set socket.listen=127.0.0.1:5001 (repeatable)")
	pf.StringVar(&opts.LogLevel, "log-level", "", "override log.level (debug, info, warn, error)")
	pf.StringVar(&opts.LogFormat, "log-format", "", "override log.format (text, json)")
	root.AddCommand(
		&cobra.Command{Use: "run", Short: "run the engine (the default command)", Args: cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error { return run(cmd.Context(), opts) }},
		&cobra.Command{Use: "check", Short: "validate the configuration and compile and load every script", Args: cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error { return check(opts) }},
		&cobra.Command{Use: "version", Short: "print the version", Args: cobra.NoArgs,
			Run: func(cmd *cobra.Command, _ []string) { fmt.Fprintln(stdout, versionString()) }},
		flowCmd(opts),
		runScriptCmd(opts),
	)
	if err := root.ExecuteContext(context.Background()); err != nil {
		var quiet errReported
		if !errors.As(err, &quiet) {
			fmt.Fprintln(stderr, "switchboard:", err)
		}
		return 1
	}
	return 0
}

// errReported is an error whose details were already printed.
type errReported struct{ n int }

func (e errReported) Error() string { return fmt.Sprintf("%d problem(s)", e.n) }

func versionString() string {
	rev := ""
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				rev = " " + s.Value[:12]
			}
		}
	}
	return fmt.Sprintf("switchboard %s%s (%s %s/%s)", version, rev, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}

// loadConfig reads the configuration the way every command does: file (or embedded defaults), then
// SWITCHBOARD_* environment variables, then flags.
func loadConfig(opts *rootOptions) (engine.Config, error) {
	src := engine.ConfigSource{File: opts.ConfigFile, Fallback: switchboard.DefaultConfig(), Env: os.Environ(), Set: map[string]string{}}
	if src.File == "" {
		if _, err := os.Stat(defaultConfigFile); err == nil {
			src.File = defaultConfigFile
		}
	}
	for _, kv := range opts.Set {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return engine.Config{}, fmt.Errorf("--set %q: expected key=value", kv)
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

// scriptsFor returns the scripts to load: lua.scripts_dir when it exists, else the built-in scripts when the
// directory is the default one (nil FS means "read the directory").
func scriptsFor(cfg engine.Config) (fs.FS, string, error) {
	if _, err := os.Stat(cfg.Lua.ScriptsDir); err == nil {
		return nil, cfg.Lua.ScriptsDir, nil
	} else if cfg.Lua.ScriptsDir != luabind.DefaultConfig().ScriptsDir {
		return nil, "", fmt.Errorf("lua.scripts_dir: %w", err)
	}
	return switchboard.DefaultScripts(), "scripts", nil
}

func newEngine(opts *rootOptions, cfg engine.Config) (*engine.Engine, error) {
	fsys, display, err := scriptsFor(cfg)
	if err != nil {
		return nil, err
	}
	logger := engine.NewLogger(cfg.Log, opts.stderr)
	if fsys != nil {
		logger.WithField("part", "lua").Info("scripts directory absent: using the built-in scripts")
	}
	return engine.New(engine.Options{Config: cfg, Logger: logger, Scripts: fsys, ScriptsDisplay: display})
}

func run(ctx context.Context, opts *rootOptions) error {
	cfg, err := loadConfig(opts)
	if err != nil {
		return err
	}
	e, err := newEngine(opts, cfg)
	if err != nil {
		return err
	}
	gc := gcfloor.Start(cfg.GCFloor()) // process-wide, so here rather than in the engine
	defer gc.Stop()
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGHUP, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)
	if err := e.Start(ctx); err != nil {
		sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
		defer cancel()
		_ = e.Shutdown(sctx)
		return err
	}
	log := engine.NewLogger(cfg.Log, opts.stderr)
	var sig os.Signal
	for sig = range sigs {
		if sig != syscall.SIGHUP {
			break
		}
		log.WithField("signal", "SIGHUP").Info("reloading scripts and live configuration")
		if fresh, err := loadConfig(opts); err != nil {
			log.WithError(err).Error("configuration not reloaded: it has errors; the running configuration stays")
		} else if keys := e.Reconfigure(fresh); len(keys) > 0 {
			log.WithField("keys", strings.Join(keys, ",")).Warn("these configuration changes take effect at the next start")
		}
		if err := e.Reload(ctx); err == nil {
			log.WithField("generation", e.Runtime().Current().ID()).Info("reload complete")
		}
	}
	log.WithFields(map[string]any{"signal": sig.String(), "timeout": cfg.ShutdownTimeout.String()}).Info("shutting down; send the signal again to exit at once")
	done := make(chan error, 1)
	go func() {
		sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
		defer cancel()
		done <- e.Shutdown(sctx)
	}()
	for {
		select {
		case err := <-done:
			if err != nil {
				return fmt.Errorf("shutdown: %w", err)
			}
			return nil
		case s := <-sigs:
			if s == syscall.SIGHUP {
				continue
			}
			log.WithField("signal", s.String()).Warn("second signal: exiting without waiting")
			os.Exit(1)
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
	fsys, display, err := scriptsFor(cfg)
	if err != nil {
		return err
	}
	problems := engine.Check(cfg, fsys, display)
	for _, p := range problems {
		fmt.Fprintln(opts.stderr, p.Error())
	}
	if len(problems) > 0 {
		return errReported{len(problems)}
	}
	fmt.Fprintln(opts.stdout, "ok: configuration and scripts are valid")
	return nil
}
