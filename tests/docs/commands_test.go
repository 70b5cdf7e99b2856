package docs

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/switchboard/switchboard/tests/harness"
)

// documented is one switchboard invocation shown in the documentation.
type documented struct {
	args  []string
	where string // file:line
}

var (
	fence      = regexp.MustCompile("(?s)```[a-z]*\n(.*?)```")
	inlineCode = regexp.MustCompile("`([^`\n]+)`")
)

// documentedCommands finds every `switchboard ...` command a reader may copy: lines of fenced blocks and
// inline code spans in the README, docs/ and the examples' READMEs, and the comment lines of the shipped
// YAML files. `go run ./cmd/switchboard`, `./switchboard` and `switchboard` are all the binary. Synopsis
// lines (with [optional] or <placeholder> parts) are returned apart.
func documentedCommands(t *testing.T) (cmds []documented, synopses []string) {
	t.Helper()
	root := harness.Root()
	var files []string
	for _, pat := range []string{"README.md", "docs/*.md", "examples/*/README.md", "configs/*.yaml", "examples/*/switchboard.yaml"} {
		m, err := filepath.Glob(filepath.Join(root, pat))
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, m...)
	}
	seen := map[string]bool{}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		rel, _ := filepath.Rel(root, f)
		text := string(data)
		type candidate struct {
			line   string
			at     int
			inline bool // an inline code span in prose: `switchboard started` is a log line, not a command
		}
		var candidates []candidate
		add := func(line string, at int) { candidates = append(candidates, candidate{line, at, false}) }
		if strings.HasSuffix(f, ".yaml") {
			at := 0
			for _, l := range strings.SplitAfter(text, "\n") {
				if s := strings.TrimSpace(l); strings.HasPrefix(s, "#") {
					add(strings.TrimSpace(strings.TrimPrefix(s, "#")), at)
				}
				at += len(l)
			}
		} else {
			for _, m := range fence.FindAllStringSubmatchIndex(text, -1) {
				at := m[2]
				for _, l := range strings.SplitAfter(text[m[2]:m[3]], "\n") {
					add(strings.TrimSpace(l), at)
					at += len(l)
				}
			}
			outside := fence.ReplaceAllStringFunc(text, func(s string) string { return strings.Repeat(" ", len(s)) })
			for _, m := range inlineCode.FindAllStringSubmatchIndex(outside, -1) {
				candidates = append(candidates, candidate{outside[m[2]:m[3]], m[2], true})
			}
		}
		for _, c := range candidates {
			args, ok := switchboardArgs(c.line)
			if !ok {
				continue
			}
			where := rel + ":" + strconv.Itoa(strings.Count(text[:c.at], "\n")+1)
			switch command(args) {
			case "", "run", "check", "version", "flow":
			default:
				if c.inline {
					continue
				}
			}
			joined := strings.Join(args, " ")
			// Installed layouts (/etc/switchboard/...) are exercised by tests/deploy TestInstalledLayout.
			if strings.ContainsAny(joined, "[<|…") || strings.Contains(joined, "...") || strings.Contains(joined, " /etc/") {
				synopses = append(synopses, where+": "+c.line)
				continue
			}
			if !seen[joined] {
				seen[joined] = true
				cmds = append(cmds, documented{args: args, where: where})
			}
		}
	}
	return cmds, synopses
}

// switchboardArgs returns the arguments of a line that runs switchboard, without a trailing comment or &.
func switchboardArgs(line string) ([]string, bool) {
	line = strings.TrimPrefix(line, "$ ")
	if i := strings.Index(line, " #"); i >= 0 {
		line = line[:i]
	}
	f := strings.Fields(line)
	if len(f) > 0 && f[len(f)-1] == "&" {
		f = f[:len(f)-1]
	}
	switch {
	case len(f) >= 3 && f[0] == "go" && f[1] == "run" && f[2] == "./cmd/switchboard":
		return f[3:], true
	case len(f) >= 1 && (f[0] == "switchboard" || f[0] == "./switchboard"):
		return f[1:], true
	}
	return nil, false
}

// command is the first word of args that is neither a flag nor a flag's value ("" = run).
func command(args []string) string {
	for i := 0; i < len(args); i++ {
		switch a := args[i]; {
		case a == "-c" || a == "--config" || a == "--set" || a == "--log-level" || a == "--log-format":
			i++
		case !strings.HasPrefix(a, "-"):
			return a
		}
	}
	return ""
}

// TestDocumentedCommands runs every switchboard command the documentation shows, from the repository root
// as the documentation assumes: check, version and flow test to completion (exit 0), and run (or no
// command) until it has started, with its listeners moved to free loopback ports and its journal to a
// temporary folder, then SIGTERM (exit 0).
func TestDocumentedCommands(t *testing.T) {
	cmds, synopses := documentedCommands(t)
	if len(cmds) < 12 {
		t.Fatalf("found only %d documented commands: %v", len(cmds), cmds)
	}
	sort.Strings(synopses)
	t.Logf("synopsis lines, not run: %s", strings.Join(synopses, "; "))
	bin := harness.Binary(t)
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "SWITCHBOARD_") {
			env = append(env, kv)
		}
	}
	for _, c := range cmds {
		c := c
		name := strings.Join(c.args, " ")
		if name == "" {
			name = "(no command)"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			verb := command(c.args)
			args := c.args
			serve := verb == "" || verb == "run" // no command = run
			if serve {
				tmp := t.TempDir()
				args = append(append([]string{}, args...), "--set", "socket.listen=127.0.0.1:0", "--set", "relay.listen=127.0.0.1:0",
					"--set", "esl.listen=127.0.0.1:0", "--set", "admin.listen=127.0.0.1:0",
					"--set", "relay.persist_dir="+filepath.Join(tmp, "persist"), "--set", "relay.message_log="+filepath.Join(tmp, "messages.log"))
			}
			cmd := exec.Command(bin, args...)
			cmd.Dir = harness.Root()
			cmd.Env = env
			var stdout bytes.Buffer
			stderr := &harness.Buffer{}
			cmd.Stdout, cmd.Stderr = &stdout, stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			var once sync.Once
			done := make(chan struct{})
			go func() { _ = cmd.Wait(); once.Do(func() { close(done) }) }()
			defer func() {
				select {
				case <-done:
				default:
					_ = cmd.Process.Kill()
					<-done
				}
			}()
			if serve {
				stderr.WaitFor(t, "switchboard started", 30*time.Second)
				_ = cmd.Process.Signal(syscall.SIGTERM)
			}
			select {
			case <-done:
			case <-time.After(90 * time.Second):
				t.Fatalf("%s: switchboard %s still running\n%s", c.where, strings.Join(c.args, " "), stderr)
			}
			if code := cmd.ProcessState.ExitCode(); code != 0 {
				t.Fatalf("%s: switchboard %s exited %d\nstdout:\n%s\nstderr:\n%s", c.where, strings.Join(args, " "), code, stdout.String(), stderr)
			}
			switch {
			case verb == "check" && !strings.HasPrefix(stdout.String(), "ok: "):
				t.Fatalf("%s: check printed %q", c.where, stdout.String())
			case (verb == "version" || slices.Contains(c.args, "--version")) && !strings.HasPrefix(stdout.String(), "switchboard "):
				t.Fatalf("%s: version printed %q", c.where, stdout.String())
			case verb == "flow" && !strings.Contains(stdout.String(), "result: answered=true"):
				t.Fatalf("%s: flow test printed\n%s", c.where, stdout.String())
			}
		})
	}
}
