package admin

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/phantom-perimeter/phantom/internal/atomicfile"
	"github.com/phantom-perimeter/phantom/internal/config"
	"github.com/phantom-perimeter/phantom/internal/nodeapi"
	"github.com/phantom-perimeter/phantom/internal/pki"
	"github.com/phantom-perimeter/phantom/internal/store"
)

// JoinToken is a node join token: the only time its secret is shown.
type JoinToken struct {
	NodeName   string
	Token      string
	Expiration Time
}

// JoinTokenOutput is `phantom node join-token`'s output.
type JoinTokenOutput struct {
	JoinToken JoinToken
}

// writeText prints the token alone, so TOKEN=$(phantom node join-token … --output text)
// works.
func (o *JoinTokenOutput) writeText(w io.Writer) error {
	_, err := fmt.Fprintln(w, o.JoinToken.Token)
	return err
}

// JoinToken creates a single-use join token for a node of the spec, valid for ttl (zero
// means pki.DefaultTokenTTL, at most pki.MaxTokenTTL). The store keeps only the secret's
// hash.
func (a *Admin) JoinToken(ctx context.Context, node string, ttl time.Duration) (*JoinTokenOutput, error) {
	if ttl < 0 || ttl > pki.MaxTokenTTL {
		return nil, validation(ttl.String(), "ttl", fmt.Sprintf("Member must be between 0s and %s", pki.MaxTokenTTL))
	}
	if _, ok := a.spec.Node(node); !ok {
		return nil, noSuchNode(node)
	}
	tok, exp, err := pki.NewTokens(pki.TokensConfig{Now: a.now, Rand: a.rand}, a.store).Create(ctx, node, ttl)
	if err != nil {
		return nil, err
	}
	return &JoinTokenOutput{JoinToken{NodeName: node, Token: tok, Expiration: Time(exp)}}, nil
}

// Enrollment is what the CA side returns for a redeemed join token.
type Enrollment struct {
	Node      store.Node
	Cert      *x509.Certificate
	BundlePEM []byte
}

// NewNodeKey generates a node's P-256 key and the certificate request that carries its
// public key. Only the key is taken from the request: the CA names the node from the join
// token.
func NewNodeKey(r io.Reader) (*ecdsa.PrivateKey, *x509.CertificateRequest, error) {
	if r == nil {
		r = rand.Reader
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), r)
	if err != nil {
		return nil, nil, fmt.Errorf("generate node key: %w", err)
	}
	der, err := x509.CreateCertificateRequest(r, &x509.CertificateRequest{Subject: pkix.Name{Organization: []string{"Phantom"}}}, key)
	if err != nil {
		return nil, nil, fmt.Errorf("create certificate request: %w", err)
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		return nil, nil, fmt.Errorf("parse certificate request: %w", err)
	}
	return key, csr, nil
}

// EnrollNode is the CA side of enrollment: it redeems the token (once), signs the request's
// key into a client certificate naming the token's node, and records the node. A node
// removed from the spec since its token was made is refused (the token is spent; the
// certificate is discarded).
func (a *Admin) EnrollNode(ctx context.Context, token string, csr *x509.CertificateRequest) (*Enrollment, error) {
	ca, err := a.Authority(ctx)
	if err != nil {
		return nil, err
	}
	cert, rec, err := ca.Enroll(ctx, pki.NewTokens(pki.TokensConfig{Now: a.now, Rand: a.rand}, a.store), token, csr)
	switch {
	case errors.Is(err, pki.ErrTokenInvalid):
		return nil, &Error{CodeInvalidClientTokenID, "The join token is invalid or has already been used."}
	case errors.Is(err, pki.ErrTokenExpired):
		return nil, &Error{CodeExpiredToken, "The join token has expired."}
	case err != nil:
		return nil, err
	}
	n, ok := a.spec.Node(rec.Node)
	if !ok {
		return nil, noSuchNode(rec.Node)
	}
	node := store.Node{Name: n.Name, Role: n.Role, CertSerial: cert.SerialNumber.Text(16), EnrolledAt: a.now().UTC(), CertNotAfter: cert.NotAfter}
	if err := a.store.PutNode(ctx, node); err != nil {
		return nil, fmt.Errorf("record node %s: %w", n.Name, err)
	}
	return &Enrollment{Node: node, Cert: cert, BundlePEM: ca.BundlePEM()}, nil
}

