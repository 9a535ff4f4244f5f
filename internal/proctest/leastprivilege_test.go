package proctest

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/phantom-perimeter/phantom/internal/keys"
	"github.com/phantom-perimeter/phantom/internal/store"
	"github.com/phantom-perimeter/phantom/internal/store/storetest"
)

// TestLeastPrivilegeCluster: the perimeter runs as docs/threat-model.md says — STS, two
// gateways, two endpoints and a detector as processes of their own, each with its key
// file (phantom keys export), its store role (phantom store roles) and no master key; all
// but STS with certificates STS enrolled from join tokens (phantom ca join-token). Calls
// work through both endpoints under load, the detector reads the chains, a revocation
// reaches both gateways, and no component's data directory holds a master key. On main,
// STS served no component API: every component's enrollment got 404.
func TestLeastPrivilegeCluster(t *testing.T) {
	c, _ := startLeastPrivilege(t, "cluster_lp", Config{Gateways: 2, Endpoints: 2, Pin: true, Detector: true})
	ctx := t.Context()

	for _, p := range c.procs() {
		if _, err := os.Stat(filepath.Join(c.cfg.Dir, "data", p.Name, store.MasterKeyFile)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s's data directory holds a master key: %v", p.Name, err)
		}
	}
	user, err := c.CreateUserKey(ctx)
	if err != nil {
		t.Fatal(err)
	}
	session, err := c.AssumeRole(ctx, user, "least-privilege")
	if err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		waitFor(t, 5*time.Second, "the session through each endpoint", func() bool { return c.Call(ctx, i, session).Status == 200 })
	}
	tally := &Tally{}
	loadCtx, stop := context.WithTimeout(ctx, 2*time.Second)
	defer stop()
	if err := c.Load(loadCtx, LoadOptions{Concurrency: 4, Creds: func() aws.Credentials { return session }}, tally); err != nil {
		t.Fatal(err)
	}
	st := tally.Take()
	t.Logf("least-privilege cluster under load: %d calls answered 200, %d failed %s", st.OK, st.ErrorCount(), st.ErrorSummary())
	if st.OK == 0 || st.ErrorCount() != 0 {
		t.Fatalf("%d answered, %d failed: %s", st.OK, st.ErrorCount(), st.ErrorSummary())
	}
	// The detector, with no secret and its own role, reads the gateways' chains.
	waitFor(t, 20*time.Second, "the detector to read gateway-1's chain", func() bool {
		n, err := c.DetectorCursors(ctx)
		return err == nil && n["gateway-1"] > 0
	})
	revokedAt, err := c.RevokeSessions(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		if _, r := untilDenied(ctx, c, i, session, revokedAt); r.Status != 403 {
			t.Errorf("gateway %d never refused the revoked session: %+v", i, r)
		}
	}
}

// startLeastPrivilege starts cfg as a least-privilege cluster on a fresh schema: the
// operator's login (returned, holding the master key) makes the schema and a store role
// per component kind the cluster runs; each component gets its key file and role.
func startLeastPrivilege(t *testing.T, schema string, cfg Config) (*Cluster, *store.Postgres) {
	t.Helper()
	postgresDSN(t)
	dsn, _ := storetest.PostgresSchema(t, schema)
	mk := make([]byte, 32)
	for i := range mk {
		mk[i] = byte(7 * (i + 1))
	}
	owner, err := store.OpenPostgres(t.Context(), store.PostgresConfig{DSN: dsn, MasterKey: mk})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { owner.Close() })
	kinds := []keys.Component{keys.STS, keys.Gateway, keys.Endpoint}
	if cfg.Detector {
		kinds = append(kinds, keys.Detector)
	}
	cfg.StoreRoles = map[string]string{}
	for _, c := range kinds {
		cfg.StoreRoles[string(c)] = storetest.ComponentRole(t, owner, dsn, c)
	}
	cfg.LeastPrivilege, cfg.masterKey = true, mk
	return startClusterOn(t, dsn, cfg), owner
}
