package deploy

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/switchboard/switchboard/engine"
	"github.com/switchboard/switchboard/tests/harness"
)

// instruction is one Dockerfile instruction with its continuation lines joined.
type instruction struct {
	line int
	cmd  string // upper case: FROM, RUN, COPY, ...
	args string
}

func parseDockerfile(t *testing.T, path string) []instruction {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []instruction
	var cur *instruction
	for n, raw := range strings.Split(string(data), "\n") {
		line := strings.TrimSpace(raw)
		if strings.HasPrefix(line, "#") || (line == "" && cur == nil) {
			continue
		}
		cont := strings.HasSuffix(line, "\\")
		line = strings.TrimSuffix(line, "\\")
		if cur == nil {
			cmd, args, _ := strings.Cut(line, " ")
			cur = &instruction{line: n + 1, cmd: strings.ToUpper(cmd), args: strings.TrimSpace(args)}
		} else {
			cur.args += " " + strings.TrimSpace(line)
		}
		if !cont {
			out = append(out, *cur)
			cur = nil
		}
	}
	if cur != nil {
		t.Fatalf("%s: the last instruction ends with a continuation", path)
	}
	return out
}

// TestDockerfile checks the image's essentials, since Docker cannot run here: a Go 1.26 build stage, a
// minimal runtime stage running as a non-root user, the stamped static build, the default ports, the
// configuration and state volumes, and that what the build copies exists and is not ignored.
func TestDockerfile(t *testing.T) {
	root := harness.Root()
	ins := parseDockerfile(t, filepath.Join(root, "Dockerfile"))

	var stages [][]instruction
	for _, in := range ins {
		if in.cmd == "FROM" {
			stages = append(stages, nil)
		}
		if len(stages) == 0 {
			if in.cmd != "ARG" {
				t.Fatalf("Dockerfile:%d: %s before the first FROM", in.line, in.cmd)
			}
			continue
		}
		stages[len(stages)-1] = append(stages[len(stages)-1], in)
	}
	if len(stages) < 2 {
		t.Fatalf("%d stage(s), want a build stage and a runtime stage", len(stages))
	}
	build, final := stages[0], stages[len(stages)-1]
	if from := fields(build[0].args); !slices.Contains(from, "golang:1.26") || !slices.Contains(from, "build") {
		t.Errorf("first stage FROM %s, want golang:1.26 AS build", build[0].args)
	}
	if from := final[0].args; !strings.Contains(from, "distroless") && !strings.Contains(from, "slim") {
		t.Errorf("runtime stage FROM %s, want a distroless or slim base", from)
	}

	goBuild := find(build, "RUN", "go build")
	for _, want := range []string{"CGO_ENABLED=0", "-trimpath", "./cmd/switchboard",
		"pkg=" + stampPkg, "$pkg.version=$VERSION", "$pkg.commit=$COMMIT", "$pkg.date=$DATE"} {
		if !strings.Contains(goBuild, want) {
			t.Errorf("the build stage's go build lacks %q: %s", want, goBuild)
		}
	}

	user := last(final, "USER")
	if name, _, _ := strings.Cut(user, ":"); user == "" || name == "root" || name == "0" {
		t.Errorf("runtime stage USER %q, want a non-root user", user)
	}

	def := engine.DefaultConfig()
	var wantPorts []string
	for _, addr := range []string{def.Socket.Listen, def.Relay.Listen, def.ESL.Listen, def.Admin.Listen} {
		wantPorts = append(wantPorts, strings.TrimPrefix(port(addr), ":"))
	}
	if got := fields(last(final, "EXPOSE")); !slices.Equal(sorted(got), sorted(wantPorts)) {
		t.Errorf("EXPOSE %v, want the default ports %v", got, wantPorts)
	}

	var volumes []string
	if err := json.Unmarshal([]byte(last(final, "VOLUME")), &volumes); err != nil {
		t.Fatalf("VOLUME %s: want a JSON list: %v", last(final, "VOLUME"), err)
	}
	for _, v := range []string{"/etc/switchboard", "/var/lib/switchboard"} {
		if !slices.Contains(volumes, v) {
			t.Errorf("VOLUME %v lacks %s", volumes, v)
		}
	}

	var entry, cmd []string
	if json.Unmarshal([]byte(last(final, "ENTRYPOINT")), &entry) != nil || json.Unmarshal([]byte(last(final, "CMD")), &cmd) != nil {
		t.Fatalf("ENTRYPOINT %s / CMD %s: want JSON lists (exec form)", last(final, "ENTRYPOINT"), last(final, "CMD"))
	}
	argv := strings.Join(append(entry, cmd...), " ")
	if argv != "/usr/local/bin/switchboard run -c /etc/switchboard/switchboard.yaml" {
		t.Errorf("the container runs %q", argv)
	}
	if !strings.Contains(find(build, "RUN", "deploy/docker/switchboard.yaml"), "cp deploy/docker/switchboard.yaml /out/etc/switchboard/switchboard.yaml") {
		t.Error("the build stage does not install deploy/docker/switchboard.yaml as the configuration the container runs")
	}

	// Every source the build stage copies out of the context exists and is not excluded by .dockerignore.
	ignored := dockerignore(t, filepath.Join(root, ".dockerignore"))
	for _, src := range copiedSources(build) {
		if _, err := os.Stat(filepath.Join(root, src)); err != nil {
			t.Errorf("the build copies %s: %v", src, err)
		}
		if slices.Contains(ignored, strings.Split(src, "/")[0]) {
			t.Errorf("the build copies %s, which .dockerignore excludes", src)
		}
	}
	for _, want := range []string{".git", "dist"} {
		if !slices.Contains(ignored, want) {
			t.Errorf(".dockerignore does not exclude %s", want)
		}
	}
}

// copiedSources lists the context paths `cp` commands in RUN instructions read (all arguments but the
// last, flags aside).
func copiedSources(stage []instruction) []string {
	var out []string
	for _, in := range stage {
		if in.cmd != "RUN" {
			continue
		}
		for _, sh := range strings.Split(in.args, "&&") {
			f := fields(sh)
			if len(f) < 3 || f[0] != "cp" {
				continue
			}
			for _, a := range f[1 : len(f)-1] {
				if !strings.HasPrefix(a, "-") {
					out = append(out, a)
				}
			}
		}
	}
	return out
}

func dockerignore(t *testing.T, path string) []string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range strings.Split(string(data), "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			out = append(out, strings.TrimPrefix(l, "/"))
		}
	}
	return out
}

func find(stage []instruction, cmd, contains string) string {
	for _, in := range stage {
		if in.cmd == cmd && strings.Contains(in.args, contains) {
			return in.args
		}
	}
	return ""
}

func last(stage []instruction, cmd string) string {
	out := ""
	for _, in := range stage {
		if in.cmd == cmd {
			out = in.args
		}
	}
	return out
}

func fields(s string) []string { return strings.Fields(s) }

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}
