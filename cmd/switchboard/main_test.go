package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/switchboard/switchboard/engine"
)

func runCLI(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = execute(args, &out, &errb)
	return code, out.String(), errb.String()
}

// TestUsageErrorsExit2: a wrong command line exits 2 with the problem and a pointer to --help; --help and
// --version exit 0.
func TestUsageErrorsExit2(t *testing.T) {
	cases := map[string]string{
		"bogus":                         `switchboard: unknown command "bogus" (commands: run, check, version, flow)`,
		"--bogus":                       "switchboard: unknown flag: --bogus",
		"run --nope":                    "switchboard: unknown flag: --nope",
		"check extra":                   `switchboard: unknown command "extra" for "switchboard check"`,
		"version extra":                 `switchboard: unknown command "extra" for "switchboard version"`,
		"flow":                          "switchboard: flow: expected a command: switchboard flow test <flow>",
		"flow bogus":                    `switchboard: unknown command "bogus" for "switchboard flow" (commands: test)`,
		"flow test":                     "switchboard: flow test: expected one flow name, got 0 arguments",
		"flow test main --dtmf x@y":     "switchboard: --dtmf: ",
		"flow test main --var novalue":  `switchboard: --var "novalue": expected name=value`,
		"check --set socket.listen":     `switchboard: --set "socket.listen": expected key=value`,
		"check --log-level":             "switchboard: flag needs an argument: --log-level",
		"flow test main --hangup-after": "switchboard: flag needs an argument: --hangup-after",
	}
	for args, want := range cases {
		code, out, errOut := runCLI(t, strings.Fields(args)...)
		if code != 2 || out != "" || !strings.HasPrefix(errOut, want) || !strings.HasSuffix(errOut, "\nRun 'switchboard --help' for usage.\n") {
			t.Errorf("%s: exit %d, stdout %q, stderr %q; want 2 and %q", args, code, out, errOut, want)
		}
	}
	for _, args := range [][]string{{"--version"}, {"version"}} {
		code, out, errOut := runCLI(t, args...)
		if code != 0 || errOut != "" || out != versionString()+"\n" || !strings.HasPrefix(out, "switchboard dev") {
			t.Errorf("%v: exit %d, %q %q", args, code, out, errOut)
		}
	}
	if code, out, _ := runCLI(t, "--help"); code != 0 || !strings.Contains(out, "check") {
		t.Errorf("--help: exit %d\n%s", code, out)
	}
}

// TestFindConfig: the first file of the search list that exists wins; none means the built-in defaults; a
// file that is there but cannot be used is an error, not a fallback.
func TestFindConfig(t *testing.T) {
	if got := strings.Join(configSearch(), " "); got != "configs/switchboard.yaml /etc/switchboard/switchboard.yaml" {
		t.Fatalf("search order %q", got)
	}
	dir := t.TempDir()
	local := filepath.Join(dir, "configs", "switchboard.yaml")
	etc := filepath.Join(dir, "etc", "switchboard.yaml")
	search := []string{local, etc}
	if got, err := findConfig(search); got != "" || err != nil {
		t.Fatalf("none: %q %v", got, err)
	}
	write(t, etc, "log: {level: info}\n")
	if got, err := findConfig(search); got != etc || err != nil {
		t.Fatalf("etc only: %q %v", got, err)
	}
	write(t, local, "log: {level: info}\n")
	if got, err := findConfig(search); got != local || err != nil {
		t.Fatalf("both: %q %v", got, err)
	}
	os.Remove(local)
	os.Mkdir(local, 0o755)
	if _, err := findConfig(search); err == nil || !strings.Contains(err.Error(), "is a directory") {
		t.Fatalf("directory: %v", err)
	}
}

