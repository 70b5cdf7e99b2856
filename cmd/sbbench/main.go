// Command sbbench is Switchboard's load tool: one subcommand per part, each reporting its rate against a bare
// Go baseline measured in the same invocation.
package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/switchboard/switchboard/engine"
	"github.com/switchboard/switchboard/engine/gcfloor"
)

func main() {
	root := &cobra.Command{
		Use:           "sbbench",
		Short:         "load tests for Switchboard (loopback only)",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	var floorMB int
	var tuner *gcfloor.Tuner
	def := engine.DefaultConfig()
	root.PersistentFlags().IntVar(&floorMB, "gc-floor-mb", def.GCFloorMB,
		"heap size before the first garbage collection (gc_floor_mb, as the engine runs; 0 = Go's default pacing)")
	root.PersistentPreRun = func(*cobra.Command, []string) {
		def.GCFloorMB = floorMB
		tuner = gcfloor.Start(def.GCFloor())
	}
	root.PersistentPostRun = func(*cobra.Command, []string) { tuner.Stop() }
	root.AddCommand(echoCmd(), socketCmd(), relayCmd(), eslCmd(), channelCmd(), clusterTopicCmd(), clusterSayCmd())
	if err := root.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "sbbench:", err)
		os.Exit(1)
	}
}
