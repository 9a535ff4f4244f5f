package store_test

import (
	"bytes"
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/phantom-perimeter/phantom/internal/store"
)

func TestMasterKeyCreatedOnceAndReused(t *testing.T) {
	t.Setenv(store.MasterKeyEnv, "")
	os.Unsetenv(store.MasterKeyEnv)
	dir := filepath.Join(t.TempDir(), "data")
	k1, err := store.LoadOrCreateMasterKey(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(k1) != store.MasterKeySize {
		t.Fatalf("key is %d bytes, want %d", len(k1), store.MasterKeySize)
	}
	path := filepath.Join(dir, store.MasterKeyFile)
	if got := mode(t, path); got != 0o600 {
		t.Errorf("master.key mode = %#o, want 0600", got)
	}
	if got := mode(t, dir); got != 0o700 {
		t.Errorf("data directory mode = %#o, want 0700", got)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if want := base64.StdEncoding.EncodeToString(k1) + "\n"; string(b) != want {
		t.Errorf("master.key holds %d bytes, want the key's base64 and a newline", len(b))
	}
	k2, err := store.LoadOrCreateMasterKey(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(k1, k2) {
		t.Error("second load returned a different key")
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 {
		t.Errorf("data directory holds %d entries, want only master.key (no temporary files left)", len(entries))
	}
}

// Concurrent first starts agree on one key.
func TestMasterKeyConcurrentCreate(t *testing.T) {
	t.Setenv(store.MasterKeyEnv, "")
	os.Unsetenv(store.MasterKeyEnv)
	dir := t.TempDir()
	const n = 10
	keys := make([][]byte, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			k, err := store.LoadOrCreateMasterKey(dir)
			if err != nil {
				t.Error(err)
			}
			keys[i] = k
		})
	}
	wg.Wait()
	for i := 1; i < n; i++ {
		if !bytes.Equal(keys[i], keys[0]) {
			t.Fatalf("caller %d got a different key from caller 0", i)
		}
	}
}

func TestMasterKeyFromEnv(t *testing.T) {
	want := bytes.Repeat([]byte{7}, 32)
	dir := t.TempDir()
	t.Setenv(store.MasterKeyEnv, " "+base64.StdEncoding.EncodeToString(want)+"\n")
	got, err := store.LoadOrCreateMasterKey(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Error("key from the environment differs from the one set")
	}
	if _, err := os.Stat(filepath.Join(dir, store.MasterKeyFile)); !os.IsNotExist(err) {
		t.Errorf("master.key was created although the key came from the environment (stat err %v)", err)
	}
}

func TestMasterKeyRefused(t *testing.T) {
	key := bytes.Repeat([]byte{9}, 32)
	tests := []struct {
		name string
		env  *string // nil: unset
		file string  // written to master.key when non-empty
		perm os.FileMode
		want string // in the error
	}{
		{name: "empty env", env: ptr(""), want: "empty"},
		{name: "env not base64", env: ptr("not base64!"), want: "base64"},
		{name: "env url-safe base64 with padding stripped", env: ptr(base64.RawURLEncoding.EncodeToString(key)), want: "base64"},
		{name: "env 16 bytes", env: ptr(base64.StdEncoding.EncodeToString(key[:16])), want: "16 bytes"},
		{name: "file world-readable", file: base64.StdEncoding.EncodeToString(key), perm: 0o644, want: "chmod 600"},
		{name: "file group-readable", file: base64.StdEncoding.EncodeToString(key), perm: 0o640, want: "chmod 600"},
		{name: "file truncated", file: base64.StdEncoding.EncodeToString(key)[:20], perm: 0o600, want: "bytes"},
		{name: "file garbage", file: "hello world", perm: 0o600, want: "base64"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.env != nil {
				t.Setenv(store.MasterKeyEnv, *tc.env)
			} else {
				t.Setenv(store.MasterKeyEnv, "")
				os.Unsetenv(store.MasterKeyEnv)
			}
			dir := t.TempDir()
			if tc.file != "" {
				p := filepath.Join(dir, store.MasterKeyFile)
				if err := os.WriteFile(p, []byte(tc.file), tc.perm); err != nil {
					t.Fatal(err)
				}
				if err := os.Chmod(p, tc.perm); err != nil {
					t.Fatal(err)
				}
			}
			k, err := store.LoadOrCreateMasterKey(dir)
			if err == nil {
				t.Fatalf("LoadOrCreateMasterKey accepted it (%d-byte key)", len(k))
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not say %q", err, tc.want)
			}
			if strings.Contains(err.Error(), base64.StdEncoding.EncodeToString(key)[:16]) {
				t.Errorf("error %q contains key material", err)
			}
		})
	}
}

func ptr(s string) *string { return &s }

// The key LoadOrCreateMasterKey makes opens the store, and a store opened with it does
// not open with another.
func TestMasterKeyOpensStore(t *testing.T) {
	t.Setenv(store.MasterKeyEnv, "")
	os.Unsetenv(store.MasterKeyEnv)
	dir := t.TempDir()
	key, err := store.LoadOrCreateMasterKey(dir)
	if err != nil {
		t.Fatal(err)
	}
	h := openHarness(t, dir, key)
	h.Close()
	if _, err := tryOpenHarness(t, dir, newMasterKey(t)); err == nil {
		t.Fatal("store opened with a different master key")
	}
	again, err := store.LoadOrCreateMasterKey(dir)
	if err != nil {
		t.Fatal(err)
	}
	openHarness(t, dir, again)
}