// EnrolledNode is `phantom node enroll`'s result.
type EnrolledNode struct {
	NodeName          string
	RoleName          string
	Identity          string // the certificate's URI SAN
	CertificateSerial string
	NotAfter          Time
	CertificateFile   string
	PrivateKeyFile    string
	CABundleFile      string
}

// EnrollOutput is `phantom node enroll`'s output.
type EnrollOutput struct {
	Node EnrolledNode
}

func (o *EnrollOutput) writeText(w io.Writer) error {
	n := o.Node
	return textLine(w, "Node", n.CABundleFile, n.CertificateFile, n.CertificateSerial, n.Identity, n.NodeName, n.NotAfter.String(), n.PrivateKeyFile, n.RoleName)
}

// WriteNodeFiles writes the node's certificate, key (0600) and CA bundle into dir
// (created 0700), each file replaced atomically.
func WriteNodeFiles(dir string, key *ecdsa.PrivateKey, e *Enrollment) (*EnrollOutput, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create %s: %w", dir, err)
	}
	certPath, keyPath, caPath := filepath.Join(dir, nodeapi.CertFile), filepath.Join(dir, nodeapi.KeyFile), filepath.Join(dir, nodeapi.CABundleFile)
	if err := pki.WriteKeyPair(certPath, keyPath, &tls.Certificate{Certificate: [][]byte{e.Cert.Raw}, PrivateKey: key}); err != nil {
		return nil, err
	}
	if err := atomicfile.Write(caPath, e.BundlePEM, 0o644); err != nil {
		return nil, err
	}
	id, err := pki.IdentityFromCert(e.Cert)
	if err != nil {
		return nil, err
	}
	return &EnrollOutput{EnrolledNode{
		NodeName: e.Node.Name, RoleName: e.Node.Role, Identity: id.String(), CertificateSerial: e.Node.CertSerial,
		NotAfter: Time(e.Cert.NotAfter), CertificateFile: certPath, PrivateKeyFile: keyPath, CABundleFile: caPath,
	}}, nil
}

// Enroll enrolls a node in this single-machine form: it makes the node's key and request,
// enrolls it with the data directory's CA, and writes the files into outDir. A later issue
// moves the CA side behind STS, so the node enrolls over the network.
func (a *Admin) Enroll(ctx context.Context, token, outDir string) (*EnrollOutput, error) {
	if outDir == "" {
		return nil, errors.New("enroll: no output directory")
	}
	// Make sure the files can be written before spending the token; a directory made
	// here is removed again if enrollment fails.
	_, statErr := os.Stat(outDir)
	if err := os.MkdirAll(outDir, 0o700); err != nil {
		return nil, fmt.Errorf("create %s: %w", outDir, err)
	}
	key, csr, err := NewNodeKey(a.rand)
	if err == nil {
		var e *Enrollment
		if e, err = a.EnrollNode(ctx, token, csr); err == nil {
			return WriteNodeFiles(outDir, key, e)
		}
	}
	if errors.Is(statErr, fs.ErrNotExist) {
		os.Remove(outDir) // only if still empty
	}
	return nil, err
}

// RevokeNodeOutput is `phantom node revoke`'s output: from RevokedAt, the node's
// certificate and every session issued to it before are refused.
type RevokeNodeOutput struct {
	NodeName          string
	CertificateSerial string `json:",omitempty"`
	RevokedAt         string // full precision, RFC 3339
}

func (o *RevokeNodeOutput) writeText(w io.Writer) error {
	return textLine(w, "RevokeNode", o.CertificateSerial, o.NodeName, o.RevokedAt)
}

// RevokeNode removes a node: its certificate is refused by STS's node API and the egress
// proxy, and every session issued to it before now by the gateway, STS and the egress
// proxy, in every process sharing the store within a poll (2 s). It stays removed until it
// enrolls again with a new join token; sessions issued before now stay refused for good.
// The action is audited (chain "admin").
func (a *Admin) RevokeNode(ctx context.Context, node string) (*RevokeNodeOutput, error) {
	rec, err := a.store.GetNode(ctx, node)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return nil, err
	}
	if _, ok := a.spec.Node(node); !ok && err != nil {
		// Neither in the spec nor enrolled: nothing to remove.
		return nil, noSuchNode(node)
	}
	rev, err := a.ids.RevokeNode(ctx, node)
	if err != nil {
		return nil, err
	}
	out := &RevokeNodeOutput{NodeName: node, CertificateSerial: rec.CertSerial, RevokedAt: rev.Before.UTC().Format(time.RFC3339Nano)}
	params := map[string]any{"nodeName": node}
	if err := a.record(ctx, "RevokeNode", params, map[string]any{"certificateSerial": rec.CertSerial, "sessionsIssuedBefore": out.RevokedAt}); err != nil {
		return out, fmt.Errorf("node %s is revoked, but the audit record failed: %w", node, err)
	}
	return out, nil
}

