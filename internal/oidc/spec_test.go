package oidc_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/phantom-perimeter/phantom/internal/config"
	"github.com/phantom-perimeter/phantom/internal/oidc"
	"github.com/phantom-perimeter/phantom/internal/oidc/oidctest"
	"github.com/phantom-perimeter/phantom/internal/policy"
)

// A provider as the perimeter spec loader builds it (URL, Name, ARN) is what New takes:
// the STS wires spec.OIDCProviders straight in.
func TestProvidersFromSpec(t *testing.T) {
	is := oidctest.Start(t, oidctest.Options{Path: "/org"})
	spec, err := config.Parse("spec.yaml", fmt.Appendf(nil, `version: 1
account: "123456789012"
region: us-east-1
oidcProviders:
  - url: %s
    clientIds: [sts.amazonaws.com]
`, is.URL))
	if err != nil {
		t.Fatalf("config.Parse: %v", err)
	}
	clk := newClock()
	v, err := oidc.New(oidc.Config{Providers: spec.OIDCProviders, HTTPClient: is.Client(), Now: clk.Now})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	id, err := v.Verify(context.Background(), is.Mint(t, is.Claims("alice", clk.Now())))
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	want := is.Provider()
	if id.Provider != want.Name || id.ProviderARN != want.ARN || spec.OIDCProviders[0].ARN != want.ARN {
		t.Fatalf("provider %s %s, spec ARN %s, want %s %s", id.Provider, id.ProviderARN, spec.OIDCProviders[0].ARN, want.Name, want.ARN)
	}

	// The keys a trust policy conditions on, in a policy.Context.
	c := policy.NewContext(nil)
	id.SetConditionKeys(c)
	for key, val := range map[string]string{
		want.Name + ":sub":      "alice",
		want.Name + ":aud":      "sts.amazonaws.com",
		"aws:federatedprovider": want.ARN,
	} {
		if got, ok := c.Get(key); !ok || len(got) != 1 || got[0] != val {
			t.Errorf("%s = %v, want %s", key, got, val)
		}
	}
	if _, ok := c.Get(want.Name + ":amr"); ok {
		t.Error(":amr set for a token without amr")
	}
	if !strings.HasPrefix(want.Name, "127.0.0.1:") {
		t.Fatalf("provider name %s", want.Name)
	}
}
