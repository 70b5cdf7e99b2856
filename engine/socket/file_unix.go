//go:build unix

package socket

import "syscall"

// openNoWait makes opening a public file return at once whatever it is (a FIFO would wait for a writer)
// and never make a terminal the process's controlling terminal.
const openNoWait = syscall.O_NONBLOCK | syscall.O_NOCTTY
