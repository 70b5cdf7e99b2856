package engine

import (
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/switchboard/switchboard/"

// goListDeps lists the packages pkg depends on (go list -deps), itself included.
func goListDeps(t *testing.T, pkg string) []string {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go tool on PATH")
	}
	out, err := exec.Command(goTool, "list", "-deps", pkg).Output()
	if err != nil {
		t.Fatalf("go list -deps %s: %v", pkg, err)
	}
	return strings.Fields(string(out))
}

// The dependency direction of docs/architecture.md: parts -> transport, bus, luabind's runtime; engine ->
// parts. luabind is the runtime only and imports no part (nor the cluster); a part's core package imports
// neither luabind nor engine (its binding, engine/<part>/<part>lua, does the Lua side).
func TestDependencyDirection(t *testing.T) {
	parts := []string{"engine/socket", "engine/relay", "engine/esl", "engine/channel", "engine/cluster"}
	isPart := func(p string) bool {
		for _, part := range parts {
			if p == module+part || strings.HasPrefix(p, module+part+"/") {
				return true
			}
		}
		return false
	}
	for _, dep := range goListDeps(t, "../luabind") {
		if isPart(dep) || dep == module+"engine" {
			t.Errorf("luabind depends on %s", dep)
		}
	}
	for _, part := range parts {
		for _, dep := range goListDeps(t, "../"+part) {
			if dep == module+"luabind" || dep == module+"engine" {
				t.Errorf("%s depends on %s", part, dep)
			}
		}
	}
}
