package relay_test

import (
	"testing"

	"go.uber.org/goleak"
)

// Every test stops what it started: no goroutine outlives the tests (relays, centers, applications,
// journals, routes watchers).
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
