package lifecycle

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/switchboard/switchboard/internal/testutil"
)

func TestStopOnce(t *testing.T) {
	var s StopOnce
	release := make(chan struct{})
	first := make(chan error, 1)
	boom := errors.New("boom")
	go func() {
		first <- s.Do(context.Background(), func() error { <-release; return boom })
	}()
	// wait until the first call owns the stop
	testutil.WaitFor(t, "the first call to own the stop", s.Started)
	// A second call gives up with its own context while the first is still stopping...
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.Do(ctx, func() error { t.Error("stop ran twice"); return nil }); !errors.Is(err, context.Canceled) {
		t.Fatalf("second call with a done context: %v", err)
	}
	// ...or waits for it and returns its result.
	second := make(chan error, 1)
	go func() {
		second <- s.Do(context.Background(), func() error { t.Error("stop ran twice"); return nil })
	}()
	close(release)
	for _, ch := range []chan error{first, second} {
		select {
		case err := <-ch:
			if err != boom {
				t.Fatalf("got %v, want the first call's error", err)
			}
		case <-time.After(20 * time.Second):
			t.Fatal("stop never returned")
		}
	}
}
