package main

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/spf13/cobra"

	"github.com/switchboard/switchboard/engine"
	"github.com/switchboard/switchboard/engine/esl"
	"github.com/switchboard/switchboard/engine/esl/esltest"
	"github.com/switchboard/switchboard/engine/transport"
	"github.com/switchboard/switchboard/luabind"
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
	)
	test := &cobra.Command{
		Use:   "test <flow>",
		Short: "run a flow against a simulated FreeSWITCH call and print the call's transcript",
		Long: `test starts the call-control server on a loopback port with the configured scripts, places one
simulated call (esltest, faithful to FreeSWITCH's outbound socket) whose socket path names the flow,
and prints every command, application, digit and hangup with its time. No FreeSWITCH needed.

  switchboard flow test main --dtmf 1@2s
  switchboard flow test main --dtmf 12#@500ms --media 1s --hangup-after 10s
  switchboard flow test main --static          # socket application without "async full"`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usagef("flow test: expected one flow name, got %d arguments", len(args))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			call := esltest.Call{Path: args[0], Async: !static, Full: !static && !single, HangupAfter: hangupAfter, Media: media,
				Vars: map[string]string{}, MaxDuration: timeout}
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
	log := logrus.NewEntry(logger)
	warnIgnoredEnv(log, cfg)
	rt, err := luabind.New(luabind.Options{Config: cfg.Lua, FS: sc.fsys, Display: sc.display, Log: log})
	if err != nil {
		return err
	}
	defer rt.Close()
	if err := rt.Load(); err != nil {
		return fmt.Errorf("scripts:\n%w", err)
	}
	if _, ok := rt.Current().Handler("flow", call.Path); !ok {
		var names []string
		for _, h := range rt.Current().Handlers("flow") {
			names = append(names, h.Name)
		}
		sort.Strings(names)
		return fmt.Errorf("no flow %q in %s (flows: %s)", call.Path, sc, strings.Join(names, ", "))
	}
	ecfg := cfg.ESL
	ecfg.Listen = "127.0.0.1:0"
	srv := esl.NewServer(ecfg, luabind.FlowResolver(rt), log, nil)
	l, err := transport.Listen(transport.ListenConfig{Addr: ecfg.Listen, Log: log})
	if err != nil {
		return err
	}
	served := make(chan struct{})
	go func() { defer close(served); _ = srv.Serve(l) }()
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
		<-served
	}()
	call.Addr = l.Addr().String()
	cctx, cancel := context.WithTimeout(ctx, timeout+5*time.Second)
	defer cancel()
	res, err := esltest.Run(cctx, call)
	if err != nil {
		return err
	}
	fmt.Fprint(opts.stdout, res.String())
	cause := res.HangupCause
	if cause == "" {
		cause = "none (call left the socket up)"
	}
	fmt.Fprintf(opts.stdout, "result: answered=%v hangup_cause=%s commands=%d\n", res.Answered, cause, res.Commands)
	return nil
}
