package esl_test

import (
	"context"
	"testing"
	"time"

	"github.com/switchboard/switchboard/engine/esl"
	"github.com/switchboard/switchboard/engine/esl/esltest"
)

// BenchmarkExecuteRoundTrip: one call in async full mode, b.N executes of `set` with event-lock, each
// waiting for its CHANNEL_EXECUTE_COMPLETE (sendmsg -> +OK -> EXECUTE -> COMPLETE) over loopback TCP,
// with the simulator in the same process.
func BenchmarkExecuteRoundTrip(b *testing.B) {
	done := make(chan error, 1)
	flow := esl.FlowFunc(func(ctx context.Context, s *esl.Session) error {
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			if _, err := s.Execute(ctx, "set", "n=1", esl.ExecOptions{}); err != nil {
				done <- err
				return err
			}
		}
		b.StopTimer()
		done <- nil
		return nil
	})
	cfg := esl.DefaultConfig()
	cfg.Listen = "127.0.0.1:0"
	srv, err := esl.New(cfg, esl.Options{Flows: func(*esl.CallInfo) (esl.Flow, error) { return flow, nil }})
	if err != nil {
		b.Fatal(err)
	}
	if err := srv.Start(context.Background()); err != nil {
		b.Fatal(err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	}()
	b.ReportAllocs()
	if _, err := esltest.Run(context.Background(), esltest.Call{Addr: srv.Addrs()["esl"].String(), Async: true, Full: true, Quiet: true}); err != nil {
		b.Fatal(err)
	}
	if err := <-done; err != nil {
		b.Fatal(err)
	}
}
