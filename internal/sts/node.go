package sts

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/phantom-perimeter/phantom/internal/arn"
	"github.com/phantom-perimeter/phantom/internal/config"
	"github.com/phantom-perimeter/phantom/internal/nodeapi"
	"github.com/phantom-perimeter/phantom/internal/pki"
	"github.com/phantom-perimeter/phantom/internal/policy"
	"github.com/phantom-perimeter/phantom/internal/store"
)

// The node API: how the workload agent on an enrolled host obtains its certificate and
// its role's credentials. It is served under nodeapi.PathPrefix on the STS listener, next
// to the query API, and speaks JSON; its calls and bodies are internal/nodeapi's, the
// contract the agent imports too. The watch call is node_watch.go.
//
// The STS listener requests but does not require client certificates (SDK callers of the
// query API have none), so every node call verifies the presented chain itself against the
// perimeter CA: a certificate from another CA, of another kind, or naming a node the
// current spec does not list is refused, audited like every other call.
// Node API limits.
const (
	// DefaultNodeMaxBodyBytes bounds a node API body: a P-256 CSR in PEM is ~500 bytes.
	DefaultNodeMaxBodyBytes = 16 << 10
	// MinNodeSession is the shortest node session: short enough for tests to watch an
	// agent refresh across an expiry, long enough to be usable.
	MinNodeSession = 15 * time.Second
	// DefaultNodeSession is a node session's length when the agent asks for none; the
	// role's maxSessionDuration caps it.
	DefaultNodeSession = time.Hour
	// ec2Service is the service principal of instance roles: a trust policy written for
	// EC2 ({"Service": "ec2.amazonaws.com"}) admits nodes as it admits instances.
	ec2Service = "ec2.amazonaws.com"
)

// NodeConfig enables the node API. Every field but Registry and CertValidity is required.
type NodeConfig struct {
	// CA signs enrollment and renewal requests (*pki.CA).
	CA NodeCA
	// Tokens redeems join tokens, each once.
	Tokens *pki.Tokens
	// Verifier verifies node client certificates against the perimeter CA.
	Verifier *pki.Verifier
	// Issuer mints node-bound sessions (*sts.Identity).
	Issuer NodeIssuer
	// ProxyPassword returns a node's egress proxy password for its role session issued
	// at issued, expiring at expires (egress.ProxyPassword with the node's address); it
	// is handed to the node with its credentials and shares the session's fate: refused
	// once it expires or the role's sessions are revoked.
	ProxyPassword func(node *config.Node, issued, expires time.Time) string
	// Registry records enrolled nodes and the serial of each one's current certificate
	// (the store). When set, a node's older certificates stop working once it renews, and
	// a node removed from the registry is refused. nil: any unexpired certificate of a
	// node in the spec is accepted.
	Registry NodeRegistry
	// CertValidity is the lifetime of renewed certificates; zero means the CA's default.
	CertValidity time.Duration
	// Sessions tells removed nodes and revoked sessions (*sts.Identity); nil leaves the
	// watch call unserved and removed nodes to the Registry alone.
	Sessions NodeSessions
	// WatchHeartbeat is how often a watch stream says it is alive; zero means
	// DefaultWatchHeartbeat. WatchMaxDuration is how long one stream lasts before the
	// agent is told to reconnect; zero means DefaultWatchMaxDuration.
	WatchHeartbeat   time.Duration
	WatchMaxDuration time.Duration
}

// NodeCA is the perimeter CA as the node API uses it.
type NodeCA interface {
	Enroll(ctx context.Context, tokens *pki.Tokens, token string, csr *x509.CertificateRequest) (*x509.Certificate, pki.JoinToken, error)
	SignCSR(csr *x509.CertificateRequest, req pki.Request) (*x509.Certificate, error)
	BundlePEM() []byte
}

var _ NodeCA = (*pki.CA)(nil)

// NodeRegistry keeps enrolled nodes. GetNode returns store.ErrNotFound (wrapped or not)
// for an unknown node. TouchNode records a node's call (its last contact).
type NodeRegistry interface {
	PutNode(ctx context.Context, n store.Node) error
	GetNode(ctx context.Context, name string) (store.Node, error)
	TouchNode(ctx context.Context, name string, at time.Time, sourceIP string) error
}

