package admin_test

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/phantom-perimeter/phantom/internal/admin"
	"github.com/phantom-perimeter/phantom/internal/audit"
	"github.com/phantom-perimeter/phantom/internal/config"
	"github.com/phantom-perimeter/phantom/internal/identity"
	"github.com/phantom-perimeter/phantom/internal/nodeapi"
	"github.com/phantom-perimeter/phantom/internal/pki"
	"github.com/phantom-perimeter/phantom/internal/store"
	"github.com/phantom-perimeter/phantom/internal/store/storetest"
)

const account = "123456789012"

func loadSpec(t *testing.T) *config.Spec {
	t.Helper()
	s, err := config.Load("testdata/perimeter.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func open(t *testing.T, dir string) *admin.Admin {
	t.Helper()
	a, err := admin.Open(context.Background(), admin.Config{DataDir: dir, Spec: loadSpec(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	return a
}

// replica is another process's identity service on the same data directory, as a
// gateway or STS replica would run it.
func replica(t *testing.T, dir string) *identity.Service {
	t.Helper()
	ctx := context.Background()
	mk, err := store.LoadOrCreateMasterKey(dir)
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.OpenSQLite(ctx, store.Config{DataDir: dir, MasterKey: mk})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	s, err := identity.New(identity.Config{Account: account}, identity.Deps{AccessKeys: st, SealingKeys: st, Revocations: st, Nodes: st, Changes: st})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	return s
}

func wantCode(t *testing.T, err error, code string) {
	t.Helper()
	var e *admin.Error
	if !errors.As(err, &e) || e.Code != code {
		t.Fatalf("error = %v, want AWS code %s", err, code)
	}
}

func TestAccessKeyLifecycle(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	a := open(t, dir)
	rep := replica(t, dir)

	created, err := a.CreateAccessKey(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	k := created.AccessKey
	if !identity.ValidAccessKeyID(k.AccessKeyId, identity.PrefixLongTerm) || len(k.SecretAccessKey) != 40 || k.Status != "Active" || k.UserName != "alice" {
		t.Fatalf("created %+v", k)
	}

	list, err := a.ListAccessKeys(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if len(list.AccessKeyMetadata) != 1 || list.AccessKeyMetadata[0].AccessKeyId != k.AccessKeyId {
		t.Fatalf("list = %+v", list)
	}
	var buf bytes.Buffer
	for _, f := range []admin.Format{admin.JSON, admin.Text} {
		if err := admin.Write(&buf, f, list); err != nil {
			t.Fatal(err)
		}
	}
	if strings.Contains(buf.String(), k.SecretAccessKey) || strings.Contains(buf.String(), "Secret") {
		t.Fatalf("list output shows a secret:\n%s", buf.String())
	}

	lookup := func() error {
		t.Helper()
		if err := rep.Refresh(ctx); err != nil {
			t.Fatal(err)
		}
		c, err := rep.LookupCredential(ctx, k.AccessKeyId, "")
		if err == nil && (c.SecretAccessKey != k.SecretAccessKey || c.Principal != "arn:aws:iam::123456789012:user/alice") {
			t.Fatalf("credential %+v", c)
		}
		return err
	}
	if err := lookup(); err != nil {
		t.Fatalf("active key refused: %v", err)
	}
	if err := a.UpdateAccessKey(ctx, "alice", k.AccessKeyId, "Inactive"); err != nil {
		t.Fatal(err)
	}
	if err := lookup(); !errors.Is(err, identity.ErrAccessKeyInactive) {
		t.Fatalf("inactive key: %v", err)
	}
	if err := a.UpdateAccessKey(ctx, "alice", k.AccessKeyId, "Active"); err != nil {
		t.Fatal(err)
	}
	if err := lookup(); err != nil {
		t.Fatalf("reactivated key refused: %v", err)
	}
	if err := a.DeleteAccessKey(ctx, "alice", k.AccessKeyId); err != nil {
		t.Fatal(err)
	}
	if err := lookup(); !errors.Is(err, identity.ErrAccessKeyUnknown) {
		t.Fatalf("deleted key: %v", err)
	}
	wantCode(t, a.DeleteAccessKey(ctx, "alice", k.AccessKeyId), admin.CodeNoSuchEntity)
}

// The same disablement reaches a replica that only polls (identity.Service.Run), within
// its refresh interval.
func TestInactiveReachesPollingReplica(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dir := t.TempDir()
	a := open(t, dir)
	k, err := a.CreateAccessKey(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	mk, _ := store.LoadOrCreateMasterKey(dir)
	st, err := store.OpenSQLite(ctx, store.Config{DataDir: dir, MasterKey: mk})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	rep, err := identity.New(identity.Config{Account: account, RefreshInterval: 20 * time.Millisecond},
		identity.Deps{AccessKeys: st, SealingKeys: st, Revocations: st, Changes: st})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { rep.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	id := k.AccessKey.AccessKeyId
	waitFor(t, func() bool { _, err := rep.LookupCredential(ctx, id, ""); return err == nil })
	if err := a.UpdateAccessKey(ctx, "alice", id, "Inactive"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool {
		_, err := rep.LookupCredential(ctx, id, "")
		return errors.Is(err, identity.ErrAccessKeyInactive)
	})
}

func waitFor(t *testing.T, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached within 5s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestAccessKeyQuota(t *testing.T) {
	ctx := context.Background()
	a := open(t, t.TempDir())
	for range admin.AccessKeysPerUser {
		if _, err := a.CreateAccessKey(ctx, "alice"); err != nil {
			t.Fatal(err)
		}
	}
	_, err := a.CreateAccessKey(ctx, "alice")
	wantCode(t, err, admin.CodeLimitExceeded)
	if msg, _ := admin.CLIMessage("CreateAccessKey", err); msg != "An error occurred (LimitExceeded) when calling the CreateAccessKey operation: Cannot exceed quota for AccessKeysPerUser: 2" {
		t.Fatalf("message %q", msg)
	}
	// The quota is per user.
	if _, err := a.CreateAccessKey(ctx, "bob"); err != nil {
		t.Fatal(err)
	}
}

func TestAccessKeyErrors(t *testing.T) {
	ctx := context.Background()
	a := open(t, t.TempDir())
	bobs, err := a.CreateAccessKey(ctx, "bob")
	if err != nil {
		t.Fatal(err)
	}
	bobKey := bobs.AccessKey.AccessKeyId
	tests := []struct {
		name string
		call func() error
		code string
	}{
		{"create for a user not in the spec", func() error { _, err := a.CreateAccessKey(ctx, "mallory"); return err }, admin.CodeNoSuchEntity},
		{"list for a user not in the spec with no keys", func() error { _, err := a.ListAccessKeys(ctx, "mallory"); return err }, admin.CodeNoSuchEntity},
		{"user name outside IAM's pattern", func() error { _, err := a.CreateAccessKey(ctx, "bad name"); return err }, admin.CodeValidationError},
		{"status is an enum: Active or Inactive, case-sensitive", func() error { return a.UpdateAccessKey(ctx, "bob", bobKey, "inactive") }, admin.CodeValidationError},
		{"unknown key id", func() error { return a.UpdateAccessKey(ctx, "bob", "AKIAAAAAAAAAAAAAAAAA", "Inactive") }, admin.CodeNoSuchEntity},
		{"key id too short for IAM's pattern", func() error { return a.DeleteAccessKey(ctx, "bob", "AKIA") }, admin.CodeValidationError},
		// IAM answers NoSuchEntity for a key id under another user's name.
		{"another user's key: update", func() error { return a.UpdateAccessKey(ctx, "alice", bobKey, "Inactive") }, admin.CodeNoSuchEntity},
		{"another user's key: delete", func() error { return a.DeleteAccessKey(ctx, "alice", bobKey) }, admin.CodeNoSuchEntity},
		{"delete for an unknown user", func() error { return a.DeleteAccessKey(ctx, "mallory", bobKey) }, admin.CodeNoSuchEntity},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { wantCode(t, tt.call(), tt.code) })
	}
	// None of them touched bob's key.
	list, err := a.ListAccessKeys(ctx, "bob")
	if err != nil || len(list.AccessKeyMetadata) != 1 || list.AccessKeyMetadata[0].Status != "Active" {
		t.Fatalf("bob's keys = %+v, %v", list, err)
	}
}

// A user removed from the spec keeps its stored keys; they can be listed, disabled and
// deleted, but not re-enabled or added to.
func TestRemovedUser(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	a := open(t, dir)
	k, err := a.CreateAccessKey(ctx, "bob")
	if err != nil {
		t.Fatal(err)
	}
	a.Close()
	spec, err := config.Parse("small.yaml", []byte("version: 1\naccount: \"123456789012\"\nregion: us-east-1\nusers: [{name: alice}]\n"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := admin.Open(ctx, admin.Config{DataDir: dir, Spec: spec})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	id := k.AccessKey.AccessKeyId
	if l, err := b.ListAccessKeys(ctx, "bob"); err != nil || len(l.AccessKeyMetadata) != 1 {
		t.Fatalf("list = %+v, %v", l, err)
	}
	if err := b.UpdateAccessKey(ctx, "bob", id, "Inactive"); err != nil {
		t.Fatal(err)
	}
	wantCode(t, b.UpdateAccessKey(ctx, "bob", id, "Active"), admin.CodeNoSuchEntity)
	_, err = b.CreateAccessKey(ctx, "bob")
	wantCode(t, err, admin.CodeNoSuchEntity)
	if err := b.DeleteAccessKey(ctx, "bob", id); err != nil {
		t.Fatal(err)
	}
}

func session(t *testing.T, s *identity.Service, role string) (identity.Claims, string) {
	t.Helper()
	c, tok, err := s.NewSession(identity.Claims{
		Principal:   "arn:aws:sts::123456789012:assumed-role/" + role + "/s",
		Role:        "arn:aws:iam::123456789012:role/" + role,
		SessionName: "s",
	}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return c, tok
}

func TestRevokeSessions(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	a := open(t, dir)
	_, err := a.RevokeSessions(ctx, "nosuchrole")
	wantCode(t, err, admin.CodeNoSuchEntity)
	if _, err := a.RotateKeys(ctx, nil); err != nil {
		t.Fatal(err)
	}
	rep := replica(t, dir)
	before, beforeTok := session(t, rep, "app")
	other, otherTok := session(t, rep, "batch")
	time.Sleep(2 * time.Millisecond) // the revocation is strictly after the issue time

	out, err := a.RevokeSessions(ctx, "app")
	if err != nil {
		t.Fatal(err)
	}
	if out.RoleArn != "arn:aws:iam::123456789012:role/app" {
		t.Fatalf("output %+v", out)
	}
	if err := rep.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := rep.LookupCredential(ctx, before.AccessKeyID, beforeTok); !errors.Is(err, identity.ErrSessionRevoked) {
		t.Fatalf("session issued before the revocation: %v", err)
	}
	if _, err := rep.LookupCredential(ctx, other.AccessKeyID, otherTok); err != nil {
		t.Fatalf("another role's session: %v", err)
	}
	time.Sleep(2 * time.Millisecond)
	after, afterTok := session(t, rep, "app")
	if _, err := rep.LookupCredential(ctx, after.AccessKeyID, afterTok); err != nil {
		t.Fatalf("session issued after the revocation: %v", err)
	}
}

func TestRotateKeys(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	a := open(t, dir)
	if l, err := a.ListKeys(ctx); err != nil || len(l.SealingKeys) != 0 {
		t.Fatalf("fresh list = %+v, %v", l, err)
	}
	first, err := a.RotateKeys(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	rep := replica(t, dir)
	c, tok := session(t, rep, "app")

	second, err := a.RotateKeys(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if second.KeyId == first.KeyId || len(second.SealingKeys) != 2 {
		t.Fatalf("after rotation: %+v", second)
	}
	got := map[string]admin.SealingKey{}
	for _, k := range second.SealingKeys {
		got[k.KeyId] = k
	}
	if k := got[second.KeyId]; k.Status != admin.KeyCurrent || k.RetireAfter != nil {
		t.Fatalf("new key %+v", k)
	}
	old := got[first.KeyId]
	if old.Status != admin.KeyRetiring || old.RetireAfter == nil ||
		time.Time(*old.RetireAfter).Before(time.Now().Add(identity.DefaultMaxSessionDuration-time.Minute)) {
		t.Fatalf("old key %+v", old)
	}

	// A token sealed before the rotation still opens, in a replica that reloads…
	if err := rep.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := rep.LookupCredential(ctx, c.AccessKeyID, tok); err != nil {
		t.Fatalf("token sealed before rotation: %v", err)
	}
	// …and in one started afterwards; new tokens are sealed with the new key.
	rep2 := replica(t, dir)
	if _, err := rep2.LookupCredential(ctx, c.AccessKeyID, tok); err != nil {
		t.Fatalf("token sealed before rotation, fresh replica: %v", err)
	}
	if id := rep2.Sealer().CurrentKeyID(); id != second.KeyId {
		t.Fatalf("current key %s, want %s", id, second.KeyId)
	}

	// Listing never shows key material.
	mk, _ := store.LoadOrCreateMasterKey(dir)
	st, err := store.OpenSQLite(ctx, store.Config{DataDir: dir, MasterKey: mk})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	keys, err := st.ListSealingKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	list, err := a.ListKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []admin.Format{admin.JSON, admin.Text} {
		admin.Write(&buf, f, list)
		admin.Write(&buf, f, second)
	}
	for _, k := range keys {
		for _, enc := range []string{base64.StdEncoding.EncodeToString(k.Key), base64.RawURLEncoding.EncodeToString(k.Key), string(k.Key)} {
			if strings.Contains(buf.String(), enc) {
				t.Fatalf("key %s material in output:\n%s", k.ID, buf.String())
			}
		}
	}
}

func TestJoinAndEnroll(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	a := open(t, dir)

	_, err := a.JoinToken(ctx, "node-9", 0)
	wantCode(t, err, admin.CodeNoSuchEntity)
	_, err = a.JoinToken(ctx, "node-1", 8*24*time.Hour)
	wantCode(t, err, admin.CodeValidationError)

	jt, err := a.JoinToken(ctx, "node-1", 10*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(jt.JoinToken.Token, "phjt_") || time.Until(time.Time(jt.JoinToken.Expiration)) > 10*time.Minute {
		t.Fatalf("token %+v", jt.JoinToken)
	}
	// An output directory that cannot be made fails before the token is spent.
	blocker := filepath.Join(t.TempDir(), "file")
	os.WriteFile(blocker, nil, 0o600)
	if _, err := a.Enroll(ctx, jt.JoinToken.Token, filepath.Join(blocker, "node")); err == nil {
		t.Fatal("enrolled into a path under a regular file")
	}
	out := filepath.Join(t.TempDir(), "node")
	res, err := a.Enroll(ctx, jt.JoinToken.Token, out)
	if err != nil {
		t.Fatal(err)
	}
	if res.Node.Identity != "spiffe://phantom/123456789012/node/node-1" || res.Node.RoleName != "app" {
		t.Fatalf("enrolled %+v", res.Node)
	}
	cert, err := pki.LoadKeyPair(filepath.Join(out, nodeapi.CertFile), filepath.Join(out, nodeapi.KeyFile))
	if err != nil {
		t.Fatal(err)
	}
	if st, _ := os.Stat(filepath.Join(out, nodeapi.KeyFile)); st.Mode().Perm() != 0o600 {
		t.Fatalf("key mode %v", st.Mode())
	}
	bundle, err := os.ReadFile(filepath.Join(out, nodeapi.CABundleFile))
	if err != nil {
		t.Fatal(err)
	}
	v, err := pki.NewVerifier(bundle, account, nil)
	if err != nil {
		t.Fatal(err)
	}
	leaf := cert.Leaf
	id, err := v.Verify([]*x509.Certificate{leaf}, x509.ExtKeyUsageClientAuth)
	if err != nil {
		t.Fatal(err)
	}
	if id.Kind != pki.KindNode || id.Name != "node-1" || len(leaf.URIs) != 1 || leaf.URIs[0].String() != res.Node.Identity {
		t.Fatalf("identity %v, URIs %v", id, leaf.URIs)
	}

	// Single use: the same token again is refused and writes nothing.
	out2 := filepath.Join(t.TempDir(), "again")
	_, err = a.Enroll(ctx, jt.JoinToken.Token, out2)
	wantCode(t, err, admin.CodeInvalidClientTokenID)
	if _, err := os.Stat(out2); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("failed enrollment wrote %s: %v", out2, err)
	}
	_, err = a.Enroll(ctx, "phjt_garbage", out2)
	wantCode(t, err, admin.CodeInvalidClientTokenID)
}

func TestExpiredJoinToken(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	now := time.Now()
	clock := func() time.Time { return now }
	a, err := admin.Open(ctx, admin.Config{DataDir: dir, Spec: loadSpec(t), Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	jt, err := a.JoinToken(ctx, "node-2", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	now = now.Add(2 * time.Minute)
	_, err = a.Enroll(ctx, jt.JoinToken.Token, t.TempDir())
	wantCode(t, err, admin.CodeExpiredToken)
}

func TestOutputShapes(t *testing.T) {
	created := time.Date(2026, 11, 29, 1, 55, 0, 123, time.UTC)
	out := &admin.CreateAccessKeyOutput{AccessKey: admin.AccessKey{
		UserName: "alice", AccessKeyId: "AKIAIOSFODNN7EXAMPLE", Status: "Active",
		SecretAccessKey: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", CreateDate: admin.Time(created),
	}}
	var buf bytes.Buffer
	if err := admin.Write(&buf, admin.JSON, out); err != nil {
		t.Fatal(err)
	}
	// The AWS CLI's shape and field order, four-space indent, ISO 8601 with +00:00.
	want := `{
    "AccessKey": {
        "UserName": "alice",
        "AccessKeyId": "AKIAIOSFODNN7EXAMPLE",
        "Status": "Active",
        "SecretAccessKey": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        "CreateDate": "2026-11-29T01:55:00+00:00"
    }
}
`
	if buf.String() != want {
		t.Fatalf("json:\n%s\nwant:\n%s", buf.String(), want)
	}
	buf.Reset()
	if err := admin.Write(&buf, admin.Text, out); err != nil {
		t.Fatal(err)
	}
	if want := "ACCESSKEY\tAKIAIOSFODNN7EXAMPLE\t2026-11-29T01:55:00+00:00\twJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\tActive\talice\n"; buf.String() != want {
		t.Fatalf("text %q, want %q", buf.String(), want)
	}
	buf.Reset()
	list := &admin.ListAccessKeysOutput{AccessKeyMetadata: []admin.AccessKeyMetadata{}}
	admin.Write(&buf, admin.JSON, list)
	var v map[string][]any
	if err := json.Unmarshal(buf.Bytes(), &v); err != nil || v["AccessKeyMetadata"] == nil {
		t.Fatalf("empty list must be [] not null: %s", buf.String())
	}
	if _, err := admin.ParseFormat("yaml"); err == nil {
		t.Fatal("yaml accepted")
	}
}

// TestAccessKeyQuotaAcrossHosts: operators on two hosts (two data directories, each
// with its own lock) share one PostgreSQL store and create keys for the same user at
// once. The data-directory lock cannot serialise them; the check after the write must
// keep the quota: never more than two keys, every refusal LimitExceeded.
func TestAccessKeyQuotaAcrossHosts(t *testing.T) {
	dsn, _ := storetest.PostgresSchema(t, "phantom_admin")
	mk := bytes.Repeat([]byte{5}, 32)
	t.Setenv(store.MasterKeyEnv, base64.StdEncoding.EncodeToString(mk))
	ctx := context.Background()
	hosts := make([]*admin.Admin, 2)
	for i := range hosts {
		a, err := admin.Open(ctx, admin.Config{DataDir: t.TempDir(), StoreURL: dsn, Spec: loadSpec(t)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { a.Close() })
		hosts[i] = a
	}
	for round := range 5 {
		errs := make(chan error, 8)
		for i := range 8 {
			go func() {
				_, err := hosts[i%2].CreateAccessKey(ctx, "alice")
				errs <- err
			}()
		}
		for range 8 {
			if err := <-errs; err != nil {
				wantCode(t, err, admin.CodeLimitExceeded)
			}
		}
		out, err := hosts[0].ListAccessKeys(ctx, "alice")
		if err != nil {
			t.Fatal(err)
		}
		if n := len(out.AccessKeyMetadata); n > admin.AccessKeysPerUser {
			t.Fatalf("round %d: alice has %d keys, over the quota of %d", round, n, admin.AccessKeysPerUser)
		}
		// Make room for the next round.
		for _, k := range out.AccessKeyMetadata {
			if err := hosts[1].DeleteAccessKey(ctx, "alice", k.AccessKeyId); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// TestRevokeNode: removing a node refuses its sessions on a replica polling the store,
// shows it Revoked in the list, is audited in the admin chain, and a new enrollment
// brings it back while its old sessions stay refused.
func TestRevokeNode(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	auditDir := filepath.Join(dir, "audit")
	a, err := admin.Open(ctx, admin.Config{DataDir: dir, Spec: loadSpec(t), AuditDir: auditDir})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	jt, err := a.JoinToken(ctx, "node-1", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	enrolled, err := a.Enroll(ctx, jt.JoinToken.Token, filepath.Join(t.TempDir(), "n"))
	if err != nil {
		t.Fatal(err)
	}
	r := replica(t, dir)
	if _, err := r.RotateSealingKey(ctx); err != nil {
		t.Fatal(err)
	}
	sess, tok, err := r.NewSession(identity.Claims{Principal: "arn:aws:sts::" + account + ":assumed-role/app/node-1", Role: "arn:aws:iam::" + account + ":role/app", Node: "node-1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	list, err := a.ListNodes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Nodes) != 2 || list.Nodes[0].NodeName != "node-1" || list.Nodes[0].Status != admin.NodeActive || list.Nodes[0].CertificateSerial != enrolled.Node.CertificateSerial ||
		list.Nodes[0].NotAfter == nil || list.Nodes[1].Status != admin.NodeNotEnrolled {
		t.Fatalf("nodes before: %+v", list.Nodes)
	}

	out, err := a.RevokeNode(ctx, "node-1")
	if err != nil {
		t.Fatal(err)
	}
	if out.NodeName != "node-1" || out.CertificateSerial != enrolled.Node.CertificateSerial || out.RevokedAt == "" {
		t.Fatalf("output %+v", out)
	}
	waitFor(t, func() bool { _ = r.Refresh(ctx); return r.NodeRevoked("node-1") })
	if _, err := r.Resolve(ctx, sess.AccessKeyID, tok); !errors.Is(err, identity.ErrSessionRevoked) {
		t.Fatalf("the removed node's session on the replica: %v", err)
	}
	list, _ = a.ListNodes(ctx)
	if list.Nodes[0].Status != admin.NodeRevoked || list.Nodes[0].RevokedAt == nil {
		t.Fatalf("nodes after: %+v", list.Nodes[0])
	}
	recs := adminEvents(t, auditDir)
	if len(recs) != 1 || recs[0].EventName != "RevokeNode" || recs[0].RequestParameters["nodeName"] != "node-1" || recs[0].UserIdentity.PrincipalID == "" {
		t.Fatalf("admin chain: %+v", recs)
	}

	_, err = a.RevokeNode(ctx, "node-9")
	wantCode(t, err, admin.CodeNoSuchEntity)

	// Enrolled again with a new token: active, and the old session stays refused.
	jt, err = a.JoinToken(ctx, "node-1", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Enroll(ctx, jt.JoinToken.Token, filepath.Join(t.TempDir(), "n2")); err != nil {
		t.Fatal(err)
	}
	if err := r.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if r.NodeRevoked("node-1") {
		t.Error("still revoked after enrolling again")
	}
	if _, err := r.Resolve(ctx, sess.AccessKeyID, tok); !errors.Is(err, identity.ErrSessionRevoked) {
		t.Errorf("the old session after re-enrollment: %v", err)
	}
	list, _ = a.ListNodes(ctx)
	if list.Nodes[0].Status != admin.NodeActive {
		t.Errorf("after re-enrollment: %+v", list.Nodes[0])
	}
}

// adminEvents reads the admin chain's events.
func adminEvents(t *testing.T, dir string) []*audit.Event {
	t.Helper()
	var evs []*audit.Event
	err := audit.ReadChain(dir, admin.AuditChain, 0, func(e audit.Entry) error {
		ev, err := e.Decode()
		evs = append(evs, ev)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return evs
}
