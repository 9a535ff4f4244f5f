package sts

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/phantom-perimeter/phantom/internal/pki"
)

// The component API: how a gateway, endpoint, egress proxy, detector or console whose
// host holds no CA key gets its certificate. It is served under ComponentPathPrefix on
// the STS listener, next to the node API, and speaks the same JSON.
//
//	POST /phantom/component/enroll  {"token","csr"}        no client certificate
//	POST /phantom/component/renew   {"csr"}                component certificate (mTLS)
//	POST /phantom/component/audit   {"publicKey","chain"}  component certificate (mTLS)
//
// Enrollment redeems a join token the operator made (phantom ca join-token): the token
// grants one identity, its names and its audit chains (pki.Grant), and only the key comes
// from the request. A renewal gives the presented (verified, unrevoked) certificate's
// grant again for a new key. An audit writer's key is certified for a chain the
// presented certificate's grant names, and no other.
const ComponentPathPrefix = "/phantom/component/"

// ComponentConfig enables the component API.
type ComponentConfig struct {
	// CA issues (*pki.Authority).
	CA ComponentCA
	// Tokens redeems join tokens, each once.
	Tokens *pki.Tokens
	// Verifier verifies component certificates against the current trust (revocations
	// included).
	Verifier *pki.Verifier
	// CertValidity is a component certificate's lifetime; zero means the CA's default.
	CertValidity time.Duration
	// AuditValidity is an audit writer certificate's; zero means the CA's default.
	AuditValidity time.Duration
}

// ComponentCA is the CA as the component API uses it.
type ComponentCA interface {
	EnrollComponent(ctx context.Context, tokens *pki.Tokens, token string, csr *x509.CertificateRequest, validity time.Duration) (*x509.Certificate, pki.Grant, error)
	CA() (*pki.CA, error)
	BundlePEM() []byte
}

var _ ComponentCA = (*pki.Authority)(nil)

func (cc *ComponentConfig) validate() error {
	if cc.CA == nil || cc.Tokens == nil || cc.Verifier == nil {
		return errors.New("component API: CA, Tokens and Verifier are all required")
	}
	return nil
}

// componentRequest is the body of every component API call; each call uses its members
// and refuses the others.
type componentRequest struct {
	Token     string `json:"token"`
	CSR       string `json:"csr"`
	PublicKey string `json:"publicKey"`
	Chain     string `json:"chain"`
}

func parseComponentRequest(body []byte) (*componentRequest, error) {
	req := &componentRequest{}
	if err := decodeObject(body, req, "token, csr, publicKey and chain"); err != nil {
		return nil, err
	}
	return req, nil
}

// componentCertificateResponse is what every component API call returns.
type componentCertificateResponse struct {
	Certificate string `json:"certificate"` // PEM: the certificate, then its issuing CA
	CA          string `json:"ca"`          // the bundle to trust
	Identity    string `json:"identity"`
	Expiration  string `json:"expiration"`
}

func (h *Handler) componentCall(ctx context.Context, c *call) (any, *apiError) {
	r := c.r
	var do func(context.Context, *call, *ComponentConfig, *componentRequest) (any, *apiError)
	switch strings.TrimPrefix(r.URL.Path, ComponentPathPrefix) {
	case "enroll":
		c.ev.EventName, do = "EnrollComponent", h.enrollComponent
	case "renew":
		c.ev.EventName, do = "RenewComponentCertificate", h.renewComponent
	case "audit":
		c.ev.EventName, do = "CertifyAuditWriter", h.certifyAuditWriter
	default:
		return nil, &apiError{Code: "UnknownOperationException", Message: "No component operation at this path.", Status: http.StatusNotFound}
	}
	cc := h.cfg.Components
	if cc == nil {
		return nil, &apiError{Code: "UnknownOperationException", Message: "This STS does not serve the component API.", Status: http.StatusNotFound}
	}
	body, aerr := readPostBody(r, "component")
	if aerr != nil {
		return nil, aerr
	}
	req, err := parseComponentRequest(body)
	if err != nil {
		return nil, &apiError{Code: "SerializationException", Message: err.Error(), Status: http.StatusBadRequest}
	}
	return do(ctx, c, cc, req)
}