// NodeSession is a node session to mint: a role session bound to the node's network,
// whose claims carry aws:EC2InstanceSourceVPC, aws:EC2InstanceSourcePrivateIPv4 and the
// endpoint it is expected to come through.
type NodeSession struct {
	SessionSpec
	Node      string
	PrivateIP netip.Addr
	Endpoint  string
}

// NodeIssuer mints node sessions.
type NodeIssuer interface {
	IssueNode(ctx context.Context, s NodeSession) (SessionCredentials, error)
}

// nodeDirectory is what the node API looks up in the spec; *config.Spec satisfies it, and
// the handler's Directory must too for the node API to answer.
type nodeDirectory interface {
	Node(name string) (*config.Node, bool)
	Role(name string) (*config.Role, bool)
}

var _ nodeDirectory = (*config.Spec)(nil)

func (nc *NodeConfig) validate() error {
	if nc.CA == nil || nc.Tokens == nil || nc.Verifier == nil || nc.Issuer == nil || nc.ProxyPassword == nil {
		return errors.New("node API: CA, Tokens, Verifier, Issuer and ProxyPassword are all required")
	}
	if nc.CertValidity < 0 || nc.CertValidity > pki.MaxValidity {
		return fmt.Errorf("node API: certificate validity %s is outside 0 to %s", nc.CertValidity, pki.MaxValidity)
	}
	if nc.WatchHeartbeat < 0 || nc.WatchMaxDuration < 0 {
		return errors.New("node API: watch heartbeat and maximum duration must not be negative")
	}
	return nil
}

// only reports whether the request sets no member but those named: each call uses its own
// members and refuses the others.
func only(r *nodeapi.Request, members ...string) bool {
	set := map[string]bool{"token": r.Token != "", "csr": r.CSR != "", "durationSeconds": r.DurationSeconds != nil,
		"accessKeyId": r.AccessKeyID != "", "sessionToken": r.SessionToken != ""}
	for _, m := range members {
		delete(set, m)
	}
	for _, v := range set {
		if v {
			return false
		}
	}
	return true
}

// parseNodeRequest decodes a node API body: one JSON object of known members and nothing
// after it. An empty body is an empty request.
func parseNodeRequest(body []byte) (*nodeapi.Request, error) {
	req := &nodeapi.Request{}
	if len(strings.TrimSpace(string(body))) == 0 {
		return req, nil
	}
	if err := decodeObject(body, req, "token, csr, durationSeconds, accessKeyId and sessionToken"); err != nil {
		return nil, err
	}
	return req, nil
}

// readPostBody reads the body of a node or component API call (api names it in the
// errors): POST only, at most DefaultNodeMaxBodyBytes.
func readPostBody(r *http.Request, api string) ([]byte, *apiError) {
	if r.Method != http.MethodPost {
		return nil, &apiError{Code: "InvalidAction", Message: "The " + api + " API accepts POST only.", Status: http.StatusMethodNotAllowed}
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, DefaultNodeMaxBodyBytes+1))
	if err != nil {
		return nil, &apiError{Code: "SerializationException", Message: "The request body could not be read.", Status: http.StatusBadRequest}
	}
	if len(body) > DefaultNodeMaxBodyBytes {
		return nil, &apiError{Code: "RequestEntityTooLarge", Message: "The request body exceeds " + strconv.Itoa(DefaultNodeMaxBodyBytes) + " bytes.", Status: http.StatusRequestEntityTooLarge}
	}
	return body, nil
}

// decodeObject reads body as exactly one JSON object of v's members (listed in
// members for the error) and nothing after it; its errors never echo the body.
func decodeObject(body []byte, v any, members string) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("the body is not a JSON object of %s: %v", members, sanitizeJSONError(err))
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("the body has data after its JSON object")
	}
	return nil
}

// sanitizeJSONError keeps encoding/json's description of where the body went wrong but
// never echoes the body itself (it may carry a join token).
func sanitizeJSONError(err error) string {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		return "syntax error at offset " + strconv.FormatInt(se.Offset, 10)
	case errors.As(err, &te):
		return "member " + te.Field + " has the wrong type"
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return truncate(err.Error(), 96)
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "unexpected end of input"
	}
	return "malformed JSON"
}

