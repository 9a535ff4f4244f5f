package gateway

import (
	"crypto/x509"
	"encoding/binary"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/phantom-perimeter/phantom/internal/audit"
	"github.com/phantom-perimeter/phantom/internal/config"
	"github.com/phantom-perimeter/phantom/internal/handoff"
	"github.com/phantom-perimeter/phantom/internal/pki"
)

// Headers the gateway sets on the request to a backend (the endpoint's to the gateway are
// handoff's: Header*).
const (
	hdrIdentity  = "X-Phantom-Identity"
	hdrRequestID = "X-Phantom-Request-Id"
)

// channel is what the connection says about a request: the endpoint it came through, if
// any, and the caller's address and TLS.
type channel struct {
	endpoint *config.Endpoint // nil: a direct connection
	apiIDs   []string         // the API the endpoint selected; nil: none said
	sourceIP string           // aws:SourceIp, sourceIPAddress
	secure   bool             // aws:SecureTransport: the caller's hop was TLS
	tls      *audit.TLSDetails
}

// Handover is what an endpoint running in the gateway's own process says about a request
// it hands over in memory instead of over an mTLS hop (internal/perimeter wires it): the
// endpoint's identity is this typed value, which only code in the process can make, so
// no header a caller sends can stand in for it. The endpoint has applied its security
// group, TLS-only listener and API selection, exactly as before an mTLS hop.
type Handover struct {
	Endpoint    string     // the endpoint's id, vpce-…
	SourceIP    netip.Addr // the caller's address
	APIID       string     // the API the endpoint selected for the request
	TLSVersion  uint16     // the caller's TLS connection to the endpoint
	CipherSuite uint16
}

// ServeHandover serves a request an endpoint of this process accepted, as ServeHTTP
// serves one that came over an endpoint's mTLS connection: the same decision, audit
// record and forwarding, with the channel taken from h. r.TLS and r.RemoteAddr describe
// the caller's connection to the endpoint and are not consulted for the endpoint.
// The handover travels with the call, not in a new request and context: no copy of the
// request per handover. h is not kept.
func (g *Gateway) ServeHandover(w http.ResponseWriter, r *http.Request, h *Handover) {
	g.serve(w, r, h)
}

// errClientCert is a presented certificate the gateway does not accept as an endpoint.
type errClientCert struct{ reason string }

func (e *errClientCert) Error() string { return e.reason }

// identify classifies the connection. A presented client certificate must verify against
// the perimeter CA for client use and name an endpoint of the current spec; anything else
// is refused (InvalidClientCertificate), never downgraded to a direct connection: a peer that
// presents a certificate claims to be an endpoint. Without a certificate the request is
// direct, and only the TCP peer and r.TLS describe it.
func (g *Gateway) identify(cl *call) (channel, *errClientCert) {
	r, spec, td := cl.r, cl.spec, &cl.store.tls
	if cl.handedOver {
		return handedOver(r, spec, &cl.handover, g.addrs.string(cl.handover.SourceIP), td, &cl.handoverAPI)
	}
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		c := channel{sourceIP: peerIP(r.RemoteAddr), secure: r.TLS != nil}
		if r.TLS != nil {
			*td = audit.TLSDetails{TLSVersion: audit.TLSVersionName(r.TLS.Version), CipherSuite: audit.CipherSuiteName(r.TLS.CipherSuite), ClientProvidedHostHeader: r.Host}
			c.tls = td
		}
		return c, nil
	}
	id, err := g.verifyPeer(r.TLS.PeerCertificates)
	if err != nil {
		return channel{sourceIP: peerIP(r.RemoteAddr), secure: true}, err
	}
	if id.Kind != pki.KindEndpoint {
		return channel{sourceIP: peerIP(r.RemoteAddr), secure: true}, &errClientCert{"the client certificate names a " + string(id.Kind) + ", not an endpoint"}
	}
	ep, ok := spec.Endpoint(id.Name)
	if !ok {
		return channel{sourceIP: peerIP(r.RemoteAddr), secure: true}, &errClientCert{"the client certificate names endpoint " + id.Name + ", which the spec does not define"}
	}
	// (The header names are canonical: the map read is Values without canonicalizing
	// them again.)
	c := channel{endpoint: ep, apiIDs: r.Header[handoff.HeaderAPIID], secure: true}
	if v := headerValue(r.Header, handoff.HeaderSourceIP); v != "" {
		if a, err := netip.ParseAddr(v); err == nil && a.Zone() == "" {
			if c.sourceIP = v; !a.Is4() {
				c.sourceIP = a.Unmap().String()
			}
		}
	}
	// An endpoint listener is TLS only (config.Endpoint.Listen), so the caller's hop was
	// encrypted whatever the headers say; they only describe it for the audit record.
	*td = audit.TLSDetails{
		TLSVersion:               headerToken(headerValue(r.Header, handoff.HeaderTLSVersion)),
		CipherSuite:              headerToken(headerValue(r.Header, handoff.HeaderTLSCipher)),
		ClientProvidedHostHeader: r.Host,
	}
	c.tls = td
	return c, nil
}