// Node states ListNodes shows.
const (
	NodeActive      = "Active"      // enrolled, not removed
	NodeRevoked     = "Revoked"     // removed, not enrolled again since
	NodeNotEnrolled = "NotEnrolled" // in the spec, never enrolled
)

// NodeInfo is one node as `phantom node list` and the console show it.
type NodeInfo struct {
	NodeName          string
	RoleName          string
	Status            string
	CertificateSerial string `json:",omitempty"`
	NotAfter          *Time  `json:",omitempty"`
	EnrolledAt        *Time  `json:",omitempty"`
	LastContact       *Time  `json:",omitempty"`
	LastContactIP     string `json:",omitempty"`
	RevokedAt         *Time  `json:",omitempty"`
	InSpec            bool
}

// ListNodesOutput is `phantom node list`'s output.
type ListNodesOutput struct {
	Nodes []NodeInfo
}

func (o *ListNodesOutput) writeText(w io.Writer) error {
	for _, n := range o.Nodes {
		ts := func(t *Time) string {
			if t == nil {
				return "-"
			}
			return t.String()
		}
		if err := textLine(w, "Nodes", n.CertificateSerial, ts(n.EnrolledAt), fmt.Sprint(n.InSpec), ts(n.LastContact), n.LastContactIP, n.NodeName, ts(n.NotAfter), ts(n.RevokedAt), n.RoleName, n.Status); err != nil {
			return err
		}
	}
	return nil
}

// ListNodes lists the spec's nodes and every enrolled one (a node removed from the spec
// but still enrolled is listed, so it can be revoked), with their certificate, last
// contact and status.
func (a *Admin) ListNodes(ctx context.Context) (*ListNodesOutput, error) {
	recs, err := a.store.ListNodes(ctx)
	if err != nil {
		return nil, err
	}
	return &ListNodesOutput{Nodes: NodeList(a.spec, recs, a.ids.NodeRevocation)}, nil
}

// NodeList merges the spec's nodes with the registry's records, by name: what the
// console's nodes page and `phantom node list` show. revocation returns a node's last
// removal time (identity.Service.NodeRevocation).
func NodeList(spec *config.Spec, recs []store.Node, revocation func(string) (time.Time, bool)) []NodeInfo {
	ptr := func(t time.Time) *Time {
		if t.IsZero() {
			return nil
		}
		v := Time(t)
		return &v
	}
	seen := map[string]bool{}
	var out []NodeInfo
	add := func(name, role string, rec *store.Node, inSpec bool) {
		n := NodeInfo{NodeName: name, RoleName: role, Status: NodeNotEnrolled, InSpec: inSpec}
		before, revoked := revocation(name)
		if revoked {
			n.RevokedAt = ptr(before)
		}
		if rec != nil {
			n.CertificateSerial, n.NotAfter, n.EnrolledAt = rec.CertSerial, ptr(rec.CertNotAfter), ptr(rec.EnrolledAt)
			n.LastContact, n.LastContactIP = ptr(rec.LastContact), rec.LastContactIP
			n.Status = NodeActive
			if revoked && !rec.EnrolledAt.After(before) {
				n.Status = NodeRevoked
			}
		} else if revoked {
			n.Status = NodeRevoked
		}
		out = append(out, n)
	}
	byName := map[string]*store.Node{}
	for i := range recs {
		byName[recs[i].Name] = &recs[i]
	}
	for _, sn := range spec.Nodes {
		seen[sn.Name] = true
		add(sn.Name, sn.Role, byName[sn.Name], true)
	}
	for i := range recs {
		if !seen[recs[i].Name] {
			_, inSpec := spec.Node(recs[i].Name)
			add(recs[i].Name, recs[i].Role, &recs[i], inSpec)
		}
	}
	return out
}
