package main

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awssts "github.com/aws/aws-sdk-go-v2/service/sts"
	ststypes "github.com/aws/aws-sdk-go-v2/service/sts/types"
	"github.com/aws/smithy-go"

	"github.com/phantom-perimeter/phantom/internal/identity"
	"github.com/phantom-perimeter/phantom/internal/store"
)

// sdk is aws-sdk-go-v2's STS client pointed at s, trusting only DIR/ca.pem.
func (s *stsServer) sdk(t testing.TB, creds aws.Credentials) *awssts.Client {
	t.Helper()
	return awssts.New(awssts.Options{
		Region:       "us-east-1",
		BaseEndpoint: aws.String(s.url),
		HTTPClient:   s.client(t),
		Credentials: aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
			return creds, nil
		}),
		RetryMaxAttempts: 1,
	})
}

func sdkCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

// eventually retries f for up to 3 s (the server's store poll and the spec watcher's
// debounce are well inside it).
func eventually(t testing.TB, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: still failing after 3s: %v", what, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestSTSBinarySDKAndReload drives the real binary with aws-sdk-go-v2's STS client (no
// external tool needed, so it always runs): AssumeRole with session tags, the session's
// caller identity, then a spec change picked up without a restart and a bad spec
// rejected while the running one stays.
func TestSTSBinarySDKAndReload(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := buildPhantom(t)
	s := startSTS(t, bin)
	ctx := context.Background()
	ids := openIdentity(t, s.dataDir)
	key, err := ids.CreateAccessKey(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	alice := s.sdk(t, aws.Credentials{AccessKeyID: key.ID, SecretAccessKey: key.Secret})
	eventually(t, "GetCallerIdentity as alice", func() error {
		_, err := alice.GetCallerIdentity(ctx, &awssts.GetCallerIdentityInput{})
		return err
	})

	out, err := alice.AssumeRole(ctx, &awssts.AssumeRoleInput{
		RoleArn: aws.String("arn:aws:iam::123456789012:role/app"), RoleSessionName: aws.String("sdk"),
		Tags: []ststypes.Tag{{Key: aws.String("project"), Value: aws.String("phantom")}}, TransitiveTagKeys: []string{"project"},
	})
	if err != nil {
		t.Fatalf("AssumeRole: %v\n%s", err, s.logs())
	}
	c := out.Credentials
	if !strings.HasPrefix(*c.AccessKeyId, "ASIA") || time.Until(*c.Expiration) > time.Hour+time.Minute {
		t.Fatalf("AssumeRole credentials %s expiring %s", *c.AccessKeyId, c.Expiration)
	}
	sess := s.sdk(t, aws.Credentials{AccessKeyID: *c.AccessKeyId, SecretAccessKey: *c.SecretAccessKey, SessionToken: *c.SessionToken})
	who, err := sess.GetCallerIdentity(ctx, &awssts.GetCallerIdentityInput{})
	if err != nil || *who.Arn != "arn:aws:sts::123456789012:assumed-role/app/sdk" {
		t.Fatalf("GetCallerIdentity as the session: %v %v", who, err)
	}
	// A tampered token is refused with AWS's code.
	bad := s.sdk(t, aws.Credentials{AccessKeyID: *c.AccessKeyId, SecretAccessKey: *c.SecretAccessKey, SessionToken: *c.SessionToken + "x"})
	if _, err := bad.GetCallerIdentity(ctx, &awssts.GetCallerIdentityInput{}); sdkCode(err) != "InvalidClientTokenId" {
		t.Fatalf("tampered token: %v", err)
	}

	// Rotating the sealing key (phantom keys rotate, another process on the same data
	// directory): sessions sealed under the old key keep working until they expire, and
	// new sessions are sealed under the new key once the server has polled the store.
	rotated := s.phantom(t, bin, "keys", "rotate")
	var rot map[string]any
	if err := json.Unmarshal(rotated, &rot); err != nil {
		t.Fatalf("phantom keys rotate printed %q: %v", rotated, err)
	}
	current := currentKeySealer(t, s.dataDir)
	eventually(t, "a session sealed under the rotated-in key", func() error {
		out, err := alice.AssumeRole(ctx, &awssts.AssumeRoleInput{RoleArn: aws.String("arn:aws:iam::123456789012:role/app"), RoleSessionName: aws.String("rotated")})
		if err != nil {
			return err
		}
		_, err = current.Open(*out.Credentials.SessionToken)
		return err
	})
	if _, err := current.Open(*c.SessionToken); err == nil {
		t.Fatal("the session issued before the rotation opens under the new key alone")
	}
	if _, err := sess.GetCallerIdentity(ctx, &awssts.GetCallerIdentityInput{}); err != nil {
		t.Fatalf("a session sealed under the rotated-out key: %v", err)
	}

	// A role the spec does not have yet.
	ops := &awssts.AssumeRoleInput{RoleArn: aws.String("arn:aws:iam::123456789012:role/ops"), RoleSessionName: aws.String("sdk")}
	if _, err := alice.AssumeRole(ctx, ops); err == nil {
		t.Fatal("AssumeRole of a role not in the spec succeeded")
	}
	specPath := filepath.Join(filepath.Dir(s.dataDir), "perimeter.yaml")
	withOps := strings.Replace(stsTestSpec, `Resource: "arn:aws:iam::123456789012:role/app"`, `Resource: "arn:aws:iam::123456789012:role/*"`, 1) + `  - name: ops
    trustPolicy:
      Version: "2012-10-17"
      Statement:
        - Effect: Allow
          Principal: {AWS: "arn:aws:iam::123456789012:user/alice"}
          Action: sts:AssumeRole
`
	replaceFile(t, specPath, withOps)
	eventually(t, "AssumeRole ops after the spec gained it (file watch)", func() error {
		_, err := alice.AssumeRole(ctx, ops)
		return err
	})

	// A spec that does not validate is rejected on SIGHUP; the running one stays.
	replaceFile(t, specPath, withOps+"  - name: 'not a valid role name!'\n")
	if err := s.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the bad spec is reported", func() error {
		if !strings.Contains(s.logs(), "perimeter spec rejected") {
			return errors.New("no rejection in the server log")
		}
		return nil
	})
	if _, err := alice.AssumeRole(ctx, ops); err != nil {
		t.Fatalf("AssumeRole ops after a rejected reload: %v", err)
	}
}

// replaceFile writes data to a temporary file and renames it over path, as editors and
// config managers do.
func replaceFile(t testing.TB, path, data string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// currentKeySealer returns a sealer holding only the data directory's current sealing key:
// it opens exactly the tokens sealed since the last rotation.
func currentKeySealer(t testing.TB, dataDir string) *identity.Sealer {
	t.Helper()
	mk, err := store.LoadOrCreateMasterKey(dataDir)
	if err != nil {
		t.Fatal(err)
	}
	db, err := store.OpenSQLite(context.Background(), store.Config{DataDir: dataDir, MasterKey: mk})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	keys, err := db.ListSealingKeys(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var current []identity.SealingKey
	for _, k := range keys {
		if k.RetireAfter.IsZero() {
			current = append(current, k)
		}
	}
	if len(current) != 1 {
		t.Fatalf("%d current sealing keys after a rotation, want 1", len(current))
	}
	sealer, err := identity.NewSealer(identity.SealerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if err := sealer.SetKeys(current); err != nil {
		t.Fatal(err)
	}
	return sealer
}
