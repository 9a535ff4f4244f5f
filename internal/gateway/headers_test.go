package gateway

import (
	"net/http"
	"net/textproto"
	"strings"
	"testing"
)

// strippedReference is strippedHeader as it was written before its length filter: the
// filter must change no answer.
func strippedReference(name string) bool {
	return isClientIdentityHeader(name) || overrideHeaders[textproto.CanonicalMIMEHeaderKey(name)]
}

// TestStrippedHeader: every override and client-identity header is stripped in any
// spelling Go may hand over (canonical, lower case, upper case, or left alone because it
// does not canonicalize), and the headers a backend needs are not.
func TestStrippedHeader(t *testing.T) {
	var names []string
	for name := range overrideHeaders {
		names = append(names, name)
	}
	names = append(names, hdrSourceIP, hdrAPIID, hdrTLSVersion, hdrTLSCipher, "X-Forwarded-For", "X-Forwarded-Host", "Forwarded")
	for _, name := range names {
		for _, spelled := range []string{name, strings.ToLower(name), strings.ToUpper(name), "x-" + name[2:]} {
			if !strippedHeader(spelled) && strippedReference(spelled) {
				t.Errorf("%q not stripped", spelled)
			}
		}
		if !strippedHeader(name) {
			t.Errorf("%q not stripped", name)
		}
	}
	for _, name := range []string{"Authorization", "Content-Type", "Accept", "User-Agent", "X-Amz-Date", "X-Real-Ip2", "X-Real Ip", "Real-Ip"} {
		if strippedHeader(name) {
			t.Errorf("%q stripped", name)
		}
	}
}

func FuzzStrippedHeader(f *testing.F) {
	for name := range overrideHeaders {
		f.Add(name)
		f.Add(strings.ToLower(name))
	}
	f.Add("x-real ip")
	f.Add("Authorization")
	f.Fuzz(func(t *testing.T, name string) {
		if got, want := strippedHeader(name), strippedReference(name); got != want {
			t.Fatalf("strippedHeader(%q) = %v, the reference says %v", name, got, want)
		}
	})
}

// TestHeaderNamesCanonical: the names headerValue and the direct map reads are given
// are in canonical form, as a map read without canonicalizing needs (Header.Get would
// find a value these miss otherwise).
func TestHeaderNamesCanonical(t *testing.T) {
	for _, name := range []string{hdrSourceIP, hdrAPIID, hdrTLSVersion, hdrTLSCipher, hdrIdentity, hdrRequestID, "User-Agent"} {
		if c := textproto.CanonicalMIMEHeaderKey(name); c != name {
			t.Errorf("%q is not canonical (%q)", name, c)
		}
	}
	h := http.Header{}
	h.Add("user-agent", "ua")
	if got := headerValue(h, "User-Agent"); got != "ua" {
		t.Errorf("headerValue = %q", got)
	}
	if got := headerValue(h, hdrSourceIP); got != "" {
		t.Errorf("headerValue of an absent header = %q", got)
	}
}
