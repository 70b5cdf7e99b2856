//go:build !unix

package socket

// openNoWait: other systems have no FIFOs that block an open; the type checks still apply.
const openNoWait = 0