// parseCSR decodes exactly one PEM "CERTIFICATE REQUEST" block (nothing but whitespace
// around it) and checks the request's self-signature. Only its key is used: the names a
// certificate carries come from what was authenticated (the join token or the presented
// certificate), never from the request.
func parseCSR(text string) (*x509.CertificateRequest, error) {
	if text == "" {
		return nil, errors.New("csr is required")
	}
	block, rest := pem.Decode([]byte(text))
	if block == nil || block.Type != "CERTIFICATE REQUEST" {
		return nil, errors.New("csr is not a PEM CERTIFICATE REQUEST")
	}
	if len(strings.TrimSpace(string(rest))) != 0 {
		return nil, errors.New("csr has data after its PEM block")
	}
	if len(block.Headers) != 0 {
		return nil, errors.New("csr PEM block has headers")
	}
	csr, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("csr does not parse: %v", err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("csr signature: %v", err)
	}
	return csr, nil
}

// parseNodeCSR is parseCSR for a node key: ECDSA P-256 or Ed25519, what the CA signs.
// Checked before a join token is redeemed, so a bad request never spends the token.
func parseNodeCSR(text string) (*x509.CertificateRequest, error) {
	csr, err := parseCSR(text)
	if err != nil {
		return nil, err
	}
	switch k := csr.PublicKey.(type) {
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() {
			return nil, errors.New("csr key is ECDSA on " + k.Curve.Params().Name + "; a node key is P-256 or Ed25519")
		}
	case ed25519.PublicKey:
	default:
		return nil, fmt.Errorf("csr key is %T; a node key is P-256 or Ed25519", csr.PublicKey)
	}
	return csr, nil
}

// serveNode answers one node API call, recording it like every STS call.
func (h *Handler) serveNode(w http.ResponseWriter, r *http.Request) {
	c := &call{id: h.newID(), now: h.now(), r: r}
	if h.cfg.Metrics != nil {
		c.start = time.Now()
	}
	c.ev = h.newEvent(c)
	call := h.nodeCall
	if isComponentPath(r) {
		call = h.componentCall
	}
	resp, aerr := call(r.Context(), c)
	if aerr != nil {
		c.ev.ErrorCode, c.ev.ErrorMessage = aerr.Code, aerr.Message
		c.ev.ResponseElements = nil
	}
	// The node API's credentials call is audited as AssumeRole; the metrics tell it apart.
	action := c.ev.EventName
	if action == "AssumeRole" {
		action = "NodeCredentials"
	}
	if err := h.audit.Record(r.Context(), c.ev); err != nil {
		h.log.Error("sts audit record failed; failing the call closed", "request_id", c.id, "event_name", c.ev.EventName, "error", err)
		h.observe(c, action, auditFailed)
		writeJSONError(w, c.id, internalFailure())
		return
	}
	h.observe(c, action, aerr)
	if aerr != nil {
		writeJSONError(w, c.id, aerr)
		return
	}
	if ws, ok := resp.(*watchStream); ok {
		h.streamWatch(w, c, ws)
		return
	}
	b, err := json.Marshal(resp)
	if err != nil {
		writeJSONError(w, c.id, internalFailure())
		return
	}
	hd := w.Header()
	hd.Set("Content-Type", "application/json")
	hd.Set("Cache-Control", "no-store")
	hd.Set("x-amzn-RequestId", c.id)
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(b)
}

func writeJSONError(w http.ResponseWriter, id string, e *apiError) {
	b, _ := json.Marshal(nodeapi.Error{Type: e.Code, Message: e.Message})
	hd := w.Header()
	hd.Set("Content-Type", "application/json")
	hd.Set("Cache-Control", "no-store")
	hd.Set("x-amzn-RequestId", id)
	hd.Set("x-amzn-ErrorType", e.Code)
	w.WriteHeader(e.Status)
	_, _ = w.Write(b)
}

