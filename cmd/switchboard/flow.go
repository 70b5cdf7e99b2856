package main

import "github.com/spf13/cobra"

// flowCmd is `switchboard flow test <flow>`; owned by the call-control part.
func flowCmd(opts *rootOptions) *cobra.Command {
	return &cobra.Command{Use: "flow", Short: "test call flows against a simulated call", Hidden: true}
}
