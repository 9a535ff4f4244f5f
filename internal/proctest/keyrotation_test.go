package proctest

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/phantom-perimeter/phantom/internal/keys"
)

// TestStorageKeyRotationUnderLoad: the least-privilege cluster (STS, two gateways, two
// endpoints, each with its key file and store role, no master key) under load through
// both gateways while the operator rotates the storage keys the data path reads (the
// token keys' and the access keys' sealing keys) the way docs/threat-model.md says:
// stage, export the key files again (the components take them without a restart),
// rotate (re-seals every value), and — during the same load — rotates the issuing CA,
// which the endpoints' and gateways' certificates and every audit writer follow within a
// poll; then retires the old generations and exports the files again. No call fails; the
// session from before is used throughout and still accepted; one made after works on
// both gateways; every audit chain verifies against the CA bundle and the anchors; the
// store holds no value under a retired generation, and the key files exported last carry
// none.
func TestStorageKeyRotationUnderLoad(t *testing.T) {
	c, owner := startLeastPrivilege(t, "cluster_keyrot", Config{Gateways: 2, Endpoints: 2, Pin: true, Poll: 500 * time.Millisecond})
	ctx := t.Context()
	user, err := c.CreateUserKey(ctx)
	if err != nil {
		t.Fatal(err)
	}
	old, err := c.AssumeRole(ctx, user, "before-key-rotation")
	if err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		waitFor(t, 5*time.Second, "the session to work", func() bool { return c.Call(ctx, i, old).Status == 200 })
	}
	leafBefore := endpointLeaf(t, c, 0)

	var mu sync.Mutex
	creds := old
	tally := &Tally{}
	loadCtx, stop := context.WithCancel(ctx)
	defer stop()
	done := make(chan error, 1)
	go func() {
		done <- c.Load(loadCtx, LoadOptions{Concurrency: 4, Creds: func() aws.Credentials { mu.Lock(); defer mu.Unlock(); return creds }}, tally)
	}()
	var total Stats
	step := func(what string, f func()) {
		t.Helper()
		time.Sleep(time.Second)
		f()
		s := tally.Take()
		total.Add(s)
		t.Logf("up to %s: %d calls answered 200, %d failed %s", what, s.OK, s.ErrorCount(), s.ErrorSummary())
	}
	purposes := []string{string(keys.StoreTokenKeys), string(keys.StoreAccessKeys)}
	step("staging", func() {
		for _, p := range purposes {
			c.mustPhantom(t, "keys", "rotate", "--purpose", p, "--stage")
		}
		c.exportKeyFiles(t)
		c.checkKeyFiles(t, []keys.Generation{1, 2})
		c.waitKeyFilesTaken(t, 1)
	})
	step("rotating", func() {
		for _, p := range purposes {
			out := c.mustPhantom(t, "keys", "rotate", "--purpose", p)
			t.Logf("phantom keys rotate --purpose %s: %s", p, bytes.Join(bytes.Fields(out), nil))
		}
	})
	step("rotating the issuing CA", func() {
		c.mustPhantom(t, "ca", "rotate")
	})
	// Every component moves to the new issuing CA within a few polls, under load.
	newest := newestIssuing(t, c)
	waitFor(t, 20*time.Second, "endpoint-1's certificate under the new issuing CA", func() bool {
		return bytes.Equal(endpointLeaf(t, c, 0).AuthorityKeyId, newest.SubjectKeyId)
	})
	if bytes.Equal(leafBefore.AuthorityKeyId, newest.SubjectKeyId) {
		t.Fatal("the endpoint's certificate was under the new CA before the rotation")
	}
	for _, chain := range []string{"gateway-1", "gateway-2", "endpoint-1", "endpoint-2"} {
		waitFor(t, 20*time.Second, chain+"'s audit writer certified by the new issuing CA", func() bool {
			return writerUnder(t, c, chain, newest)
		})
	}
	// A session made now (STS reads the user's key, sealed under the new generation)
	// works through both gateways, and half the load uses it from now on.
	fresh, err := c.AssumeRole(ctx, user, "after-key-rotation")
	if err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		if r := c.Call(ctx, i, fresh); r.Status != 200 {
			t.Errorf("a session made after the rotation through gateway %d: %+v", i+1, r)
		}
	}
	go func() {
		for n := 0; loadCtx.Err() == nil; n++ {
			mu.Lock()
			creds = map[bool]aws.Credentials{true: fresh, false: old}[n%2 == 0]
			mu.Unlock()
			time.Sleep(10 * time.Millisecond)
		}
	}()
	step("retiring", func() {
		for _, p := range purposes {
			c.mustPhantom(t, "keys", "retire", "--purpose", p, "--overlap", "0s")
		}
		c.exportKeyFiles(t)
		c.waitKeyFilesTaken(t, 2)
	})
	time.Sleep(2 * time.Second)
	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	total.Add(tally.Take())
	t.Logf("calls under the key and CA rotations: %d answered 200, %d failed %s", total.OK, total.ErrorCount(), total.ErrorSummary())
	if total.OK == 0 {
		t.Fatal("no call was answered")
	}
	if total.ErrorCount() != 0 {
		t.Errorf("%d calls failed during the rotations: %s", total.ErrorCount(), total.ErrorSummary())
	}
	for i := range 2 {
		if r := c.Call(ctx, i, old); r.Status != 200 {
			t.Errorf("the session from before the rotation through gateway %d after retirement: %+v", i+1, r)
		}
	}
	// The key files carry only the current generations now.
	c.checkKeyFiles(t, []keys.Generation{2})
	// No component failed to do anything meanwhile (a store refresh that could not open
	// a value, say), even where a cache kept the calls answered.
	for _, p := range c.procs() {
		if i := strings.Index(p.Log(), "level=ERROR"); i >= 0 {
			t.Errorf("%s logged an error during the rotations: %s", p.Name, tailString(p.Log()[i:], 500))
		}
	}
	// Nothing in the store is left under a retired generation: the owner (master key)
	// reads every access key and token key.
	if _, err := owner.Version(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := owner.ListSealingKeys(ctx); err != nil {
		t.Errorf("the token keys after retirement: %v", err)
	}
	if _, err := owner.GetAccessKey(ctx, user.AccessKeyID); err != nil {
		t.Errorf("the user's key after retirement: %v", err)
	}
	// Every chain verifies across the change, against the bundle of both issuing CAs and
	// the store's anchors.
	verifyChains(t, c)
}