// parseComponentCSR is parseCSR for a component key: ECDSA P-256, what its TLS
// certificate carries.
func parseComponentCSR(text string) (*x509.CertificateRequest, error) {
	csr, err := parseCSR(text)
	if err != nil {
		return nil, err
	}
	if k, ok := csr.PublicKey.(*ecdsa.PublicKey); !ok || k.Curve != elliptic.P256() {
		return nil, fmt.Errorf("csr key is %T; a component key is ECDSA P-256", csr.PublicKey)
	}
	return csr, nil
}

func (h *Handler) enrollComponent(ctx context.Context, c *call, cc *ComponentConfig, req *componentRequest) (any, *apiError) {
	c.ev.UserIdentity.Type = "Unknown"
	if id := joinTokenID(req.Token); id != "" {
		c.ev.RequestParameters = map[string]any{"joinTokenId": id}
	}
	if req.PublicKey != "" || req.Chain != "" {
		return nil, validationError("An enrollment request has only a token and a csr.")
	}
	if req.Token == "" {
		return nil, validationError("token is required.")
	}
	csr, err := parseComponentCSR(req.CSR)
	if err != nil {
		return nil, validationError(err.Error())
	}
	cert, g, err := cc.CA.EnrollComponent(ctx, cc.Tokens, req.Token, csr, cc.CertValidity)
	switch {
	case errors.Is(err, pki.ErrTokenInvalid):
		return nil, &apiError{Code: "InvalidClientTokenId", Message: "The join token is invalid or has already been used.", Status: http.StatusForbidden}
	case errors.Is(err, pki.ErrTokenExpired):
		return nil, &apiError{Code: "ExpiredToken", Message: "The join token has expired.", Status: http.StatusForbidden}
	case err != nil:
		h.log.Error("sts component: enrollment failed", "request_id", c.id, "error", err)
		return nil, internalFailure()
	}
	h.componentIdentity(c, g.Identity)
	return h.componentResponse(c, cc, g.Identity, cert)
}

// componentPeer authenticates the component a call comes from by its certificate,
// verified against the current trust here (the listener only requests one).
func (h *Handler) componentPeer(c *call, cc *ComponentConfig) (*x509.Certificate, pki.Grant, *apiError) {
	cs := c.r.TLS
	if cs == nil || len(cs.PeerCertificates) == 0 {
		return nil, pki.Grant{}, &apiError{Code: "InvalidClientCertificate", Message: "A component certificate from the perimeter CA is required.", Status: http.StatusForbidden}
	}
	leaf := cs.PeerCertificates[0]
	c.ev.UserIdentity.PrincipalID = truncate(leaf.Subject.CommonName, 128)
	id, err := cc.Verifier.Verify(cs.PeerCertificates, x509.ExtKeyUsageClientAuth)
	if err != nil {
		h.log.Warn("sts component: client certificate refused", "request_id", c.id, "source_ip", c.ev.SourceIPAddress, "error", err)
		return nil, pki.Grant{}, &apiError{Code: "InvalidClientCertificate", Message: "The client certificate is not a valid, unrevoked certificate of this perimeter's CA.", Status: http.StatusForbidden}
	}
	h.componentIdentity(c, id)
	if !slices.Contains(pki.ComponentKinds, id.Kind) || id.Account != h.cfg.Account {
		return nil, pki.Grant{}, &apiError{Code: "InvalidClientCertificate", Message: "The client certificate names a " + string(id.Kind) + ", not a component.", Status: http.StatusForbidden}
	}
	g, err := pki.GrantOf(leaf)
	if err != nil {
		return nil, pki.Grant{}, &apiError{Code: "InvalidClientCertificate", Message: "The client certificate carries no valid grant.", Status: http.StatusForbidden}
	}
	return leaf, g, nil
}

