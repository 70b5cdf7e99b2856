package main

import "github.com/spf13/cobra"

func relayCmd() *cobra.Command {
	return &cobra.Command{Use: "relay", Short: "load test of the relay part (not yet written)", Hidden: true}
}
