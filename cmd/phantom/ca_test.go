package main

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/phantom-perimeter/phantom/internal/gateway"
	"github.com/phantom-perimeter/phantom/internal/hsm"
	"github.com/phantom-perimeter/phantom/internal/hsm/hsmtest"
	"github.com/phantom-perimeter/phantom/internal/keys"
	"github.com/phantom-perimeter/phantom/internal/perimeter"
	"github.com/phantom-perimeter/phantom/internal/pki"
	"github.com/phantom-perimeter/phantom/internal/store"
)

// TestKeysExport: a component's key file holds its purposes only (0600), the operator's
// master key is never exported, and an unknown component is a validation error.
func TestKeysExport(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(t.TempDir(), "gateway.keys")
	r := admOK(t, admRun(t, dir, "", "keys", "export", "--component", "gateway", "--out", out))
	var o struct{ Component, Path string }
	if err := json.Unmarshal([]byte(r.stdout), &o); err != nil || o.Component != "gateway" {
		t.Fatalf("output %q: %v", r.stdout, err)
	}
	if st, err := os.Stat(out); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v %v", st, err)
	}
	ring, err := keys.LoadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if ring.HasMaster() || ring.Has(keys.StoreTokenSigning) || ring.Has(keys.StoreCA) || ring.Has(keys.StoreMFA) || !ring.Has(keys.Assertion) {
		t.Fatalf("the gateway's file holds %v", ring.Held())
	}
	admWantAWSError(t, admRun(t, dir, "", "keys", "export", "--component", "operator", "--out", out+"2"), "ExportComponentKeys", "ValidationError")
	admWantAWSError(t, admRun(t, dir, "", "keys", "export", "--component", "ca", "--out", out+"3"), "ExportComponentKeys", "ValidationError")
	if _, err := os.Stat(out + "2"); !os.IsNotExist(err) {
		t.Fatal("a refused export wrote a file")
	}
}

