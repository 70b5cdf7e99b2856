//go:build !unix

package engine

// openFileLimit: no descriptor limit to read; connection caps left at 0 stay unlimited.
func openFileLimit() (uint64, bool) { return 0, false }
