package main

import "github.com/spf13/cobra"

func channelCmd() *cobra.Command {
	return &cobra.Command{Use: "channel", Short: "load test of the channel part (not yet written)", Hidden: true}
}
