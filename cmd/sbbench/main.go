// Command sbbench is Switchboard's load tool: one subcommand per part, each reporting its rate against a bare
// Go baseline measured in the same invocation.
package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"
)

func main() {
	root := &cobra.Command{
		Use:           "sbbench",
		Short:         "load tests for Switchboard (loopback only)",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(echoCmd(), socketCmd(), relayCmd(), eslCmd(), channelCmd())
	if err := root.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "sbbench:", err)
		os.Exit(1)
	}
}
