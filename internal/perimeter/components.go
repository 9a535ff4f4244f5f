package perimeter

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"

	"github.com/phantom-perimeter/phantom/internal/audit"
	"github.com/phantom-perimeter/phantom/internal/config"
	"github.com/phantom-perimeter/phantom/internal/detect/respond"
	"github.com/phantom-perimeter/phantom/internal/endpoint"
	"github.com/phantom-perimeter/phantom/internal/gateway"
	"github.com/phantom-perimeter/phantom/internal/identity"
	"github.com/phantom-perimeter/phantom/internal/keys"
	"github.com/phantom-perimeter/phantom/internal/pki"
)

// DefaultGatewayListen is where the gateway listens when neither --listen nor the spec's
// gateway.listen says.
const DefaultGatewayListen = "127.0.0.1:8445"

// AuditDir is where a spec's audit log lives: audit.dir, relative to the data directory.
func AuditDir(dataDir string, spec *config.Spec) string {
	dir := spec.Audit.Dir
	if dir == "" {
		dir = "audit"
	}
	if filepath.IsAbs(dir) {
		return dir
	}
	return filepath.Join(dataDir, dir)
}

// openAuditLogs opens the chains of every component a spec names (sts, gateway, one per
// endpoint, …), each signed by a key of its own the perimeter CA certified.
func openAuditLogs(dataDir string, spec *config.Spec, p *Perimeter, sinks []audit.AnchorStore, log *slog.Logger) (*Chains, error) {
	chains := []string{"sts", "gateway", "egress", "detector", "findings", "console"}
	for _, ep := range spec.Endpoints {
		chains = append(chains, "endpoint-"+ep.ID)
	}
	return OpenChains(AuditDir(dataDir, spec), chains, p, spec.Account, sinks, log)
}

// newGateway builds the gateway over the perimeter's identity service, CA, message
// sealer and the current spec. Its assertion key is derived from the master key
// (keys.Assertion), so every replica signs with the same one.
func newGateway(current func() *config.Spec, p *Perimeter, auditor gateway.Auditor, risk gateway.RiskSource, fresh func() error, m gateway.Metrics, log *slog.Logger) (*gateway.Gateway, error) {
	spec := current()
	key, err := p.Keys.Ed25519(keys.Assertion)
	if err != nil {
		return nil, fmt.Errorf("derive the gateway assertion key: %w", err)
	}
	// To https backends the gateway presents a client certificate from the perimeter CA
	// naming it, and trusts the perimeter CA and the system's roots unless the spec names
	// the backend's own CA.
	client, err := newCertSource(p.Issuer, pki.Request{Identity: pki.Identity{Account: spec.Account, Kind: pki.KindGateway, Name: spec.Gateway.Name}, Client: true})
	if err != nil {
		return nil, err
	}
	roots, err := x509.SystemCertPool()
	if err != nil {
		roots = x509.NewCertPool()
	}
	roots.AppendCertsFromPEM(p.CA.BundlePEM())
	return gateway.New(gateway.Config{
		ClientCert:   client.getClient,
		BackendRoots: roots,
		Name:         spec.Gateway.Name,
		Spec:         current,
		Credentials:  p.IDs,
		Verifier:     p.CA.Verifier(),
		Auditor:      auditor,
		Messages:     p.Messages,
		AssertionKey: key,
		Risk:         risk,
		Fresh:        fresh,
		Metrics:      m,
		Replay:       p.Store,
		Logger:       log,
	})
}

// EndpointChain is the audit chain of endpoint id run inside the gateway process whose
// chain is gatewayChain: endpoint-<id> beside the default "gateway" chain, else prefixed
// with the gateway's, so replicas each running the endpoint write chains of their own.
func EndpointChain(gatewayChain, id string) string {
	if gatewayChain == "gateway" {
		return "endpoint-" + id
	}
	return gatewayChain + "-endpoint-" + id
}