func (h *Handler) nodeCall(ctx context.Context, c *call) (any, *apiError) {
	r := c.r
	var do func(context.Context, *call, *NodeConfig, *nodeapi.Request) (any, *apiError)
	switch strings.TrimPrefix(r.URL.Path, nodeapi.PathPrefix) {
	case "enroll":
		c.ev.EventName, do = "EnrollNode", h.enrollNode
	case "renew":
		c.ev.EventName, do = "RenewNodeCertificate", h.renewNode
	case "credentials":
		c.ev.EventName, do = "AssumeRole", h.nodeCredentials
	case "watch":
		c.ev.EventName, do = "WatchNodeSession", h.watchNode
	default:
		return nil, &apiError{Code: "UnknownOperationException", Message: "No node operation at this path.", Status: http.StatusNotFound}
	}
	nc := h.cfg.Nodes
	if nc == nil {
		return nil, &apiError{Code: "UnknownOperationException", Message: "This STS does not serve the node API.", Status: http.StatusNotFound}
	}
	body, aerr := readPostBody(r, "node")
	if aerr != nil {
		return nil, aerr
	}
	req, err := parseNodeRequest(body)
	if err != nil {
		return nil, &apiError{Code: "SerializationException", Message: err.Error(), Status: http.StatusBadRequest}
	}
	if d := h.cfg.Directory(); d != nil {
		c.dir = d
	}
	if c.dir == nil {
		return nil, internalFailure()
	}
	return do(ctx, c, nc, req)
}

// nodePeer authenticates the node a call comes from by its client certificate: verified
// against the perimeter CA here (the listener only requests one), of kind node, naming a
// node of the current spec and, with a registry, its current certificate.
func (h *Handler) nodePeer(ctx context.Context, c *call, nc *NodeConfig) (*config.Node, *x509.Certificate, *apiError) {
	cs := c.r.TLS
	if cs == nil || len(cs.PeerCertificates) == 0 {
		return nil, nil, &apiError{Code: "InvalidClientCertificate", Message: "A node certificate from the perimeter CA is required.", Status: http.StatusForbidden}
	}
	leaf := cs.PeerCertificates[0]
	c.ev.UserIdentity.PrincipalID = truncate(leaf.Subject.CommonName, 128)
	id, err := nc.Verifier.Verify(cs.PeerCertificates, x509.ExtKeyUsageClientAuth)
	if err != nil {
		h.log.Warn("sts node: client certificate refused", "request_id", c.id, "source_ip", c.ev.SourceIPAddress, "error", err)
		return nil, nil, &apiError{Code: "InvalidClientCertificate", Message: "The client certificate is not a valid certificate of this perimeter's CA.", Status: http.StatusForbidden}
	}
	ui := &c.ev.UserIdentity
	ui.Type, ui.PrincipalID, ui.ARN, ui.AccountID = "PhantomNode", id.Name, id.String(), id.Account
	if id.Kind != pki.KindNode {
		return nil, nil, &apiError{Code: "InvalidClientCertificate", Message: "The client certificate names a " + string(id.Kind) + ", not a node.", Status: http.StatusForbidden}
	}
	nd, ok := c.dir.(nodeDirectory)
	if !ok {
		return nil, nil, internalFailure()
	}
	node, ok := nd.Node(id.Name)
	if !ok {
		return nil, nil, accessDenied("Node " + id.Name + " is not in the perimeter spec.")
	}
	revoked := &apiError{Code: "InvalidClientCertificate", Message: "Node " + id.Name + " has been revoked; it may enroll again only with a new join token.", Status: http.StatusForbidden}
	if nc.Registry == nil {
		if nc.Sessions != nil && nc.Sessions.NodeRevoked(id.Name) {
			return nil, nil, revoked
		}
		return node, leaf, nil
	}
	rec, err := nc.Registry.GetNode(ctx, id.Name)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return nil, nil, accessDenied("Node " + id.Name + " is not enrolled.")
	case err != nil:
		if ctx.Err() != nil { // the caller left or the server is stopping: not a store failure
			h.log.Info("sts node: registry lookup abandoned", "request_id", c.id, "node", id.Name, "error", err)
		} else {
			h.log.Error("sts node: registry lookup failed", "request_id", c.id, "node", id.Name, "error", err)
		}
		return nil, nil, internalFailure()
	case !strings.EqualFold(rec.CertSerial, leaf.SerialNumber.Text(16)):
		return nil, nil, &apiError{Code: "InvalidClientCertificate", Message: "The client certificate of node " + id.Name + " has been superseded by a newer one.", Status: http.StatusForbidden}
	}
	// Removed, and not enrolled again since (the registry is read now; the revocation is
	// the identity service's, which follows the store within a poll).
	if nc.Sessions != nil {
		if before, ok := nc.Sessions.NodeRevocation(id.Name); ok && !rec.EnrolledAt.After(before) {
			return nil, nil, revoked
		}
	}
	c.enrolled = rec.EnrolledAt
	h.touch(ctx, nc, id.Name, c)
	return node, leaf, nil
}

