// Package docs keeps the documentation honest: every Lua example in docs/lua-api.md must compile.
package docs

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/switchboard/switchboard/luabind"
	"github.com/switchboard/switchboard/tests/harness"
)

var luaBlock = regexp.MustCompile("(?s)```lua\n(.*?)```")

func TestLuaAPIExamplesCompile(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(harness.Root(), "docs", "lua-api.md"))
	if err != nil {
		t.Fatal(err)
	}
	blocks := luaBlock.FindAllStringSubmatch(string(data), -1)
	if len(blocks) < 10 {
		t.Fatalf("only %d Lua examples in docs/lua-api.md", len(blocks))
	}
	for _, b := range blocks {
		src := b[1]
		line := strings.Count(string(data[:strings.Index(string(data), src)]), "\n") + 1
		if _, err := luabind.CompileFunc("docs/lua-api.md", src); err != nil {
			t.Errorf("example at docs/lua-api.md:%d does not compile: %v\n%s", line, err, src)
		}
	}
}
