package main

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/spf13/cobra"

	"github.com/switchboard/switchboard/engine"
	"github.com/switchboard/switchboard/engine/esl"
	"github.com/switchboard/switchboard/engine/esl/esltest"
	"github.com/switchboard/switchboard/internal/uuid"
)

// flowCmd is `switchboard flow test <flow>`: run a call flow from the configured scripts against a simulated
// FreeSWITCH call and print what the call did.
func flowCmd(opts *rootOptions) *cobra.Command {
	flow := &cobra.Command{Use: "flow", Short: "work with call flows (sb.flow)", Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usagef("unknown command %q for \"switchboard flow\" (commands: test)", args[0])
			}
			return usagef("flow: expected a command: switchboard flow test <flow>")
		}}
	var (
		dtmf        []string
		hangupAfter time.Duration
		static      bool
		single      bool
		media       time.Duration
		vars        []string
		timeout     time.Duration
		allowApps   bool
		bridges     []string
		originates  []string
		prompts     []string
		pressDuring []string
		globals     []string
	)
	test := &cobra.Command{
		Use:   "test <flow>",
		Short: "run a flow against a simulated FreeSWITCH call and print the call's transcript",
		Long: `test starts the call-control server on a loopback port with the configured scripts, places one
simulated call (esltest, faithful to FreeSWITCH's outbound socket) whose socket path names the flow,
and prints every command, application, digit and hangup with its time. No FreeSWITCH needed.

  switchboard flow test main --dtmf 1@2s
  switchboard flow test main --dtmf 12#@500ms --media 1s --hangup-after 10s
  switchboard flow test main --static          # socket application without "async full"
  switchboard flow test voicemail/1000 --prompt voicemail/greeting.wav=2s --hangup-after 5s
  switchboard flow test main --bridge user/1001=USER_BUSY --allow-unknown-apps

The flow's log lines (consoleLog, sb.log) appear in the transcript where they happened. The exit status is
non-zero when the flow raised an error or ran past --timeout (the transcript is printed either way).`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usagef("flow test: expected one flow name, got %d arguments", len(args))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			call := esltest.Call{Path: args[0], Async: !static, Full: !static && !single, HangupAfter: hangupAfter, Media: media,
				Vars: map[string]string{}, MaxDuration: timeout, AllowUnknownApps: allowApps}
			kv := func(flag string, list []string, put func(k, v string) error) error {
				for _, item := range list {
					k, v, ok := strings.Cut(item, "=")
					if !ok || k == "" {
						return fmt.Errorf("--%s %q: expected name=value", flag, item)
					}
					if err := put(k, v); err != nil {
						return fmt.Errorf("--%s %q: %w", flag, item, err)
					}
				}
				return nil
			}
			call.BridgeOutcomes, call.Originate, call.Prompts, call.PressDuring, call.Globals =
				map[string]string{}, map[string]string{}, map[string]time.Duration{}, map[string]string{}, map[string]string{}
			for _, err := range []error{
				kv("bridge", bridges, func(k, v string) error { call.BridgeOutcomes[k] = strings.ToUpper(v); return nil }),
				kv("originate", originates, func(k, v string) error { call.Originate[k] = strings.ToUpper(v); return nil }),
				kv("prompt", prompts, func(k, v string) error {
					d, err := time.ParseDuration(v)
					call.Prompts[k] = d
					return err
				}),
				kv("press-during", pressDuring, func(k, v string) error { call.PressDuring[k] = v; return nil }),
				kv("global", globals, func(k, v string) error { call.Globals[k] = v; return nil }),
			} {
				if err != nil {
					return err
				}
			}
			for _, spec := range dtmf {
				d, err := esltest.ParseDTMF(spec)
				if err != nil {
					return usageError{fmt.Errorf("--dtmf: %w", err)}
				}
				call.DTMF = append(call.DTMF, d...)
			}
			for _, kv := range vars {
				k, v, ok := strings.Cut(kv, "=")
				if !ok {
					return usagef("--var %q: expected name=value", kv)
				}
				call.Vars[k] = v
			}
			cfg, err := loadConfig(opts)
			if err != nil {
				return err
			}
			return testFlow(cmd.Context(), opts, cfg, call, timeout)
		},
	}
	f := test.Flags()
	f.StringArrayVar(&dtmf, "dtmf", nil, "digits the caller presses: DIGITS@TIME, e.g. 1@2s or 123#@500ms (repeatable)")
	f.DurationVar(&hangupAfter, "hangup-after", 0, "the caller hangs up after this long (0: never)")
	f.BoolVar(&static, "static", false, "static mode: socket data without \"async full\" (no DTMF events while idle, no api)")
	f.BoolVar(&single, "no-full", false, "async without \"full\" (no api, bgapi, linger)")
	f.DurationVar(&media, "media", 0, "how long each prompt plays")
	f.StringArrayVar(&vars, "var", nil, "channel variable name=value for the call (repeatable)")
	f.DurationVar(&timeout, "timeout", time.Minute, "give up (hang up) after this long")
	f.BoolVar(&allowApps, "allow-unknown-apps", false, "complete applications the simulator does not know instead of hanging up as FreeSWITCH does")
	f.StringArrayVar(&bridges, "bridge", nil, "outcome of a bridge: DIAL=CAUSE, e.g. user/1001=USER_BUSY (SUCCESS answers; repeatable)")
	f.StringArrayVar(&originates, "originate", nil, "outcome of freeswitch.Session(DIAL): DIAL=CAUSE (SUCCESS answers; repeatable)")
	f.StringArrayVar(&prompts, "prompt", nil, "length of one file: FILE=DURATION, e.g. ivr/menu.wav=3s (repeatable; others use --media)")
	f.StringArrayVar(&pressDuring, "press-during", nil, "digits the caller presses when FILE starts playing: FILE=DIGITS (repeatable)")
	f.StringArrayVar(&globals, "global", nil, "FreeSWITCH global variable name=value (global_getvar; repeatable)")
	flow.AddCommand(test)
	return flow
}

