package sts

import (
	"encoding/json"
	"net/http"

	"github.com/phantom-perimeter/phantom/internal/config"
	"github.com/phantom-perimeter/phantom/internal/sso"
)

// serveSignIn publishes the spec's sign-in provider (sso.SignInConfig) at
// sso.SignInConfigPath: public facts (an issuer, a public client id, scopes), so the CLI
// needs only the STS URL. 404 when no provider has signIn.
func (h *Handler) serveSignIn(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		w.WriteHeader(http.StatusMethodNotAllowed)
		w.Write([]byte(`{"message":"GET only"}` + "\n"))
		return
	}
	var p *config.OIDCProvider
	ok := false
	if dir := h.cfg.Directory(); dir != nil {
		p, ok = dir.SignInProvider()
	}
	if !ok {
		w.WriteHeader(http.StatusNotFound)
		w.Write([]byte(`{"message":"this perimeter has no sign-in provider (oidcProviders[].signIn)"}` + "\n"))
		return
	}
	b, err := json.Marshal(sso.SignInConfig{
		Issuer:    p.URL,
		ClientID:  p.SignIn.ClientID,
		Scopes:    p.SignIn.Scopes,
		RoleClaim: p.SignIn.RoleClaim,
		Account:   h.cfg.Account,
		Region:    h.cfg.Region,
	})
	if err != nil {
		w.WriteHeader(http.StatusInternalServerError)
		return
	}
	w.Write(append(b, '\n'))
}
