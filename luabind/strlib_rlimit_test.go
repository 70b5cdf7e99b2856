//go:build linux

package luabind

import (
	"bytes"
	"fmt"
	"os"
	osexec "os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

const rlimitChildEnv = "SB_TEST_RLIMIT_CHILD"

// addressSpaceHeadroom is what the child may map beyond what it holds when the limit is set: enough for the
// scripts' inputs (16 MiB strings) and the race detector's shadow memory, far less than the results the
// library used to build (64 x 16 MiB for string.format, 8 GiB for string.gsub, 320 GB for table.concat).
const addressSpaceHeadroom = 1 << 30

// TestLibraryLimitsUnderAddressSpaceLimit runs the size-limit cases in a child process whose address space
// is capped, the way the attacks killed the engine: an allocation the kernel refuses is a fatal error in
// Go, which no recover sees. The child must survive, report each script's error and keep serving.
func TestLibraryLimitsUnderAddressSpaceLimit(t *testing.T) {
	if os.Getenv(rlimitChildEnv) == "1" {
		runRlimitChild(t)
		return
	}
	cmd := osexec.Command(os.Args[0], "-test.run=^TestLibraryLimitsUnderAddressSpaceLimit$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), rlimitChildEnv+"=1")
	out, err := cmd.CombinedOutput()
	if err != nil || !bytes.Contains(out, []byte("child: every limit held")) {
		if len(out) > 4000 {
			out = out[len(out)-4000:]
		}
		t.Fatalf("child: %v\n%s", err, out)
	}
}

func runRlimitChild(t *testing.T) {
	cfg := DefaultConfig()
	cfg.HandlerTimeout = 10 * time.Second
	rt := startRuntime(t, cfg, map[string]string{"a.lua": limitScript + `
sb.on("format64", function() return string.format(("%s"):rep(64), unpack((function() local t = {} for i = 1, 64 do t[i] = big end return t end)())) end)
sb.on("echo", function(s) return s end)`})
	g := rt.Current()

	held := vmSizeBytes(t)
	limit := held + addressSpaceHeadroom
	if err := syscall.Setrlimit(syscall.RLIMIT_AS, &syscall.Rlimit{Cur: limit, Max: limit}); err != nil {
		t.Fatalf("setrlimit: %v", err)
	}
	t.Logf("address space: %d MiB mapped, limit %d MiB", held>>20, limit>>20)

	cases := append(limitCases, struct{ name, want string }{
		"format64", "scripts/a.lua:22: string.format: result would exceed lua.max_string_bytes (16777216)"})
	for _, c := range cases {
		_, err := callOn(t, g, c.name, 0)
		if err == nil || err.Error() != c.want+" (event test "+c.name+")" {
			t.Errorf("%s: got %v\nwant %s", c.name, err, c.want)
		}
		if got, err := callOn(t, g, "echo", 0, "still here"); err != nil || got != "still here" {
			t.Errorf("after %s: %q, %v", c.name, got, err)
		}
	}
	if !t.Failed() {
		fmt.Println("child: every limit held")
	}
}

// vmSizeBytes is the process's mapped address space (VmSize in /proc/self/status).
func vmSizeBytes(t *testing.T) uint64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmSize:"); ok {
			kb, err := strconv.ParseUint(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			if err != nil {
				t.Fatalf("VmSize %q: %v", rest, err)
			}
			return kb << 10
		}
	}
	t.Fatal("no VmSize in /proc/self/status")
	return 0
}
