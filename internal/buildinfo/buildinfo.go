// Package buildinfo is the stamp a release build writes into the binary: the version, the commit and the
// build date, set at link time, and the Go release that compiled it.
//
//	go build -ldflags "-X github.com/switchboard/switchboard/internal/buildinfo.version=v1.2.0 \
//	  -X github.com/switchboard/switchboard/internal/buildinfo.commit=$(git rev-parse HEAD) \
//	  -X github.com/switchboard/switchboard/internal/buildinfo.date=2026-01-02T03:04:05Z" ./cmd/switchboard
//
// build/release.sh does this. A plain `go build` or `go run` has no stamp: the version is "dev" (or the
// module version under `go install ...@v1.2.0`) and the commit is the one Go recorded from the checkout.
package buildinfo

import (
	"runtime"
	"runtime/debug"
)

// Set with -ldflags -X; unexported so nothing can change them at run time.
var (
	version string
	commit  string
	date    string
)

// Info is what a binary knows about its own build.
type Info struct {
	Version string // "v1.2.0", "v1.2.0-3-gabc1234-dirty" (git describe) or "dev"
	Commit  string // full commit hash, "" when unknown
	Date    string // build date, RFC 3339 in UTC, "" when unknown
	Go      string // runtime.Version(), e.g. "go1.26.8"
}

// Get returns the stamp, falling back to what the Go toolchain recorded for an unstamped build.
func Get() Info {
	bi, _ := debug.ReadBuildInfo()
	return resolve(version, commit, date, bi)
}

func resolve(version, commit, date string, bi *debug.BuildInfo) Info {
	info := Info{Version: version, Commit: commit, Date: date, Go: runtime.Version()}
	if bi == nil {
		bi = &debug.BuildInfo{}
	}
	if info.Version == "" {
		info.Version = "dev"
		if v := bi.Main.Version; v != "" && v != "(devel)" {
			info.Version = v
		}
	}
	if info.Commit == "" {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" {
				info.Commit = s.Value
			}
		}
	}
	return info
}

// ShortCommit is the first 12 characters of the commit, enough to name it in a repository.
func (i Info) ShortCommit() string {
	if len(i.Commit) > 12 {
		return i.Commit[:12]
	}
	return i.Commit
}