func testFlow(ctx context.Context, opts *rootOptions, cfg engine.Config, call esltest.Call, timeout time.Duration) error {
	sc, err := scriptsFor(cfg)
	if err != nil {
		return err
	}
	cfg.Log.Level = "warn"
	logger := engine.NewLogger(cfg.Log, opts.stderr)
	if lvl, err := logrus.ParseLevel(opts.LogLevel); err == nil {
		logger.SetLevel(lvl)
	} else {
		logger.SetLevel(logrus.InfoLevel) // consoleLog lines of the flow are part of the test
	}
	// The flow's own log lines go into the transcript, in order, instead of stderr.
	call.UUID = uuid.New()
	notes := &flowNotes{uuid: call.UUID}
	call.Attach = notes.attach
	logger.AddHook(notes)
	log := logrus.NewEntry(logger)
	warnIgnoredEnv(log, cfg)
	rt, flows, err := engine.ScriptRuntime(cfg, sc.fsys, sc.display, log)
	if err != nil {
		return err
	}
	defer rt.Close()
	if err := rt.Load(); err != nil {
		return fmt.Errorf("scripts:\n%w", err)
	}
	if g := rt.Current(); !flows.HasFlow(g, call.Path) {
		var names []string
		for _, h := range g.Handlers("flow") {
			names = append(names, h.Name)
		}
		names = append(names, flows.ModLuaFlows(g)...)
		sort.Strings(names)
		return fmt.Errorf("no flow %q in %s (flows: %s)", call.Path, sc, strings.Join(names, ", "))
	}
	ecfg := cfg.ESL
	// A loopback port of its own, open to the simulator alone whatever esl.allow and esl.max_calls say.
	ecfg.Listen, ecfg.Allow, ecfg.MaxCalls = "127.0.0.1:0", "", 0
	var flowErr error
	var errMu sync.Mutex
	resolve := flows.Flows(rt)
	srv, err := esl.New(ecfg, esl.Options{Log: log, Flows: func(ci *esl.CallInfo) (esl.Flow, error) {
		f, err := resolve(ci)
		if err != nil {
			return nil, err
		}
		return esl.FlowFunc(func(ctx context.Context, s *esl.Session) error {
			err := f.Run(ctx, s)
			if err != nil && !errors.Is(err, esl.ErrHungUp) {
				errMu.Lock()
				flowErr = err
				errMu.Unlock()
			}
			return err
		}), nil
	}})
	if err != nil {
		return err
	}
	if err := srv.Start(ctx); err != nil {
		return err
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	call.Addr = srv.Addrs()["esl"].String()
	cctx, cancel := context.WithTimeout(ctx, timeout+ecfg.FlowGrace+5*time.Second)
	defer cancel()
	res, runErr := esltest.Run(cctx, call)
	if res != nil {
		fmt.Fprint(opts.stdout, res.String())
		cause := res.HangupCause
		if cause == "" {
			cause = "none (call left the socket up)"
		}
		fmt.Fprintf(opts.stdout, "result: answered=%v hangup_cause=%s commands=%d\n", res.Answered, cause, res.Commands)
	}
	errMu.Lock()
	defer errMu.Unlock()
	switch {
	case runErr != nil && cctx.Err() != nil, res != nil && res.HangupCause == "ALLOTTED_TIMEOUT":
		return fmt.Errorf("the flow ran past --timeout %s", timeout)
	case flowErr != nil:
		return fmt.Errorf("the flow failed: %w", flowErr)
	case runErr != nil:
		return runErr
	}
	return nil
}

// flowNotes copies the call's log lines into its transcript.
type flowNotes struct {
	uuid string
	mu   sync.Mutex
	note func(string)
}

func (n *flowNotes) attach(note func(string)) {
	n.mu.Lock()
	n.note = note
	n.mu.Unlock()
}

func (n *flowNotes) Levels() []logrus.Level { return logrus.AllLevels }

func (n *flowNotes) Fire(e *logrus.Entry) error {
	if e.Data["uuid"] != n.uuid {
		return nil
	}
	n.mu.Lock()
	note := n.note
	n.mu.Unlock()
	if note != nil {
		where := ""
		if s, ok := e.Data["script"].(string); ok && s != "" {
			where = " (" + s + ")"
		}
		note("log " + e.Level.String() + ": " + e.Message + where)
	}
	return nil
}

// runScriptCmd is `switchboard run-script <script> [args]`: a mod_lua-style script run as FreeSWITCH's
// `lua` API command runs it (stream, env, argv; no session). What it writes to stream is printed.
func runScriptCmd(opts *rootOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "run-script <script> [args...]",
		Short: "run an API-style mod_lua script from lua.freeswitch_dir (stream:write goes to stdout)",
		Long: `run-script runs scripts/freeswitch/<script>.lua as FreeSWITCH's "lua <script> [args]" API command does:
globals stream (what it writes is printed), env (API-Command: lua, API-Command-Argument: the command line),
argv, freeswitch (Dbh, consoleLog, os/io in esl.data_dir); no session and no FreeSWITCH connection.
The exit status is non-zero when the script raised an error.

  switchboard run-script vm_count 1000`,
		Args: usageArgs(cobra.MinimumNArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := loadConfig(opts)
			if err != nil {
				return err
			}
			sc, err := scriptsFor(cfg)
			if err != nil {
				return err
			}
			logger := engine.NewLogger(cfg.Log, opts.stderr)
			if cfg.Log.Level == "info" && opts.LogLevel == "" {
				logger.SetLevel(logrus.WarnLevel) // the script's reply is the output
			}
			log := logrus.NewEntry(logger)
			rt, flows, err := engine.ScriptRuntime(cfg, sc.fsys, sc.display, log)
			if err != nil {
				return err
			}
			defer rt.Close()
			if err := rt.Load(); err != nil {
				return fmt.Errorf("scripts:\n%w", err)
			}
			line := make([]string, len(args))
			for i, a := range args {
				if a == "" || strings.ContainsAny(a, " \t'\\") {
					a = "'" + strings.ReplaceAll(a, "'", "\\'") + "'"
				}
				line[i] = a
			}
			res := flows.RunAPIScript(cmd.Context(), rt.Current(), strings.Join(line, " "), cfg.ESL, log)
			fmt.Fprint(opts.stdout, res.Output)
			if res.Err != nil {
				return errReported{1}
			}
			return nil
		},
	}
}
