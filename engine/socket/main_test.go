package socket

import (
	"testing"

	"go.uber.org/goleak"
)

// Every connection, action and writer goroutine must be gone when the tests end.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
