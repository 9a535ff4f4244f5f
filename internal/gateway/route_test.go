package gateway

import (
	"net/http"
	"testing"
)

// TestMatch: API Gateway's route selection over the test spec's API.
func TestMatch(t *testing.T) {
	spec := newEnv(t).spec.Load()
	api, _ := spec.API(testAPI)
	tests := []struct {
		name, method, path  string
		wantRoute, wantRest string // "" route: no match
	}{
		{"literal", "GET", "/prod/orders", "/orders", "orders"},
		{"parameter", "GET", "/prod/orders/42", "/orders/{id}", "orders/42"},
		{"another stage", "POST", "/beta/orders", "/orders", "orders"},
		{"literal wins over greedy", "GET", "/prod/private/open", "/private/open", "private/open"},
		{"greedy takes the rest", "DELETE", "/prod/private/a/b/c", "/private/{proxy+}", "private/a/b/c"},
		{"greedy needs one segment", "GET", "/prod/private", "", ""},
		{"paths are case-sensitive", "GET", "/prod/Orders", "", ""},
		{"HEAD is not GET", "HEAD", "/prod/orders", "", ""},
		{"trailing slash dropped", "GET", "/prod/orders/", "/orders", "orders"},
		{"unknown stage", "GET", "/gamma/orders", "", ""},
		{"stage only", "GET", "/prod", "", ""},
		{"parameter takes one segment", "GET", "/prod/orders/1/2", "", ""},
		{"encoded parameter", "GET", "/prod/orders/a%20b", "/orders/{id}", "orders/a b"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, why := parsePath(tt.path)
			if why != "" {
				t.Fatalf("parsePath(%q) refused: %s", tt.path, why)
			}
			m, ok := match(api, tt.method, p)
			switch {
			case tt.wantRoute == "" && ok:
				t.Fatalf("matched %s", m.route.Path)
			case tt.wantRoute == "":
			case !ok:
				t.Fatal("no match")
			case m.route.Path != tt.wantRoute || join(m.rest.dec) != tt.wantRest:
				t.Fatalf("route %s rest %q", m.route.Path, join(m.rest.dec))
			}
		})
	}
}

func join(s []string) string {
	out := ""
	for i, x := range s {
		if i > 0 {
			out += "/"
		}
		out += x
	}
	return out
}

// TestHostAPIID: the Host shapes API Gateway gives private APIs.
func TestHostAPIID(t *testing.T) {
	for host, want := range map[string]string{
		"a1b2c3d4e5.execute-api.us-east-1.amazonaws.com":                        "a1b2c3d4e5",
		"a1b2c3d4e5-vpce-0123456789abcdef0.execute-api.us-east-1.amazonaws.com": "a1b2c3d4e5",
		"A1B2C3D4E5.execute-api.us-east-1.amazonaws.com:443":                    "a1b2c3d4e5",
		"orders.internal.example":                                               "",
		"a1b2c3d4e5-other.example":                                              "",
		"127.0.0.1:8443":                                                        "",
		"[::1]:8443":                                                            "",
	} {
		if got := hostAPIID(host); got != want {
			t.Errorf("hostAPIID(%q) = %q, want %q", host, got, want)
		}
	}
	// Two x-apigw-api-id headers name no API.
	spec := newEnv(t).spec.Load()
	h := http.Header{"X-Apigw-Api-Id": {testAPI, otherAPI}}
	if _, ok := selectAPI(spec, "127.0.0.1", h, nil); ok {
		t.Error("two x-apigw-api-id headers selected an API")
	}
}