// newEndpoint builds endpoint ep on its listeners: one certificate from the perimeter CA
// naming it serves callers (with its private DNS names). With local set, the gateway runs
// in this process and requests are handed to it in memory (gateway.ServeHandover); else
// they go to gateways over mTLS, and the same certificate authenticates it to them.
func newEndpoint(current func() *config.Spec, p *Perimeter, ep *config.Endpoint, local *gateway.Gateway, gateways []string, auditor endpoint.Auditor, addrs []net.Addr, m endpoint.Metrics, log *slog.Logger) (*endpoint.Endpoint, error) {
	if local == nil && len(gateways) == 0 {
		return nil, errors.New("endpoint " + ep.ID + ": no gateway to forward to")
	}
	spec := current()
	// Its private DNS names, and every API's execute-api names ({api} and {api}-{vpce}),
	// which bind a connection to one API by its TLS server name.
	names := append([]string{config.ExecuteAPIWildcard(spec.Region)}, ep.PrivateDNSNames...)
	req := serverRequest(pki.Identity{Account: spec.Account, Kind: pki.KindEndpoint, Name: ep.ID}, addrs, names...)
	req.Client = local == nil
	certs, err := newCertSource(p.Issuer, req)
	if err != nil {
		return nil, err
	}
	cfg := endpoint.Config{
		ID:         ep.ID,
		Spec:       current,
		ServerCert: certs.getServer,
		Auditor:    auditor,
		Metrics:    m,
		Logger:     log,
	}
	if local != nil {
		cfg.Local = handOver(local)
	} else {
		cfg.ClientCert, cfg.Verifier, cfg.Gateways = certs.getClient, p.CA.Verifier(), gateways
	}
	return endpoint.New(cfg)
}

// listenAddrs are the addresses of listeners.
func listenAddrs(lns []net.Listener) []net.Addr {
	addrs := make([]net.Addr, 0, len(lns))
	for _, ln := range lns {
		addrs = append(addrs, ln.Addr())
	}
	return addrs
}

// HandoffChain is the audit chain of the part of endpoint id a gateway process whose chain
// is gatewayChain runs for an endpoint process that hands it its callers' connections
// (gateway --handoff-endpoint): GATEWAY_CHAIN-endpoint-ID, never endpoint-ID, which the
// endpoint process itself writes on the same host.
func HandoffChain(gatewayChain, id string) string { return gatewayChain + "-endpoint-" + id }

// HandoffSocket is the Unix socket in dir over which endpoint id's process passes its
// callers' connections to the gateway (--handoff fd).
func HandoffSocket(dir, id string) string { return filepath.Join(dir, id+".sock") }

// handOver is endpoint.Config.Local for a gateway in the endpoint's process: the
// endpoint's Handover becomes the gateway's, a typed value no caller can send.
func handOver(gw *gateway.Gateway) func(http.ResponseWriter, *http.Request, endpoint.Handover) {
	return func(w http.ResponseWriter, r *http.Request, h endpoint.Handover) {
		gw.ServeHandover(w, r, &gateway.Handover{Endpoint: h.Endpoint, SourceIP: h.SourceIP, APIID: h.APIID, TLSVersion: h.TLSVersion, CipherSuite: h.CipherSuite})
	}
}

// newResponder stores findings and applies the spec's responses through the perimeter's
// identity service; its risk levels are the gateway's phantom:RiskLevel.
func newResponder(current func() *config.Spec, p *Perimeter, auditor respond.Auditor, log *slog.Logger) (*respond.Responder, error) {
	var ids respond.Identity = p.IDs
	if !p.Keys.Has(keys.StoreAccessKeys) {
		ids = statusWriter{p.IDs, p.Store}
	}
	r, err := respond.New(respond.Config{Spec: current, Identity: ids, Store: p.Store, Auditor: auditor, Logger: log})
	if err != nil {
		return nil, err
	}
	return r, nil
}

// statusWriter is the responder's identity service in a process that holds no key to
// read users' secret keys (a detector with its key file): disabling a key changes its
// status, which needs no secret.
type statusWriter struct {
	*identity.Service
	st interface {
		UpdateAccessKeyStatus(ctx context.Context, id, status string) error
	}
}

func (w statusWriter) UpdateAccessKeyStatus(ctx context.Context, id, status string) error {
	if err := w.st.UpdateAccessKeyStatus(ctx, id, status); err != nil {
		return fmt.Errorf("update access key %s: %w", id, err)
	}
	return nil
}