// touch records the node's contact (the console's "last contact"); a failure is logged,
// never fatal: nothing is decided on it.
func (h *Handler) touch(ctx context.Context, nc *NodeConfig, node string, c *call) {
	if err := nc.Registry.TouchNode(ctx, node, h.now(), c.ev.SourceIPAddress); err != nil {
		h.log.Warn("sts node: record contact failed", "request_id", c.id, "node", node, "error", err)
	}
}

func (h *Handler) enrollNode(ctx context.Context, c *call, nc *NodeConfig, req *nodeapi.Request) (any, *apiError) {
	c.ev.UserIdentity.Type = "Unknown"
	if id := joinTokenID(req.Token); id != "" {
		c.ev.RequestParameters = map[string]any{"joinTokenId": id}
	}
	if !only(req, "token", "csr") {
		return nil, validationError("An enrollment request has only a token and a csr.")
	}
	if req.Token == "" {
		return nil, validationError("token is required.")
	}
	csr, err := parseNodeCSR(req.CSR)
	if err != nil {
		return nil, validationError(err.Error())
	}
	cert, rec, err := nc.CA.Enroll(ctx, nc.Tokens, req.Token, csr)
	switch {
	case errors.Is(err, pki.ErrTokenInvalid):
		return nil, &apiError{Code: "InvalidClientTokenId", Message: "The join token is invalid or has already been used.", Status: http.StatusForbidden}
	case errors.Is(err, pki.ErrTokenExpired):
		return nil, &apiError{Code: "ExpiredToken", Message: "The join token has expired.", Status: http.StatusForbidden}
	case err != nil:
		h.log.Error("sts node: enrollment failed", "request_id", c.id, "node", rec.Node, "error", err)
		return nil, internalFailure()
	}
	ui := &c.ev.UserIdentity
	ui.Type, ui.PrincipalID, ui.AccountID = "PhantomNode", rec.Node, h.cfg.Account
	if id, err := pki.IdentityFromCert(cert); err == nil {
		ui.ARN = id.String()
	}
	nd, ok := c.dir.(nodeDirectory)
	if !ok {
		return nil, internalFailure()
	}
	node, ok := nd.Node(rec.Node)
	if !ok {
		// The token is spent and the certificate discarded: a node removed from the spec
		// since its token was made does not join.
		return nil, accessDenied("Node " + rec.Node + " is not in the perimeter spec.")
	}
	if nc.Registry != nil {
		if err := nc.Registry.PutNode(ctx, store.Node{Name: node.Name, Role: node.Role, CertSerial: cert.SerialNumber.Text(16), EnrolledAt: c.now.UTC(), CertNotAfter: cert.NotAfter}); err != nil {
			h.log.Error("sts node: record enrolled node failed", "request_id", c.id, "node", node.Name, "error", err)
			return nil, internalFailure()
		}
	}
	return h.certificateResponse(c, nc, node.Name, cert), nil
}

func (h *Handler) renewNode(ctx context.Context, c *call, nc *NodeConfig, req *nodeapi.Request) (any, *apiError) {
	node, _, aerr := h.nodePeer(ctx, c, nc)
	if aerr != nil {
		return nil, aerr
	}
	if !only(req, "csr") {
		return nil, validationError("A renewal request has only a csr.")
	}
	csr, err := parseNodeCSR(req.CSR)
	if err != nil {
		return nil, validationError(err.Error())
	}
	// The identity is the authenticated one; only the key comes from the request.
	cert, err := nc.CA.SignCSR(csr, pki.Request{Identity: pki.Identity{Account: h.cfg.Account, Kind: pki.KindNode, Name: node.Name}, Client: true, Validity: nc.CertValidity})
	if err != nil {
		h.log.Error("sts node: renewal failed", "request_id", c.id, "node", node.Name, "error", err)
		return nil, internalFailure()
	}
	if nc.Registry != nil {
		rec, err := nc.Registry.GetNode(ctx, node.Name)
		if err == nil {
			rec.CertSerial, rec.Role, rec.CertNotAfter = cert.SerialNumber.Text(16), node.Role, cert.NotAfter
			err = nc.Registry.PutNode(ctx, rec)
		}
		if err != nil {
			h.log.Error("sts node: record renewed certificate failed", "request_id", c.id, "node", node.Name, "error", err)
			return nil, internalFailure()
		}
	}
	return h.certificateResponse(c, nc, node.Name, cert), nil
}

