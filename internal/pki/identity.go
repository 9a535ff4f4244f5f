package pki

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"regexp"

	"github.com/phantom-perimeter/phantom/internal/arn"
)

// TrustDomain is the SPIFFE trust domain of every Phantom identity. The account id is the
// first path segment, so perimeters of different accounts never accept each other's
// certificates even if they shared a CA.
const TrustDomain = "phantom"

// Kind is what a certificate identifies.
type Kind string

const (
	// KindEndpoint is a VPC-endpoint analogue; its name is its vpce- id. The gateway
	// takes aws:SourceVpce from this identity and from nowhere else.
	KindEndpoint Kind = "endpoint"
	// KindGateway is a gateway replica.
	KindGateway Kind = "gateway"
	// KindNode is an enrolled workload host running the agent.
	KindNode Kind = "node"
	// KindAudit is an audit chain's writer; its name is the chain's. Its certificate
	// vouches for the Ed25519 key that signs the chain's digests, and for nothing else:
	// it carries only the document-signing usage, so no TLS peer accepts it.
	KindAudit Kind = "audit"
	// KindEgress is an egress proxy, KindDetector a detector, KindConsole a console: the
	// components that enroll with STS as gateways and endpoints do, so that their hosts
	// hold a certificate of their own and no CA key.
	KindEgress   Kind = "egress"
	KindDetector Kind = "detector"
	KindConsole  Kind = "console"
)

// ComponentKinds are the kinds a component enrolls as (STS's component API); a node
// enrolls through the node API, and audit writers are certified, not enrolled.
var ComponentKinds = []Kind{KindEndpoint, KindGateway, KindEgress, KindDetector, KindConsole}

// Identity is who a Phantom certificate names: spiffe://phantom/<account>/<kind>/<name>.
type Identity struct {
	Account string
	Kind    Kind
	Name    string
}

var (
	endpointRe = regexp.MustCompile(`^vpce-([0-9a-f]{8}|[0-9a-f]{17})$`)
	// Gateway and node names are DNS labels (RFC 1123), as the spec requires.
	labelRe = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
	// hostLabelRe is a DNS label of a host name (RFC 1123), either case.
	hostLabelRe = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$`)
	// chainRe is an audit chain name (audit.ValidChain).
	chainRe = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)
	// uriRe is the whole URI, matched on its text so that no parser normalisation (case,
	// percent-encoding, dot segments) can make two spellings name one identity.
	uriRe = regexp.MustCompile(`^spiffe://phantom/([0-9]{12})/(endpoint|gateway|node|audit|egress|detector|console)/([a-z0-9-]{1,63})$`)
)

// ErrNoIdentity is returned for a certificate that does not carry exactly one Phantom
// identity.
var ErrNoIdentity = errors.New("certificate does not name exactly one phantom identity")

// Validate checks the identity's fields.
func (id Identity) Validate() error {
	if !arn.ValidAccount(id.Account) {
		return fmt.Errorf("identity account %q is not 12 digits", id.Account)
	}
	switch id.Kind {
	case KindEndpoint:
		if !endpointRe.MatchString(id.Name) {
			return fmt.Errorf("endpoint name %q is not a vpce- id", id.Name)
		}
	case KindGateway, KindNode, KindEgress, KindDetector, KindConsole:
		if !labelRe.MatchString(id.Name) {
			return fmt.Errorf("%s name %q is not a lower-case DNS label", id.Kind, id.Name)
		}
	case KindAudit:
		if !chainRe.MatchString(id.Name) {
			return fmt.Errorf("audit chain name %q is not [a-z0-9-]+", id.Name)
		}
	default:
		return fmt.Errorf("identity kind %q is not endpoint, gateway, node, audit, egress, detector or console", id.Kind)
	}
	return nil
}

// URI returns the identity as the URI SAN its certificates carry.
func (id Identity) URI() *url.URL {
	return &url.URL{Scheme: "spiffe", Host: TrustDomain, Path: "/" + id.Account + "/" + string(id.Kind) + "/" + id.Name}
}

func (id Identity) String() string { return id.URI().String() }

// ParseIdentity parses spiffe://phantom/<account>/<kind>/<name>, exactly as Phantom
// writes it: no other spelling is accepted.
func ParseIdentity(uri string) (Identity, error) {
	m := uriRe.FindStringSubmatch(uri)
	if m == nil {
		return Identity{}, fmt.Errorf("%q is not a phantom identity URI", uri)
	}
	id := Identity{Account: m[1], Kind: Kind(m[2]), Name: m[3]}
	if err := id.Validate(); err != nil {
		return Identity{}, err
	}
	return id, nil
}

// IdentityFromCert returns the identity a certificate names. It does not verify the
// certificate: call it on a chain the TLS stack or Verifier.Verify has verified. A
// certificate must carry exactly one URI SAN and it must be a Phantom identity; more
// would leave the peer's identity open to interpretation.
func IdentityFromCert(cert *x509.Certificate) (Identity, error) {
	if cert == nil || len(cert.URIs) != 1 {
		return Identity{}, ErrNoIdentity
	}
	u := cert.URIs[0]
	if u.Opaque != "" || u.User != nil || u.RawPath != "" || u.RawQuery != "" || u.Fragment != "" || u.ForceQuery || u.OmitHost {
		return Identity{}, fmt.Errorf("%w: malformed URI SAN", ErrNoIdentity)
	}
	id, err := ParseIdentity(u.String())
	if err != nil {
		return Identity{}, fmt.Errorf("%w: %v", ErrNoIdentity, err)
	}
	return id, nil
}
