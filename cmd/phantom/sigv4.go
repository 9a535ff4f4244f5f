package main

import "github.com/spf13/cobra"

func newSigv4Cmd() *cobra.Command {
	return &cobra.Command{Use: "sigv4", Short: "AWS Signature Version 4 tools"}
}