func (h *Handler) componentIdentity(c *call, id pki.Identity) {
	ui := &c.ev.UserIdentity
	ui.Type, ui.PrincipalID, ui.ARN, ui.AccountID = "PhantomComponent", string(id.Kind)+"/"+id.Name, id.String(), id.Account
}

func (h *Handler) renewComponent(_ context.Context, c *call, cc *ComponentConfig, req *componentRequest) (any, *apiError) {
	_, g, aerr := h.componentPeer(c, cc)
	if aerr != nil {
		return nil, aerr
	}
	if req.Token != "" || req.PublicKey != "" || req.Chain != "" {
		return nil, validationError("A renewal request has only a csr.")
	}
	csr, err := parseComponentCSR(req.CSR)
	if err != nil {
		return nil, validationError(err.Error())
	}
	ca, err := cc.CA.CA()
	if err == nil {
		// The grant is the presented certificate's, never the request's.
		var cert *x509.Certificate
		if cert, err = ca.Sign(csr.PublicKey, g.Request(cc.CertValidity)); err == nil {
			return h.componentResponse(c, cc, g.Identity, cert)
		}
	}
	h.log.Error("sts component: renewal failed", "request_id", c.id, "identity", g.Identity.String(), "error", err)
	return nil, internalFailure()
}

func (h *Handler) certifyAuditWriter(_ context.Context, c *call, cc *ComponentConfig, req *componentRequest) (any, *apiError) {
	_, g, aerr := h.componentPeer(c, cc)
	if aerr != nil {
		return nil, aerr
	}
	c.ev.RequestParameters = map[string]any{"chain": truncate(req.Chain, 64)}
	if req.Token != "" || req.CSR != "" {
		return nil, validationError("An audit writer request has only a publicKey and a chain.")
	}
	if !slices.Contains(g.AuditChains, req.Chain) {
		return nil, accessDenied("The certificate of " + g.Identity.String() + " grants no audit chain " + strconv.Quote(truncate(req.Chain, 64)) + ".")
	}
	raw, err := base64.StdEncoding.Strict().DecodeString(req.PublicKey)
	if err != nil || len(raw) != ed25519.PublicKeySize {
		return nil, validationError("publicKey is not the standard base64 of a 32-byte Ed25519 public key.")
	}
	ca, err := cc.CA.CA()
	if err == nil {
		id := pki.Identity{Account: h.cfg.Account, Kind: pki.KindAudit, Name: req.Chain}
		var cert *x509.Certificate
		if cert, err = ca.Sign(ed25519.PublicKey(raw), pki.Request{Identity: id, AuditSigning: true, Validity: cc.AuditValidity}); err == nil {
			return h.componentResponse(c, cc, id, cert)
		}
	}
	h.log.Error("sts component: audit writer certification failed", "request_id", c.id, "chain", req.Chain, "error", err)
	return nil, internalFailure()
}

func (h *Handler) componentResponse(c *call, cc *ComponentConfig, id pki.Identity, cert *x509.Certificate) (any, *apiError) {
	c.ev.ResponseElements = map[string]any{
		"identity":          id.String(),
		"certificateSerial": cert.SerialNumber.Text(16),
		"notAfter":          isoTime(cert.NotAfter),
	}
	chain := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw})
	if ca, err := cc.CA.CA(); err == nil {
		for _, der := range ca.Chain() {
			chain = append(chain, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
		}
	}
	return &componentCertificateResponse{
		Certificate: string(chain),
		CA:          string(cc.CA.BundlePEM()),
		Identity:    id.String(),
		Expiration:  isoTime(cert.NotAfter),
	}, nil
}

func isComponentPath(r *http.Request) bool { return strings.HasPrefix(r.URL.Path, ComponentPathPrefix) }