func write(t *testing.T, path, data string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestScriptsFor: built-in scripts only with the built-in defaults; a named scripts_dir must exist.
func TestScriptsFor(t *testing.T) {
	wd := t.TempDir()
	t.Chdir(wd)
	load := func(src engine.ConfigSource) engine.Config {
		t.Helper()
		cfg, err := engine.LoadConfig(src)
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	// No file: built in, even though ./scripts exists.
	write(t, filepath.Join(wd, "scripts", "a.lua"), "-- a\n")
	sc, err := scriptsFor(load(engine.ConfigSource{}))
	if err != nil || sc.fsys == nil || sc.String() != "built-in scripts" {
		t.Fatalf("no file: %+v %v", sc, err)
	}
	// No file, scripts_dir from a flag: that directory.
	sc, err = scriptsFor(load(engine.ConfigSource{Set: map[string]string{"lua.scripts_dir": "scripts"}}))
	if err != nil || sc.fsys != nil || sc.display != "scripts" || !filepath.IsAbs(sc.dir) {
		t.Fatalf("flag: %+v %v", sc, err)
	}
	// A file elsewhere whose scripts_dir is missing: an error naming the resolved path, not a fallback.
	conf := filepath.Join(t.TempDir(), "switchboard.yaml")
	write(t, conf, "lua: {scripts_dir: scripts}\n")
	_, err = scriptsFor(load(engine.ConfigSource{File: conf}))
	want := "lua.scripts_dir: " + filepath.Join(filepath.Dir(conf), "scripts") + ": no such file or directory (a relative scripts_dir is resolved from the folder of " + conf + ")"
	if err == nil || err.Error() != want {
		t.Fatalf("missing:\n got %v\nwant %s", err, want)
	}
	// ...and once it exists, that one (shown in full: it is not below the working directory).
	write(t, filepath.Join(filepath.Dir(conf), "scripts", "b.lua"), "-- b\n")
	sc, err = scriptsFor(load(engine.ConfigSource{File: conf}))
	if err != nil || sc.fsys != nil || sc.dir != filepath.Join(filepath.Dir(conf), "scripts") || sc.display != sc.dir {
		t.Fatalf("file: %+v %v", sc, err)
	}
	// A file instead of a directory.
	write(t, filepath.Join(wd, "notadir"), "")
	_, err = scriptsFor(load(engine.ConfigSource{Set: map[string]string{"lua.scripts_dir": "notadir"}}))
	if err == nil || !strings.HasSuffix(err.Error(), "notadir is not a directory") {
		t.Fatalf("not a directory: %v", err)
	}
}

// TestCheckWarnsWhenJournalRetentionIsOff (issue 15 item 7): a guaranteed relay with no journal bound is
// valid, but check says what it means.
func TestCheckWarnsWhenJournalRetentionIsOff(t *testing.T) {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "scripts"), 0o755)
	file := filepath.Join(dir, "c.yaml")
	os.WriteFile(file, []byte("relay:\n  guaranteed: true\n  journal_retention_bytes: 0\n  journal_retention_age: 0s\n"), 0o644)
	code, out, errOut := runCLI(t, "check", "-c", file)
	want := "switchboard: warning: relay: journal retention is off (relay.journal_retention_bytes and relay.journal_retention_age are 0): " +
		"the journal grows without bound for a center that never returns, or that relay.centers no longer names\n"
	if code != 0 || errOut != want || !strings.HasPrefix(out, "ok:") {
		t.Fatalf("exit %d\nstdout %q\nstderr %q", code, out, errOut)
	}
	code, _, errOut = runCLI(t, "check", "-c", file, "--set", "relay.journal_retention_bytes=8589934592")
	if code != 0 || errOut != "" {
		t.Fatalf("with retention: exit %d, stderr %q", code, errOut)
	}
	code, _, errOut = runCLI(t, "check", "-c", file, "--set", "relay.journal_retention_age=24h")
	if code != 0 || !strings.Contains(errOut, "relay.journal_retention_bytes is 0: the journal is bounded only by age (24h0m0s)") {
		t.Fatalf("age only: exit %d, stderr %q", code, errOut)
	}
}
