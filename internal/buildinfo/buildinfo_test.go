package buildinfo

import (
	"runtime"
	"runtime/debug"
	"testing"
)

func TestResolve(t *testing.T) {
	vcs := &debug.BuildInfo{Main: debug.Module{Version: "(devel)"},
		Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "0123456789abcdef0123456789abcdef01234567"}, {Key: "vcs.modified", Value: "true"}}}
	tests := []struct {
		name                  string
		version, commit, date string
		bi                    *debug.BuildInfo
		want                  Info
	}{
		{"stamped", "v1.2.0", "feedfacefeedfacefeedfacefeedfacefeedface", "2026-01-02T03:04:05Z", vcs,
			Info{Version: "v1.2.0", Commit: "feedfacefeedfacefeedfacefeedfacefeedface", Date: "2026-01-02T03:04:05Z"}},
		{"go build in a checkout", "", "", "", vcs,
			Info{Version: "dev", Commit: "0123456789abcdef0123456789abcdef01234567"}},
		{"go install at a version", "", "", "", &debug.BuildInfo{Main: debug.Module{Version: "v1.3.0"}},
			Info{Version: "v1.3.0"}},
		{"no build information", "", "", "", nil, Info{Version: "dev"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.want.Go = runtime.Version()
			if got := resolve(tc.version, tc.commit, tc.date, tc.bi); got != tc.want {
				t.Errorf("resolve = %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestShortCommit(t *testing.T) {
	for commit, want := range map[string]string{
		"0123456789abcdef0123456789abcdef01234567": "0123456789ab",
		"abc1234": "abc1234",
		"":        "",
	} {
		if got := (Info{Commit: commit}).ShortCommit(); got != want {
			t.Errorf("ShortCommit(%q) = %q, want %q", commit, got, want)
		}
	}
}