// TestKeysBackend: an API's backend key file (0600) is the key the gateway MACs that
// API's assertions with, so a verifier made from it checks the gateway's assertions; an
// API the spec lacks is a validation error and writes nothing.
func TestKeysBackend(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(t.TempDir(), "orders.jwk")
	r := admOK(t, admRun(t, dir, "", "keys", "backend", "--api", "a1b2c3d4e5", "--out", out))
	var o struct{ API, KeyID, Path string }
	if err := json.Unmarshal([]byte(r.stdout), &o); err != nil || o.API != "a1b2c3d4e5" || o.Path != out {
		t.Fatalf("output %q: %v", r.stdout, err)
	}
	if st, err := os.Stat(out); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v %v", st, err)
	}
	file, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	mk, err := store.LoadOrCreateMasterKey(dir)
	if err != nil {
		t.Fatal(err)
	}
	seed, err := keys.DeriveEd25519(mk, keys.Assertion)
	if err != nil {
		t.Fatal(err)
	}
	gw, err := gateway.DeriveBackendKey(seed, "a1b2c3d4e5")
	if err != nil {
		t.Fatal(err)
	}
	if o.KeyID != gw.KeyID() || strings.Contains(r.stdout, b64url(gw.Key)) {
		t.Fatalf("output %q: want kid %s and no key", r.stdout, gw.KeyID())
	}
	v, err := gateway.NewAssertionVerifier(gateway.AssertionVerifierConfig{Key: file, Audience: "a1b2c3d4e5"})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	tok, err := gateway.SignAssertionHS256(gw, &gateway.Assertion{Issuer: gateway.AssertionIssuer, Audience: "a1b2c3d4e5", ID: "j1", RequestID: "j1",
		Method: "GET", Path: "/orders", PayloadHash: gateway.UnsignedPayload, IssuedAt: now.Unix(), ExpiresAt: now.Add(gateway.AssertionLifetime).Unix()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(tok); err != nil {
		t.Fatalf("the key file does not verify the gateway's assertion: %v", err)
	}
	admWantAWSError(t, admRun(t, dir, "", "keys", "backend", "--api", "zzzzzzzzzz", "--out", out+"2"), "ExportBackendKey", "ValidationError")
	if _, err := os.Stat(out + "2"); !os.IsNotExist(err) {
		t.Fatal("a refused export wrote a file")
	}
}

func b64url(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// TestKeysRotatePurpose: a storage key is staged (exported key files carry it), rotated
// (re-sealing what it sealed), refused retirement within the overlap, retired, and then
// exported no more; bad flags are validation errors.
func TestKeysRotatePurpose(t *testing.T) {
	dir := t.TempDir()
	admOK(t, admRun(t, dir, "", "iam", "create-access-key", "--user", "alice"))
	type out struct {
		Purpose     string
		Generation  int
		Resealed    int
		Retired     []int
		StorageKeys []struct {
			Purpose    string
			Generation int
			Status     string
		}
	}
	run := func(args ...string) out {
		t.Helper()
		var o out
		r := admOK(t, admRun(t, dir, "", append([]string{"keys"}, args...)...))
		if err := json.Unmarshal([]byte(r.stdout), &o); err != nil {
			t.Fatalf("output %q: %v", r.stdout, err)
		}
		return o
	}
	status := func(o out) string {
		var s []string
		for _, k := range o.StorageKeys {
			if k.Purpose == "store-access-keys" {
				s = append(s, fmt.Sprintf("%d:%s", k.Generation, k.Status))
			}
		}
		return strings.Join(s, " ")
	}
	if o := run("rotate", "--purpose", "store-access-keys", "--stage"); o.Generation != 2 || status(o) != "1:Current 2:Staged" {
		t.Fatalf("stage: %+v", o)
	}
	file := filepath.Join(t.TempDir(), "gateway.keys")
	admOK(t, admRun(t, dir, "", "keys", "export", "--component", "gateway", "--out", file))
	ring, err := keys.LoadFile(file)
	if err != nil || !slices.Equal(ring.Generations(keys.StoreAccessKeys), []keys.Generation{1, 2}) {
		t.Fatalf("the key file exported while generation 2 is staged: %v", err)
	}
	if o := run("rotate", "--purpose", "store-access-keys"); o.Generation != 2 || o.Resealed < 1 || status(o) != "1:Retiring 2:Current" {
		t.Fatalf("rotate: %+v", o)
	}
	if o := run("rotate", "--purpose", "store-access-keys", "--reseal-only"); o.Resealed != 0 {
		t.Fatalf("a second re-seal found %d values", o.Resealed)
	}
	admWantAWSError(t, admRun(t, dir, "", "keys", "retire", "--purpose", "store-access-keys"), "RetireStorageKeys", "ValidationError")
	if o := run("retire", "--purpose", "store-access-keys", "--overlap", "0s"); !slices.Equal(o.Retired, []int{1}) || status(o) != "1:Retired 2:Current" {
		t.Fatalf("retire: %+v", o)
	}
	admOK(t, admRun(t, dir, "", "keys", "export", "--component", "gateway", "--out", file))
	if ring, err = keys.LoadFile(file); err != nil || !slices.Equal(ring.Generations(keys.StoreAccessKeys), []keys.Generation{2}) {
		t.Fatalf("the key file exported after retirement: %v", err)
	}
	admOK(t, admRun(t, dir, "", "iam", "list-access-keys", "--user", "alice"))
	for _, bad := range [][]string{
		{"rotate", "--purpose", "gateway-assertion"},
		{"rotate", "--stage"},
		{"rotate", "--purpose", "store-mfa", "--stage", "--reseal-only"},
		{"retire", "--purpose", "store-mfa", "--overlap", "-1s"},
	} {
		op := map[string]string{"rotate": "RotateKeys", "retire": "RetireStorageKeys"}[bad[0]]
		admWantAWSError(t, admRun(t, dir, "", append([]string{"keys"}, bad...)...), op, "ValidationError")
	}
}

// TestCACommands: list, rotate with overlap, revoke by identity, distrust, and component
// join tokens, each refusing what it must.
func TestCACommands(t *testing.T) {
	dir := t.TempDir()
	type ca struct {
		CACertificates []struct{ Serial, Role, Status string }
	}
	list := func(r admResult) ca {
		t.Helper()
		var c ca
		if err := json.Unmarshal([]byte(admOK(t, r).stdout), &c); err != nil {
			t.Fatal(err)
		}
		return c
	}
	status := func(c ca) map[string]string {
		m := map[string]string{}
		for _, x := range c.CACertificates {
			m[x.Serial] = x.Role + " " + x.Status
		}
		return m
	}
	before := list(admRun(t, dir, "", "ca", "list"))
	var old string
	for _, c := range before.CACertificates {
		if c.Role == "issuing" && c.Status == "Current" {
			old = c.Serial
		}
	}
	if len(before.CACertificates) != 2 || old == "" {
		t.Fatalf("a new perimeter's CA: %+v", before)
	}
	after := status(list(admRun(t, dir, "", "ca", "rotate")))
	if len(after) != 3 || after[old] != "issuing Trusted" {
		t.Fatalf("after a rotation the old issuing CA %s stays trusted: %v (before: %+v)", old, after, before)
	}
	if n := strings.Count(fmt.Sprint(after), "issuing Current"); n != 1 {
		t.Fatalf("after a rotation, %d current issuing CAs: %v", n, after)
	}
	if dis := status(list(admRun(t, dir, "", "ca", "distrust", "--serial", old))); dis[old] != "issuing Distrusted" {
		t.Fatalf("after distrust: %v", dis)
	}
	admWantAWSError(t, admRun(t, dir, "", "ca", "distrust", "--serial", "abcdef"), "DistrustCA", "NoSuchEntity")

	admOK(t, admRun(t, dir, "", "ca", "revoke", "--identity", "spiffe://phantom/123456789012/endpoint/vpce-0123456789abcdef0", "--reason", "host compromised"))
	admWantAWSError(t, admRun(t, dir, "", "ca", "revoke"), "RevokeCertificate", "ValidationError")
	admWantAWSError(t, admRun(t, dir, "", "ca", "revoke", "--serial", "zz"), "RevokeCertificate", "ValidationError")
	admWantAWSError(t, admRun(t, dir, "", "ca", "revoke", "--serial", "ab", "--identity", "spiffe://phantom/123456789012/gateway/gateway"), "RevokeCertificate", "ValidationError")

	tok := admOK(t, admRun(t, dir, "", "ca", "join-token", "--kind", "endpoint", "--name", "vpce-0123456789abcdef0", "--output", "text"))
	if !strings.HasPrefix(tok.stdout, "phjt_") {
		t.Fatalf("token %q", tok.stdout)
	}
	admWantAWSError(t, admRun(t, dir, "", "ca", "join-token", "--kind", "gateway", "--name", "not-the-gateway"), "CreateComponentJoinToken", "ValidationError")
	admWantAWSError(t, admRun(t, dir, "", "ca", "join-token", "--kind", "endpoint", "--name", "vpce-00000000000000000"), "CreateComponentJoinToken", "NoSuchEntity")
	admWantAWSError(t, admRun(t, dir, "", "ca", "join-token", "--kind", "node", "--name", "service-a-1"), "CreateComponentJoinToken", "ValidationError")
	admWantAWSError(t, admRun(t, dir, "", "ca", "join-token", "--kind", "egress", "--name", "egress", "--ip", "not-an-ip"), "CreateComponentJoinToken", "ValidationError")
}

// TestCARootInToken: `phantom ca rotate --root` with a PKCS#11 token (SoftHSM2) makes the
// new root there, never in the store; `ca rotate` then signs with it; a wrong PIN is
// refused and changes nothing.
func TestCARootInToken(t *testing.T) {
	tok := hsmtest.SoftHSM(t)
	dir := t.TempDir()
	pin := filepath.Join(t.TempDir(), "pin")
	if err := os.WriteFile(pin, []byte(tok.PIN+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	hsmFlags := []string{"--pkcs11-module", tok.Module, "--pkcs11-token", tok.TokenLabel, "--pkcs11-pin-file", pin}
	admOK(t, admRun(t, dir, "", "ca", "list"))
	admOK(t, admRun(t, dir, "", append([]string{"ca", "rotate", "--root"}, hsmFlags...)...))
	var out struct {
		CACertificates []struct{ Serial, Role, Status string }
	}
	if err := json.Unmarshal([]byte(admOK(t, admRun(t, dir, "", append([]string{"ca", "rotate"}, hsmFlags...)...)).stdout), &out); err != nil {
		t.Fatal(err)
	}
	roots := 0
	for _, c := range out.CACertificates {
		if c.Role == "root" {
			roots++
		}
	}
	if roots != 2 || len(out.CACertificates) != 5 {
		t.Fatalf("after a token root and a rotation: %+v", out)
	}
	// Without the token, the token's root signs nothing: the store has no key of it.
	if r := admRun(t, dir, "", "ca", "rotate"); r.code == 0 {
		t.Fatalf("rotated under the token's root without the token: %s", r.stdout)
	}
	bad := filepath.Join(t.TempDir(), "bad")
	os.WriteFile(bad, []byte("0000\n"), 0o600)
	if r := admRun(t, dir, "", "ca", "rotate", "--pkcs11-module", tok.Module, "--pkcs11-token", tok.TokenLabel, "--pkcs11-pin-file", bad); r.code == 0 {
		t.Fatal("a wrong PIN rotated")
	}
	if n := len(list(t, dir)); n != 5 {
		t.Fatalf("refused rotations changed the CA: %d certificates", n)
	}
}

type caCert = struct{ Serial, Role, Status string }

func list(t *testing.T, dir string, flags ...string) []caCert {
	t.Helper()
	var out struct{ CACertificates []caCert }
	if err := json.Unmarshal([]byte(admOK(t, admRun(t, dir, "", append([]string{"ca", "list"}, flags...)...)).stdout), &out); err != nil {
		t.Fatal(err)
	}
	return out.CACertificates
}

// TestCAIssuingInToken: `phantom ca rotate --root --pkcs11-issuing` puts the new root and
// issuing CA's keys in the token; STS's perimeter, with its key file and the token,
// issues from it, and without the token it cannot (the store holds no key of it).
func TestCAIssuingInToken(t *testing.T) {
	tok := hsmtest.SoftHSM(t)
	dir := t.TempDir()
	pin := filepath.Join(t.TempDir(), "pin")
	os.WriteFile(pin, []byte(tok.PIN), 0o600)
	before := list(t, dir) // the CA made with the master key, in the store
	admOK(t, admRun(t, dir, "", "ca", "rotate", "--root", "--pkcs11-issuing", "--pkcs11-module", tok.Module, "--pkcs11-token", tok.TokenLabel, "--pkcs11-pin-file", pin))
	// The CA in the store goes: STS must issue from the token's issuing CA (the one the
	// rotation made).
	var current string
	for _, c := range list(t, dir) {
		if c.Role == "issuing" && !slices.ContainsFunc(before, func(b caCert) bool { return b.Serial == c.Serial }) {
			current = c.Serial
		}
	}
	for _, c := range before {
		admOK(t, admRun(t, dir, "", "ca", "distrust", "--serial", c.Serial, "--pkcs11-module", tok.Module, "--pkcs11-token", tok.TokenLabel, "--pkcs11-pin-file", pin))
	}
	// With the token, the operator sees the token's issuing CA as current; the store
	// holds no CA key any more.
	for _, c := range list(t, dir, "--pkcs11-module", tok.Module, "--pkcs11-token", tok.TokenLabel, "--pkcs11-pin-file", pin) {
		if c.Role == "issuing" && (c.Status == "Current") != (c.Serial == current) {
			t.Errorf("with the token: %+v, want %s current", c, current)
		}
	}
	mk, err := store.LoadOrCreateMasterKey(dir)
	if err != nil {
		t.Fatal(err)
	}
	ring, err := keys.ForComponent(mk, keys.STS)
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(t.TempDir(), "sts.keys")
	if err := keys.WriteFile(keyFile, ring); err != nil {
		t.Fatal(err)
	}
	open := func(issuing perimeter.IssuingKeys) (*perimeter.Perimeter, error) {
		// STS's host: the store is the operator's SQLite file here (one host); its key
		// file, not the master key.
		return perimeter.Open(t.Context(), perimeter.Options{DataDir: dir, Account: testAccount, Component: keys.STS, KeysFile: keyFile, IssuingKeys: issuing}, slog.New(slog.DiscardHandler))
	}
	token, err := hsm.Open(tok)
	if err != nil {
		t.Fatal(err)
	}
	defer token.Close()
	p, err := open(token)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Store.Close()
	ca, err := p.CA.CA()
	if err != nil {
		t.Fatalf("STS with the token: %v", err)
	}
	if got := ca.Certificate().SerialNumber.Text(16); got != current {
		t.Fatalf("STS issues from %s, want the token's %s", got, current)
	}
	if _, err := p.Store.GetSecret(t.Context(), "pki/issuing/"+current); err == nil {
		t.Fatal("the store holds the token's issuing key")
	}
	if _, err := p.Issuer.Issue(pki.Request{Identity: pki.Identity{Account: testAccount, Kind: pki.KindGateway, Name: "sts"}, DNSNames: []string{"localhost"}, Server: true}); err != nil {
		t.Fatalf("STS issues with the token: %v", err)
	}
	if q, err := open(nil); err == nil {
		defer q.Store.Close()
		if _, err := q.CA.CA(); err == nil {
			t.Fatal("STS without the token issues from the token's issuing CA")
		}
	}
}