func (h *Handler) certificateResponse(c *call, nc *NodeConfig, node string, cert *x509.Certificate) *nodeapi.Certificate {
	c.ev.ResponseElements = map[string]any{
		"node":              node,
		"certificateSerial": cert.SerialNumber.Text(16),
		"notAfter":          isoTime(cert.NotAfter),
	}
	return &nodeapi.Certificate{
		Certificate: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw})),
		CA:          string(nc.CA.BundlePEM()),
		Node:        node,
		Expiration:  isoTime(cert.NotAfter),
	}
}

func (h *Handler) nodeCredentials(ctx context.Context, c *call, nc *NodeConfig, req *nodeapi.Request) (any, *apiError) {
	node, _, aerr := h.nodePeer(ctx, c, nc)
	if aerr != nil {
		return nil, aerr
	}
	c.ev.UserIdentity.SessionContext = &SessionContext{Attributes: map[string]string{"mfaAuthenticated": "false"}, EC2RoleDelivery: "2.0"}
	if !only(req, "durationSeconds") {
		return nil, validationError("A credentials request has only durationSeconds.")
	}
	nd := c.dir.(nodeDirectory) // nodePeer checked
	role, ok := nd.Role(node.Role)
	params := map[string]any{"roleSessionName": node.Name}
	c.ev.RequestParameters = params
	if ok {
		params["roleArn"] = role.ARN
	}
	maxDur := DefaultNodeSession
	if ok && role.MaxSessionDuration > 0 {
		maxDur = role.MaxSessionDuration
	}
	dur := min(DefaultNodeSession, maxDur)
	if req.DurationSeconds != nil {
		s := *req.DurationSeconds
		if s < int64(MinNodeSession/time.Second) || s > maxAssumeDuration {
			return nil, validationError("durationSeconds must be between " + strconv.Itoa(int(MinNodeSession/time.Second)) + " and " + strconv.Itoa(maxAssumeDuration) + ".")
		}
		// Capped, not refused: the agent asks for what it would like, the role decides.
		dur = min(time.Duration(s)*time.Second, maxDur)
	}
	params["durationSeconds"] = int(dur / time.Second)
	if !ok || !h.nodeTrusted(c, role, node) {
		return nil, accessDenied("Node " + node.Name + " is not authorized to perform: sts:AssumeRole on resource: arn:aws:iam::" + h.cfg.Account + ":role/" + node.Role)
	}
	sessionARN := arn.AssumedRole(arn.Account(role.ARN), role.Name, node.Name)
	s := NodeSession{
		SessionSpec: SessionSpec{
			Principal:   sessionARN,
			Role:        role.ARN,
			SessionName: node.Name,
			IssuedAt:    c.now,
			Expires:     c.now.Add(dur),
			VPC:         node.VPC,
		},
		Node:      node.Name,
		PrivateIP: node.PrivateIP,
		Endpoint:  node.Endpoint,
	}
	creds, err := nc.Issuer.IssueNode(ctx, s)
	if err != nil {
		h.log.Error("sts issue node session failed", "request_id", c.id, "node", node.Name, "role_arn", role.ARN, "error", err)
		return nil, internalFailure()
	}
	c.ev.ResponseElements = map[string]any{
		"credentials":     map[string]any{"accessKeyId": creds.AccessKeyID, "expiration": isoTime(creds.Expiration)},
		"assumedRoleUser": map[string]any{"assumedRoleId": arn.RoleID(role.ARN) + ":" + node.Name, "arn": sessionARN},
		"node":            node.Name,
	}
	resp := &nodeapi.Credentials{
		AccessKeyID:     creds.AccessKeyID,
		SecretAccessKey: creds.SecretAccessKey,
		Token:           creds.SessionToken,
		Expiration:      creds.Expiration.UTC().Format(time.RFC3339),
		RoleArn:         role.ARN,
		AccountID:       arn.Account(role.ARN),
		ProxyPassword:   nc.ProxyPassword(node, issuedAt(creds, c.now), creds.Expiration),
		Node:            node.Name,
		Region:          h.cfg.Region,
		VPC:             node.VPC,
		Endpoint:        node.Endpoint,
	}
	if node.PrivateIP.IsValid() {
		resp.PrivateIP = node.PrivateIP.String()
	}
	return resp, nil
}

