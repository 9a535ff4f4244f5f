package keys

import (
	"bytes"
	"crypto/ed25519"
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func master(t testing.TB) []byte {
	t.Helper()
	m := bytes.Repeat([]byte{7}, MasterSize)
	m[0] = 1
	return m
}

// Every purpose has its own label and key; the labels that data already depends on are
// the ones the code used before this package (a changed label would orphan every
// sealed secret and every published key).
func TestLabels(t *testing.T) {
	seen := map[string]Purpose{}
	for _, p := range Purposes() {
		l, ok := Label(p)
		if !ok {
			t.Fatalf("%s has no entry", p)
		}
		if l == "" {
			continue // computed public key
		}
		if q, dup := seen[l]; dup {
			t.Fatalf("%s and %s share the label %q", p, q, l)
		}
		seen[l] = p
	}
	for p, want := range map[Purpose]string{
		StoreLegacy:   "phantom store: secrets at rest v1",
		Assertion:     "phantom/assertion/v1",
		AuthzMessages: "phantom/authzmsg/v1",
		AuditLegacy:   "phantom/audit/v1",
	} {
		got, _ := Label(p)
		if got != want {
			t.Errorf("%s label = %q, want %q (existing data is keyed by it)", p, got, want)
		}
		k, err := Derive(master(t), p)
		if err != nil {
			t.Fatal(err)
		}
		ref, _ := hkdf.Key(sha256.New, master(t), nil, want, Size)
		if !bytes.Equal(k, ref) {
			t.Errorf("%s key is not HKDF-SHA256(master, %q)", p, want)
		}
	}
	keys := map[string]Purpose{}
	for _, p := range Purposes() {
		k, err := Derive(master(t), p)
		if err != nil {
			t.Fatal(err)
		}
		if q, dup := keys[string(k)]; dup {
			t.Fatalf("%s and %s derive the same key", p, q)
		}
		keys[string(k)] = p
	}
}

func TestDeriveRefuses(t *testing.T) {
	for name, m := range map[string][]byte{"short": make([]byte, 16), "zero": make([]byte, MasterSize), "long": make([]byte, 33)} {
		if _, err := Derive(m, Assertion); err == nil {
			t.Errorf("%s master key accepted", name)
		}
	}
	if _, err := Derive(master(t), "nonsense"); err == nil {
		t.Error("unknown purpose derived")
	}
}

func TestEgressPublicMatchesSeed(t *testing.T) {
	op, err := FromMaster(master(t))
	if err != nil {
		t.Fatal(err)
	}
	priv, err := op.Ed25519(EgressPasswords)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := op.Key(EgressPasswordsPublic)
	if err != nil {
		t.Fatal(err)
	}
	if !priv.Public().(ed25519.PublicKey).Equal(ed25519.PublicKey(pub)) {
		t.Fatal("the egress public key is not the signing key's")
	}
}

// A component's ring yields its purposes and refuses every other, including the master
// key: what a host is given is all it can use.
func TestComponentRingHoldsOnlyItsPurposes(t *testing.T) {
	for _, c := range Components() {
		if c == Operator {
			continue
		}
		r, err := ForComponent(master(t), c)
		if err != nil {
			t.Fatal(err)
		}
		own, _ := c.Purposes()
		if _, err := r.Master(); !errors.Is(err, ErrNotHeld) {
			t.Errorf("%s: master key handed out (err %v)", c, err)
		}
		for _, p := range Purposes() {
			k, err := r.Key(p)
			held := false
			for _, q := range own {
				held = held || q == p
			}
			switch {
			case held && err != nil:
				t.Errorf("%s: own purpose %s refused: %v", c, p, err)
			case held:
				want, _ := Derive(master(t), p)
				if !bytes.Equal(k, want) {
					t.Errorf("%s: %s key differs from the master's derivation", c, p)
				}
			case !errors.Is(err, ErrNotHeld):
				t.Errorf("%s: %s not refused (err %v)", c, p, err)
			}
			if r.Has(p) != held {
				t.Errorf("%s: Has(%s) = %v", c, p, !held)
			}
		}
	}
	// The edge derives nothing secret.
	for _, c := range []Component{Endpoint, Detector} {
		r, _ := ForComponent(master(t), c)
		if h := r.Held(); len(h) != 0 {
			t.Errorf("%s holds %v", c, h)
		}
	}
	gw, _ := ForComponent(master(t), Gateway)
	for _, p := range []Purpose{StoreTokenSigning, StoreCA, StoreMFA, EgressPasswords, StoreLegacy} {
		if gw.Has(p) {
			t.Errorf("a gateway holds %s", p)
		}
	}
	if _, err := gw.Restrict(STS); !errors.Is(err, ErrNotHeld) {
		t.Errorf("a gateway ring restricted to STS: err %v, want ErrNotHeld", err)
	}
}

func TestKeyFileRoundTrip(t *testing.T) {
	dir := t.TempDir()
	for _, c := range Components() {
		if c == Operator {
			continue
		}
		r, _ := ForComponent(master(t), c)
		path := filepath.Join(dir, string(c)+".keys")
		if err := WriteFile(path, r); err != nil {
			t.Fatal(err)
		}
		st, _ := os.Stat(path)
		if st.Mode().Perm() != 0o600 {
			t.Fatalf("%s key file mode %#o", c, st.Mode().Perm())
		}
		got, err := LoadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if got.Component() != c || strings.Join(purposeNames(got.Held()), ",") != strings.Join(purposeNames(r.Held()), ",") {
			t.Fatalf("%s: read back %s holding %v", c, got.Component(), got.Held())
		}
		for _, p := range r.Held() {
			a, _ := r.Key(p)
			b, _ := got.Key(p)
			if !bytes.Equal(a, b) {
				t.Fatalf("%s: %s differs after the round trip", c, p)
			}
		}
		os.Chmod(path, 0o640)
		if _, err := LoadFile(path); err == nil {
			t.Fatalf("%s: a group-readable key file was read", c)
		}
	}
	op, _ := FromMaster(master(t))
	if _, err := op.Marshal(); err == nil {
		t.Fatal("the master key was written as a component key file")
	}
}

func purposeNames(ps []Purpose) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = string(p)
	}
	return out
}

