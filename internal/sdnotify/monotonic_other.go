//go:build !linux

package sdnotify

// monotonicUsec is unavailable off Linux; systemd runs only there.
func monotonicUsec() (uint64, bool) { return 0, false }
