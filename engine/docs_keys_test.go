package engine

import (
	"os"
	"strings"
	"testing"
)

func TestEveryKeyIsDocumented(t *testing.T) {
	data, err := os.ReadFile("../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	flat := map[string]any{}
	flattenValue(DefaultConfig(), flat)
	for key := range flat {
		if !strings.Contains(string(data), "`"+key+"`") {
			t.Errorf("docs/configuration.md does not list %s", key)
		}
	}
}
