package main

import "github.com/spf13/cobra"

func socketCmd() *cobra.Command {
	return &cobra.Command{Use: "socket", Short: "load test of the socket part (not yet written)", Hidden: true}
}
