//go:build unix

package engine

import "syscall"

// openFileLimit is the process's RLIMIT_NOFILE soft limit as it runs (on Linux the Go runtime raised it
// to the hard limit at start).
func openFileLimit() (uint64, bool) {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 0, false
	}
	return uint64(rl.Cur), true // "infinity" is the largest value, and caps stay below 1<<40 anyway
}
