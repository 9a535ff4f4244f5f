package store_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"time"

	"github.com/phantom-perimeter/phantom/internal/store"
)

// Open the embedded store in a data directory, store a user's access key (its secret is
// sealed at rest) and a role revocation, and poll the change counter.
func ExampleOpenSQLite() {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "phantom-data-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	key, err := store.LoadOrCreateMasterKey(dir) // or PHANTOM_MASTER_KEY
	if err != nil {
		log.Fatal(err)
	}
	s, err := store.OpenSQLite(ctx, store.Config{DataDir: dir, MasterKey: key})
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()

	err = s.PutAccessKey(ctx, store.AccessKey{
		ID:     "AKIAIOSFODNN7EXAMPLE",
		User:   "alice",
		Secret: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
		Status: store.StatusActive,
	})
	if err != nil {
		log.Fatal(err)
	}
	if err := s.PutRevocation(ctx, store.Revocation{Role: "deploy", Before: time.Now()}); err != nil {
		log.Fatal(err)
	}
	k, err := s.GetAccessKey(ctx, "AKIAIOSFODNN7EXAMPLE")
	if err != nil {
		log.Fatal(err)
	}
	v, err := s.Version(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(k.User, k.Status, v)
	// Output: alice Active 2
}
