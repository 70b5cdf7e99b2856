package main

import "github.com/spf13/cobra"

func eslCmd() *cobra.Command {
	return &cobra.Command{Use: "esl", Short: "load test of the esl part (not yet written)", Hidden: true}
}