// issuedAt is when a session was issued: what its issuer says, else the call's time
// (which precedes it).
func issuedAt(c SessionCredentials, call time.Time) time.Time {
	if c.IssuedAt.IsZero() {
		return call
	}
	return c.IssuedAt
}

// nodeTrusted decides whether the role's trust policy admits the node. The spec assigning
// the role to the node is the identity side (as an instance profile is); the trust policy
// is evaluated with the account as principal (arn:aws:iam::ACCOUNT:root, so a statement
// naming the account matches) acting as the EC2 service (aws:PrincipalServiceName
// ec2.amazonaws.com, so a statement naming {"Service": "ec2.amazonaws.com"} matches), with
// the node's network in the context: aws:EC2InstanceSourceVPC,
// aws:EC2InstanceSourcePrivateIPv4, and sts:RoleSessionName = the node name, so a trust
// policy can admit exactly the nodes of one VPC, or one node.
func (h *Handler) nodeTrusted(c *call, role *config.Role, node *config.Node) bool {
	if role.TrustPolicy == nil || role.TrustPolicy.Compiled == nil {
		return false
	}
	ctx := policy.NewContext(nil)
	root := "arn:aws:iam::" + h.cfg.Account + ":root"
	ctx.Set("aws:PrincipalArn", root)
	ctx.Set("aws:PrincipalAccount", h.cfg.Account)
	ctx.Set("aws:PrincipalType", "AWSService")
	ctx.Set("aws:PrincipalServiceName", ec2Service)
	if node.VPC != "" {
		ctx.Set("aws:EC2InstanceSourceVPC", node.VPC)
	}
	if node.PrivateIP.IsValid() {
		ctx.Set("aws:EC2InstanceSourcePrivateIPv4", node.PrivateIP.String())
	}
	ctx.Set("sts:RoleSessionName", node.Name)
	ctx.Set("aws:SourceIp", c.ev.SourceIPAddress)
	ctx.Set("aws:CurrentTime", isoTime(c.now))
	ctx.Set("aws:EpochTime", strconv.FormatInt(c.now.Unix(), 10))
	ctx.Set("aws:SecureTransport", boolString(c.r.TLS != nil))
	ctx.Set("aws:RequestedRegion", h.cfg.Region)
	ctx.Set("aws:UserAgent", c.r.UserAgent())
	ctx.Set("aws:ViaAWSService", "false")
	set := policy.NewSet(policy.Entry{Kind: policy.Resource, Policy: role.TrustPolicy.Compiled})
	req := policy.Request{Principal: root, PrincipalAccount: h.cfg.Account, Action: "sts:AssumeRole", Resource: role.ARN, ResourceAccount: arn.Account(role.ARN), Context: ctx}
	// The trust policy alone decides (Admits): the spec's assignment is the identity
	// side, so a statement naming the account admits the node.
	return set.Admits(&req).Effect == policy.Allow
}

// joinTokenID returns the public half of a join token (phjt_<id>) for the audit record,
// or "" when the value does not look like one. The secret half is never recorded.
func joinTokenID(tok string) string {
	id, _, ok := strings.Cut(tok, ".")
	if !ok || !strings.HasPrefix(id, "phjt_") || len(id) > 64 {
		return ""
	}
	for i := len("phjt_"); i < len(id); i++ {
		if ch := id[i]; !(ch >= '0' && ch <= '9' || ch >= 'a' && ch <= 'f') {
			return ""
		}
	}
	return id
}

// isNodePath reports whether a request is for the node API.
func isNodePath(r *http.Request) bool { return strings.HasPrefix(r.URL.Path, nodeapi.PathPrefix) }