// handedOver is the channel of a request an endpoint of this process handed over: the
// endpoint must be one of the current spec (a reload may have removed it), as a
// certificate's must. src is h.SourceIP as records spell it (addrStrings.string).
func handedOver(r *http.Request, spec *config.Spec, h *Handover, src string, td *audit.TLSDetails, apiID *[1]string) (channel, *errClientCert) {
	ep, ok := spec.Endpoint(h.Endpoint)
	if !ok {
		return channel{sourceIP: src, secure: true}, &errClientCert{"the handover names endpoint " + h.Endpoint + ", which the spec does not define"}
	}
	*td = audit.TLSDetails{TLSVersion: audit.TLSVersionName(h.TLSVersion), CipherSuite: audit.CipherSuiteName(h.CipherSuite), ClientProvidedHostHeader: r.Host}
	c := channel{endpoint: ep, sourceIP: src, secure: true, tls: td}
	if h.APIID != "" {
		apiID[0] = h.APIID
		c.apiIDs = apiID[:]
	}
	return c, nil
}

// headerToken keeps an endpoint-supplied TLS detail short and printable.
func headerToken(s string) string {
	if len(s) > 64 {
		s = s[:64]
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c >= 0x7f {
			return ""
		}
	}
	return s
}

func peerIP(remote string) string {
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		host = remote
	}
	if a, err := netip.ParseAddr(host); err == nil {
		if a.Is4() {
			return host // ParseAddr accepts only the canonical dotted quad
		}
		return a.Unmap().WithZone("").String()
	}
	return host
}

// verifyPeer verifies a presented chain, remembering the result per leaf certificate: every
// request on a connection carries the same *x509.Certificate, so chain verification runs once
// per connection rather than once per request. A remembered identity expires with the leaf.
func (g *Gateway) verifyPeer(chain []*x509.Certificate) (pki.Identity, *errClientCert) {
	leaf := chain[0]
	now := g.now()
	if id, ok := g.peers.get(leaf, now); ok {
		return id, nil
	}
	if g.cfg.Verifier == nil {
		return pki.Identity{}, &errClientCert{"the gateway verifies no client certificates"}
	}
	id, err := g.cfg.Verifier.Verify(chain, x509.ExtKeyUsageClientAuth)
	if err != nil {
		return pki.Identity{}, &errClientCert{"the client certificate does not verify: " + err.Error()}
	}
	g.peers.put(leaf, id)
	return id, nil
}

// peerCache maps verified leaf certificates (by pointer: a connection's requests share one)
// to their identities. Bounded; cleared when full.
type peerCache struct {
	mu sync.RWMutex
	m  map[*x509.Certificate]pki.Identity
}

const peerCacheSize = 4096

func (c *peerCache) get(leaf *x509.Certificate, now time.Time) (pki.Identity, bool) {
	c.mu.RLock()
	id, ok := c.m[leaf]
	c.mu.RUnlock()
	if ok && (now.After(leaf.NotAfter) || now.Before(leaf.NotBefore)) {
		return pki.Identity{}, false
	}
	return id, ok
}

func (c *peerCache) put(leaf *x509.Certificate, id pki.Identity) {
	c.mu.Lock()
	if c.m == nil || len(c.m) >= peerCacheSize {
		c.m = make(map[*x509.Certificate]pki.Identity)
	}
	c.m[leaf] = id
	c.mu.Unlock()
}

// isClientIdentityHeader reports whether a header is one only an endpoint may set or one
// that claims a forwarding hop: X-Phantom-*, X-Forwarded-*, Forwarded.
func isClientIdentityHeader(canonical string) bool {
	return hasPrefixFold(canonical, "X-Phantom-") || hasPrefixFold(canonical, "X-Forwarded-") || strings.EqualFold(canonical, "Forwarded")
}

func hasPrefixFold(s, prefix string) bool {
	return len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix)
}

// addrStrings keeps the spelling of the caller addresses seen lately, so that a handed
// over call names its caller without formatting (and allocating) the same address again:
// a direct-mapped table, an address per slot, the newest one winning a slot.
type addrStrings struct {
	slots [256]atomic.Pointer[addrString]
}

type addrString struct {
	a netip.Addr
	s string
}

// string is a without an IPv4-mapped prefix or a zone, as a string: a.Unmap().WithZone("").String().
func (c *addrStrings) string(a netip.Addr) string {
	a = a.Unmap().WithZone("")
	b := a.As16()
	h := (binary.LittleEndian.Uint64(b[:8]) ^ binary.LittleEndian.Uint64(b[8:])) * 0x9e3779b97f4a7c15 // Fibonacci hashing
	slot := &c.slots[h>>(64-8)]
	if e := slot.Load(); e != nil && e.a == a {
		return e.s
	}
	e := &addrString{a, a.String()}
	slot.Store(e)
	return e.s
}
