// Package switchboard holds the defaults compiled into the binary: the shipped configuration and scripts, used
// when the working directory has none (so `go run ./cmd/switchboard` works anywhere).
package switchboard

import (
	"embed"
	"io/fs"
)

//go:embed configs/switchboard.yaml
var defaultConfig []byte

//go:embed scripts
var scripts embed.FS

// DefaultConfig is configs/switchboard.yaml as built into the binary.
func DefaultConfig() []byte { return defaultConfig }

// DefaultScripts is the scripts/ directory as built into the binary.
func DefaultScripts() fs.FS {
	sub, err := fs.Sub(scripts, "scripts")
	if err != nil {
		panic(err) // the directory is embedded at build time
	}
	return sub
}
