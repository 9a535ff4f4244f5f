package perimeter

import (
	"context"
	"io"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/phantom-perimeter/phantom/internal/config"
	"github.com/phantom-perimeter/phantom/internal/oidc"
)

// TestWebIdentityVerifierFollowsReload: the verifier handed to sts is built from the
// current spec's providers and rebuilt when a reload swaps the spec.
func TestWebIdentityVerifierFollowsReload(t *testing.T) {
	const base = "version: 1\naccount: \"123456789012\"\nregion: us-east-1\n"
	withProvider, err := config.Parse("a.yaml", []byte(base+"oidcProviders:\n  - url: https://token.actions.githubusercontent.com\n    clientIds: [sts.amazonaws.com]\n"))
	if err != nil {
		t.Fatal(err)
	}
	without, err := config.Parse("b.yaml", []byte(base))
	if err != nil {
		t.Fatal(err)
	}
	var cur atomic.Pointer[config.Spec]
	cur.Store(withProvider)
	get := webIdentityVerifier(cur.Load, slog.New(slog.NewTextHandler(io.Discard, nil)))

	v1 := get()
	if v1 == nil || get() != v1 {
		t.Fatalf("want one verifier per spec, got %v then %v", v1, get())
	}
	// A token of an issuer the spec does not name is refused before any fetch.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	const otherIss = "eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJodHRwczovL2V4YW1wbGUuY29tIn0.c2ln" // iss https://example.com
	if _, err := v1.Verify(ctx, otherIss); err == nil {
		t.Fatal("unknown issuer accepted")
	} else if oe, ok := err.(*oidc.Error); !ok || oe.Code != oidc.CodeInvalidIdentityToken {
		t.Fatalf("unknown issuer: %v", err)
	}

	cur.Store(without)
	v2 := get()
	if v2 == nil || v2 == v1 {
		t.Fatalf("reload did not rebuild the verifier: %v", v2)
	}
}