func (c *Cluster) mustPhantom(t *testing.T, args ...string) []byte {
	t.Helper()
	out, err := c.Phantom(t.Context(), args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// keyFile is the key file of process name (Cluster.component writes it).
func (c *Cluster) keyFile(name string) string {
	return filepath.Join(c.cfg.Dir, "keys", name+".keys")
}

// exportKeyFiles exports every process's key file again, as the operator does on each
// host after staging or retiring a generation.
func (c *Cluster) exportKeyFiles(t *testing.T) {
	t.Helper()
	for _, p := range c.procs() {
		component, _, _ := strings.Cut(p.Name, "-")
		c.mustPhantom(t, "keys", "export", "--component", component, "--out", c.keyFile(p.Name))
	}
}

// checkKeyFiles checks that every key file holding the rotated purposes carries exactly
// the generations want of each.
func (c *Cluster) checkKeyFiles(t *testing.T, want []keys.Generation) {
	t.Helper()
	for _, p := range c.procs() {
		data, err := os.ReadFile(c.keyFile(p.Name))
		if err != nil {
			t.Fatal(err)
		}
		ring, err := keys.Parse(data)
		if err != nil {
			t.Fatal(err)
		}
		for _, pu := range []keys.Purpose{keys.StoreTokenKeys, keys.StoreAccessKeys} {
			if g := ring.Generations(pu); ring.Has(pu) && !slices.Equal(g, want) {
				t.Errorf("%s's key file carries %s generations %v, want %v", p.Name, pu, g, want)
			}
		}
	}
}

// waitKeyFilesTaken waits until every process has logged taking its key file n times.
func (c *Cluster) waitKeyFilesTaken(t *testing.T, n int) {
	t.Helper()
	for _, p := range c.procs() {
		waitFor(t, 15*time.Second, fmt.Sprintf("%s to take its key file (%d)", p.Name, n), func() bool {
			return strings.Count(p.Log(), "key file reloaded") >= n
		})
	}
}

// endpointLeaf is the certificate endpoint i presents.
func endpointLeaf(t *testing.T, c *Cluster, i int) *x509.Certificate {
	t.Helper()
	conn, err := tls.Dial("tcp", c.endpointAddrs[i], &tls.Config{InsecureSkipVerify: true}) // only its certificate is read
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0]
}

// newestIssuing is the issuing CA made last, from the bundle STS writes.
func newestIssuing(t *testing.T, c *Cluster) *x509.Certificate {
	t.Helper()
	var newest *x509.Certificate
	waitFor(t, 10*time.Second, "STS's bundle to hold a second issuing CA", func() bool {
		data, err := os.ReadFile(filepath.Join(c.cfg.Dir, "data", "sts", "ca.pem"))
		if err != nil {
			return false
		}
		n := 0
		for _, x := range parseCerts(data) {
			if x.IsCA && !bytes.Equal(x.RawIssuer, x.RawSubject) {
				n++
				if newest == nil || x.NotBefore.After(newest.NotBefore) {
					newest = x
				}
			}
		}
		return n >= 2
	})
	return newest
}

// writerUnder reports whether chain's signers hold a writer certificate newest issued.
func writerUnder(t *testing.T, c *Cluster, chain string, newest *x509.Certificate) bool {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(c.AuditDir(), chain, "signers.pem"))
	if err != nil {
		return false
	}
	for _, x := range parseCerts(data) {
		if bytes.Equal(x.AuthorityKeyId, newest.SubjectKeyId) {
			return true
		}
	}
	return false
}

func parseCerts(data []byte) []*x509.Certificate {
	var out []*x509.Certificate
	for {
		var b *pem.Block
		if b, data = pem.Decode(data); b == nil {
			return out
		}
		if x, err := x509.ParseCertificate(b.Bytes); err == nil {
			out = append(out, x)
		}
	}
}