func TestParseRefuses(t *testing.T) {
	gw, _ := ForComponent(master(t), Gateway)
	good, _ := gw.Marshal()
	sts, _ := ForComponent(master(t), STS)
	signing, _ := sts.Key(StoreTokenSigning)
	extra := string(good) + "store-token-signing " + b64(signing) + "\n"
	lines := strings.Split(strings.TrimSpace(string(good)), "\n")
	for name, in := range map[string]string{
		"empty":           "",
		"no magic":        "gateway\n",
		"operator":        "phantom-keys v1 operator\n",
		"unknown":         "phantom-keys v1 toaster\n",
		"extra purpose":   extra,
		"missing purpose": strings.Join(lines[:len(lines)-1], "\n") + "\n",
		"duplicate":       string(good) + lines[1] + "\n",
		"short key":       lines[0] + "\nstore-access-keys AAAA\n",
		"no value":        lines[0] + "\nstore-access-keys\n",
	} {
		if _, err := Parse([]byte(in)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := Parse(good); err != nil {
		t.Fatalf("the good file: %v", err)
	}
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

func FuzzParse(f *testing.F) {
	for _, c := range Components() {
		if c == Operator {
			continue
		}
		r, _ := ForComponent(master(f), c)
		b, _ := r.Marshal()
		f.Add(b)
	}
	f.Add([]byte("phantom-keys v1 gateway\nstore-access-keys x\n"))
	if r, err := ForComponentGenerations(master(f), Gateway, map[Purpose][]Generation{StoreAccessKeys: {2, 3}, StoreTokenKeys: {1, 2}}); err == nil {
		b, _ := r.Marshal()
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := Parse(data)
		if err != nil {
			return
		}
		// Whatever parses holds exactly its component's purposes and round-trips.
		want, _ := r.Component().Purposes()
		if len(r.Held()) != len(want) {
			t.Fatalf("%s holds %v, want %v", r.Component(), r.Held(), want)
		}
		out, err := r.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		again, err := Parse(out)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range want {
			gens := r.Generations(p)
			if len(gens) == 0 || !slices.Equal(gens, again.Generations(p)) {
				t.Fatalf("%s: generations %v, after a round trip %v", p, gens, again.Generations(p))
			}
			for _, g := range gens {
				a, _ := r.KeyGeneration(p, g)
				b, _ := again.KeyGeneration(p, g)
				if len(a) != Size || !bytes.Equal(a, b) {
					t.Fatal("round trip changed a key")
				}
			}
		}
	})
}

// Each API gets its own MAC key from the assertion key, the same on every replica, and
// the label is the one backends' key files depend on.
func TestDeriveBackendAssertion(t *testing.T) {
	seed, err := Derive(master(t), Assertion)
	if err != nil {
		t.Fatal(err)
	}
	a, err := DeriveBackendAssertion(seed, "a1b2c3d4e5")
	if err != nil {
		t.Fatal(err)
	}
	want, _ := hkdf.Key(sha256.New, seed, nil, "phantom/assertion/hs256/v1 api=a1b2c3d4e5", Size)
	if !bytes.Equal(a, want) {
		t.Fatal("the API key is not HKDF-SHA256(assertion key, info \"phantom/assertion/hs256/v1 api=ID\")")
	}
	b, _ := DeriveBackendAssertion(seed, "b2c3d4e5f6")
	if bytes.Equal(a, b) || bytes.Equal(a, seed) {
		t.Fatal("two APIs, or an API and the assertion key, share a key")
	}
	if _, err := DeriveBackendAssertion(seed[:16], "a1b2c3d4e5"); err == nil {
		t.Fatal("a short assertion key was accepted")
	}
	if _, err := DeriveBackendAssertion(seed, ""); err == nil {
		t.Fatal("an empty API id was accepted")
	}
}

func FuzzParseBackendKey(f *testing.F) {
	seed, err := Derive(master(f), Assertion)
	if err != nil {
		f.Fatal(err)
	}
	k, err := DeriveBackendKey(seed, "a1b2c3d4e5")
	if err != nil {
		f.Fatal(err)
	}
	file, err := k.MarshalJWK()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(file)
	f.Add([]byte(`{"kty":"oct"}`))
	f.Add([]byte(`{"keys":[{"kty":"OKP","crv":"Ed25519","x":"AA"}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		got, err := ParseBackendKey(data)
		if err != nil {
			return
		}
		if got.Check() != nil || !strings.HasPrefix(got.KeyID(), got.API+":") {
			t.Fatalf("accepted %+v", got)
		}
		again, err := got.MarshalJWK()
		if err != nil {
			t.Fatal(err)
		}
		if back, err := ParseBackendKey(again); err != nil || !bytes.Equal(back.Key, got.Key) || back.API != got.API {
			t.Fatalf("round trip: %+v %v", back, err)
		}
	})
}

// Generation 1 of a purpose is the key it always had; later generations are HKDF with
// the label and "/gen/n", independent of each other and of other purposes. A key file
// names them as purpose#n and refuses any other spelling.
func TestGenerations(t *testing.T) {
	m := master(t)
	g1, err := DeriveGeneration(m, StoreAccessKeys, 1)
	if err != nil {
		t.Fatal(err)
	}
	k, _ := Derive(m, StoreAccessKeys)
	if !bytes.Equal(g1, k) {
		t.Fatal("generation 1 is not the purpose's key")
	}
	g2, err := DeriveGeneration(m, StoreAccessKeys, 2)
	if err != nil {
		t.Fatal(err)
	}
	ref, _ := hkdf.Key(sha256.New, m, nil, "phantom/store/access-keys/v2/gen/2", Size)
	if !bytes.Equal(g2, ref) || bytes.Equal(g2, g1) {
		t.Fatal("generation 2 is not HKDF(master, label/gen/2)")
	}
	if _, err := DeriveGeneration(m, StoreAccessKeys, 0); err == nil {
		t.Fatal("generation 0 derived")
	}
	// A ring of generation 2 only: no generation 1, and Has still true.
	r, err := ForComponentGenerations(m, Gateway, map[Purpose][]Generation{StoreAccessKeys: {2}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.KeyGeneration(StoreAccessKeys, 1); !errors.Is(err, ErrNotHeld) {
		t.Fatalf("a ring without generation 1 gave it: %v", err)
	}
	if _, err := r.KeyGeneration(StoreAccessKeys, 3); !errors.Is(err, ErrNotHeld) {
		t.Fatalf("a ring derived a generation it was not given: %v", err)
	}
	if !r.Has(StoreAccessKeys) || !slices.Equal(r.Generations(StoreAccessKeys), []Generation{2}) {
		t.Fatalf("generations held: %v", r.Generations(StoreAccessKeys))
	}
	good, _ := r.Marshal()
	line := "store-access-keys#2 " + b64(g2)
	if !strings.Contains(string(good), line+"\n") {
		t.Fatalf("the key file does not carry %q:\n%s", line, good)
	}
	for _, bad := range []string{"#1", "#0", "#02", "#+2", "#-2", "#", "#x", "#4294967296"} {
		data := strings.Replace(string(good), "store-access-keys#2 ", "store-access-keys"+bad+" ", 1)
		if _, err := Parse([]byte(data)); err == nil {
			t.Errorf("a key file naming store-access-keys%s parsed", bad)
		}
	}
	twice := string(good) + line + "\n"
	if _, err := Parse([]byte(twice)); err == nil {
		t.Error("a key file with a generation twice parsed")
	}
	other := strings.Replace(string(good), "store-access-keys#2 ", "store-mfa#2 ", 1)
	if _, err := Parse([]byte(other)); err == nil {
		t.Error("a gateway's key file with an MFA generation parsed")
	}
}
