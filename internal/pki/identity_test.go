package pki

import (
	"crypto/x509"
	"errors"
	"net/url"
	"testing"
)

func TestParseIdentity(t *testing.T) {
	tests := []struct {
		name string
		uri  string
		want Identity // zero: must be refused
	}{
		{"endpoint", "spiffe://phantom/123456789012/endpoint/vpce-0123456789abcdef0", Identity{"123456789012", KindEndpoint, "vpce-0123456789abcdef0"}},
		{"endpoint with an 8-digit id", "spiffe://phantom/123456789012/endpoint/vpce-0123abcd", Identity{"123456789012", KindEndpoint, "vpce-0123abcd"}},
		{"gateway", "spiffe://phantom/123456789012/gateway/gateway", Identity{"123456789012", KindGateway, "gateway"}},
		{"node", "spiffe://phantom/123456789012/node/service-a-1", Identity{"123456789012", KindNode, "service-a-1"}},
		{"egress", "spiffe://phantom/123456789012/egress/egress-1", Identity{"123456789012", KindEgress, "egress-1"}},
		{"detector", "spiffe://phantom/123456789012/detector/detector", Identity{"123456789012", KindDetector, "detector"}},
		{"console", "spiffe://phantom/123456789012/console/console", Identity{"123456789012", KindConsole, "console"}},
		{"upper-case scheme is another spelling", "SPIFFE://phantom/123456789012/node/n1", Identity{}},
		{"upper-case trust domain", "spiffe://Phantom/123456789012/node/n1", Identity{}},
		{"other trust domain", "spiffe://example.org/123456789012/node/n1", Identity{}},
		{"port", "spiffe://phantom:443/123456789012/node/n1", Identity{}},
		{"user info", "spiffe://x@phantom/123456789012/node/n1", Identity{}},
		{"query", "spiffe://phantom/123456789012/node/n1?x=1", Identity{}},
		{"fragment", "spiffe://phantom/123456789012/node/n1#x", Identity{}},
		{"trailing slash", "spiffe://phantom/123456789012/node/n1/", Identity{}},
		{"extra segment", "spiffe://phantom/123456789012/node/n1/x", Identity{}},
		{"dot segment", "spiffe://phantom/123456789012/node/../gateway/gateway", Identity{}},
		{"percent-encoded name", "spiffe://phantom/123456789012/node/n%31", Identity{}},
		{"short account", "spiffe://phantom/12345678901/node/n1", Identity{}},
		{"unknown kind", "spiffe://phantom/123456789012/user/alice", Identity{}},
		{"endpoint name not a vpce id", "spiffe://phantom/123456789012/endpoint/orders", Identity{}},
		{"node name with a leading hyphen", "spiffe://phantom/123456789012/node/-n1", Identity{}},
		{"empty", "", Identity{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseIdentity(tc.uri)
			if tc.want == (Identity{}) {
				if err == nil {
					t.Fatalf("ParseIdentity(%q) = %v, want an error", tc.uri, got)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("ParseIdentity(%q) = %v, %v; want %v", tc.uri, got, err, tc.want)
			}
			if got.String() != tc.uri {
				t.Errorf("String() = %q, want %q", got.String(), tc.uri)
			}
		})
	}
}

func TestIdentityFromCert(t *testing.T) {
	mustURL := func(s string) *url.URL {
		u, err := url.Parse(s)
		if err != nil {
			t.Fatal(err)
		}
		return u
	}
	good := "spiffe://phantom/123456789012/node/n1"
	tests := []struct {
		name string
		uris []*url.URL
		ok   bool
	}{
		{"one phantom URI", []*url.URL{mustURL(good)}, true},
		{"none", nil, false},
		{"two phantom URIs", []*url.URL{mustURL(good), mustURL("spiffe://phantom/123456789012/node/n2")}, false},
		{"a phantom URI and another", []*url.URL{mustURL(good), mustURL("https://example.com")}, false},
		{"raw path differs from its decoding", []*url.URL{{Scheme: "spiffe", Host: "phantom", Path: "/123456789012/node/n1", RawPath: "/123456789012/node/%6E1"}}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			id, err := IdentityFromCert(&x509.Certificate{URIs: tc.uris})
			if tc.ok != (err == nil) {
				t.Fatalf("IdentityFromCert = %v, %v; want ok=%v", id, err, tc.ok)
			}
			if !tc.ok && !errors.Is(err, ErrNoIdentity) {
				t.Errorf("error %v is not ErrNoIdentity", err)
			}
		})
	}
	if _, err := IdentityFromCert(nil); !errors.Is(err, ErrNoIdentity) {
		t.Errorf("nil certificate: %v", err)
	}
}

// FuzzParseIdentity checks that the identity parser accepts exactly one spelling per
// identity: whatever it accepts is valid and prints back as the same string, and the
// certificate path (through net/url, as crypto/x509 parses URI SANs) agrees with it.
func FuzzParseIdentity(f *testing.F) {
	for _, s := range []string{
		"spiffe://phantom/123456789012/endpoint/vpce-0123456789abcdef0",
		"spiffe://phantom/123456789012/gateway/gateway",
		"spiffe://phantom/123456789012/node/service-a-1",
		"spiffe://phantom/123456789012/node/n%31",
		"spiffe://Phantom/123456789012/node/n1",
		"spiffe://phantom:1/123456789012/node/n1",
		"spiffe://phantom/123456789012/node/../n1",
		"spiffe:phantom/123456789012/node/n1",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		id, err := ParseIdentity(s)
		if err == nil {
			if verr := id.Validate(); verr != nil {
				t.Fatalf("accepted invalid identity %v: %v", id, verr)
			}
			if id.String() != s {
				t.Fatalf("accepted %q, which prints as %q", s, id.String())
			}
		}
		u, perr := url.Parse(s)
		if perr != nil {
			return
		}
		if u.String() != s {
			// A certificate's SAN reaches us as a *url.URL, which cannot tell s from
			// u.String() (it drops an empty "#" fragment, for one): what the certificate
			// path can be held to is the text it is given.
			id, err = ParseIdentity(u.String())
		}
		cid, cerr := IdentityFromCert(&x509.Certificate{URIs: []*url.URL{u}})
		if cerr == nil && (err != nil || cid != id) {
			t.Fatalf("certificate path accepted %q as %v; ParseIdentity: %v, %v", s, cid, id, err)
		}
	})
}
