package proctest

import (
	"encoding/base64"
	"fmt"
	"net/netip"
	"time"

	"github.com/phantom-perimeter/phantom/internal/egress"
	"github.com/phantom-perimeter/phantom/internal/keys"
)

// NodeProxyAuthorization is the Proxy-Authorization value of node Node for the egress
// proxy: the password STS hands the node's agent with a role session issued now and valid
// for d, signed here with the key STS signs with (derived from the perimeter's master key,
// which the harness holds as the operator does).
func (c *Cluster) NodeProxyAuthorization(d time.Duration) (string, error) {
	mk, err := base64.StdEncoding.DecodeString(c.masterKey)
	if err != nil {
		return "", err
	}
	key, err := keys.DeriveEd25519(mk, keys.EgressPasswords)
	if err != nil {
		return "", fmt.Errorf("egress password key: %w", err)
	}
	now := time.Now()
	pw := egress.ProxyPassword(key, egress.Credential{Node: Node, Addr: netip.MustParseAddr("127.0.0.1"), Issued: now, Expires: now.Add(d)})
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(Node+":"+pw)), nil
}
