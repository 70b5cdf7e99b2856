// Package switchboard holds the scripts compiled into the binary: with no configuration file (no -c, and
// neither configs/switchboard.yaml nor /etc/switchboard/switchboard.yaml exists) the engine runs on its
// built-in defaults (engine.DefaultConfig) with these scripts, so `go run ./cmd/switchboard` works from any
// directory.
package switchboard

import (
	"embed"
	"io/fs"
)

//go:embed scripts
var scripts embed.FS

// DefaultScripts is the scripts/ directory as built into the binary.
func DefaultScripts() fs.FS {
	sub, err := fs.Sub(scripts, "scripts")
	if err != nil {
		panic(err) // the directory is embedded at build time
	}
	return sub
}
