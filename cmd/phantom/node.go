package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/phantom-perimeter/phantom/internal/admin"
	"github.com/phantom-perimeter/phantom/internal/nodeapi"
	"github.com/phantom-perimeter/phantom/internal/pki"
)

func newNodeCmd() *cobra.Command {
	f := new(adminFlags)
	cmd := &cobra.Command{
		Use:   "node",
		Short: "Node enrollment: join tokens and certificates from the perimeter CA",
		Long: `A node (a workload host running the agent) proves who it is with a client certificate
from the perimeter CA, naming it spiffe://phantom/<account>/node/<name>. The operator makes
a single-use join token for a node of the spec; the node redeems it once for a certificate.

The commands run against the data directory (the CA lives in <data-dir>/ca). On a
workload host, "phantom agent --join-token-file F" enrolls over the network instead: STS's
node API redeems the token, so the host needs only the token and the CA bundle.

"phantom node revoke" removes a node: its certificate and every session issued to it are
refused from then on; "phantom node list" shows every node with its certificate, last
contact and status.` + adminFlagsHelp,
	}
	f.register(cmd)
	cmd.AddCommand(newNodeJoinTokenCmd(f), newNodeEnrollCmd(f), newNodeRevokeCmd(f), newNodeListCmd(f))
	return cmd
}

func newNodeRevokeCmd(f *adminFlags) *cobra.Command {
	var node string
	cmd := &cobra.Command{
		Use:   "revoke --node NAME",
		Short: "Remove a node: refuse its certificate and every session issued to it",
		Long: `Remove a node from the perimeter. From now on its certificate is refused by STS's node
API (it gets no credentials and cannot renew) and by the egress proxy, and every session
issued to it before now is refused by the gateway, STS and the egress proxy, whatever its
role: every running process sharing the store applies it within 2 seconds (they poll its
change counter), and the node's agent, told on its watch, stops serving credentials.
Sessions issued before now stay refused for good; the node itself may come back only by
enrolling again with a new join token (phantom node join-token). Prints {"NodeName",
"CertificateSerial", "RevokedAt"}. The action is audited in the chain "admin" (who ran it:
the operating-system user and host). To cut off only the sessions of a role, use phantom iam
revoke-sessions.`,
		Example: `  phantom node revoke --node service-a-1 --config perimeter.yaml --data-dir /var/lib/phantom
  phantom node list --output text | grep REVOKED`,
		Args: cobra.NoArgs,
		RunE: f.run("RevokeNode", func(cmd *cobra.Command, a *admin.Admin) (admin.Output, error) {
			return a.RevokeNode(cmd.Context(), node)
		}),
	}
	cmd.Flags().StringVar(&node, "node", "", "node name")
	cmd.MarkFlagRequired("node")
	return cmd
}

func newNodeListCmd(f *adminFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List nodes: status, certificate serial and expiry, last contact",
		Long: `List the spec's nodes and every enrolled node as {"Nodes": [{"NodeName", "RoleName",
"Status" (Active, Revoked or NotEnrolled), "CertificateSerial", "NotAfter", "EnrolledAt",
"LastContact", "LastContactIP", "RevokedAt", "InSpec"}]}. LastContact is the node's last
call to STS's node API (its agent's credentials, renewals and its watch, at least once a
minute while it runs).`,
		Example: `  phantom node list --config perimeter.yaml --data-dir /var/lib/phantom
  phantom node list | jq -r '.Nodes[] | select(.Status == "Active") | "\(.NodeName) \(.LastContact)"'`,
		Args: cobra.NoArgs,
		RunE: f.run("ListNodes", func(cmd *cobra.Command, a *admin.Admin) (admin.Output, error) {
			return a.ListNodes(cmd.Context())
		}),
	}
}

func newNodeJoinTokenCmd(f *adminFlags) *cobra.Command {
	var node string
	var ttl time.Duration
	cmd := &cobra.Command{
		Use:   "join-token --node NAME [--ttl 1h]",
		Short: "Make a single-use join token for a node of the spec (shown only now)",
		Long: fmt.Sprintf(`Make a join token that enrolls the named node once within --ttl (at most %s).
Prints {"JoinToken": {"NodeName", "Token", "Expiration"}}; --output text prints the token
alone. Only the token's hash is stored: this is the only copy; hand it to the node over a
channel you trust.`, pki.MaxTokenTTL),
		Example: `  phantom node join-token --node service-a-1 --ttl 1h --output text > token.txt
  # on the node: phantom agent --join-token-file token.txt ... (or phantom node enroll)`,
		Args: cobra.NoArgs,
		RunE: f.run("CreateJoinToken", func(cmd *cobra.Command, a *admin.Admin) (admin.Output, error) {
			return a.JoinToken(cmd.Context(), node, ttl)
		}),
	}
	cmd.Flags().StringVar(&node, "node", "", "node name (in the spec)")
	cmd.Flags().DurationVar(&ttl, "ttl", pki.DefaultTokenTTL, "how long the token is valid")
	cmd.MarkFlagRequired("node")
	return cmd
}

func newNodeEnrollCmd(f *adminFlags) *cobra.Command {
	var token, tokenFile, out string
	cmd := &cobra.Command{
		Use:   "enroll (--token T | --token-file FILE) --out DIR",
		Short: "Redeem a join token: write the node's certificate, key and the CA bundle",
		Long: fmt.Sprintf(`Make a P-256 key pair and a certificate request, redeem the join token with the
perimeter CA, and write into --out (created 0700): %s (the node's client certificate),
%s (its key, 0600) and %s (the CA bundle). The token works once; a used, unknown or
altered token is InvalidClientTokenId, an expired one ExpiredToken.

--token-file reads the token from a file (- for stdin) so it stays out of the process list.
This runs against the CA in the same data directory as join-token; "phantom agent" enrolls
over the network through STS.`, nodeapi.CertFile, nodeapi.KeyFile, nodeapi.CABundleFile),
		Example: `  phantom node join-token --node service-a-1 --output text | phantom node enroll --token-file - --out /etc/phantom/node
  phantom node enroll --token-file token.txt --out /etc/phantom/node`,
		Args: cobra.NoArgs,
		PreRunE: func(cmd *cobra.Command, _ []string) error {
			if (token == "") == (tokenFile == "") {
				return &exitError{code: exitUsage, err: fmt.Errorf("give exactly one of --token and --token-file")}
			}
			if tokenFile == "" {
				return nil
			}
			var r io.Reader = cmd.InOrStdin()
			if tokenFile != "-" {
				fh, err := os.Open(tokenFile)
				if err != nil {
					return &exitError{code: exitOther, err: err}
				}
				defer fh.Close()
				r = fh
			}
			line, err := bufio.NewReader(io.LimitReader(r, 4096)).ReadString('\n')
			if err != nil && err != io.EOF {
				return &exitError{code: exitOther, err: fmt.Errorf("read token: %w", err)}
			}
			token = strings.TrimSpace(line)
			return nil
		},
		RunE: f.run("EnrollNode", func(cmd *cobra.Command, a *admin.Admin) (admin.Output, error) {
			return a.Enroll(cmd.Context(), token, out)
		}),
	}
	cmd.Flags().StringVar(&token, "token", "", "join token (phjt_...)")
	cmd.Flags().StringVar(&tokenFile, "token-file", "", "read the join token from this file (- for stdin)")
	cmd.Flags().StringVar(&out, "out", "", "directory for the node's certificate, key and CA bundle")
	cmd.MarkFlagRequired("out")
	return cmd
}
