package demo

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/phantom-perimeter/phantom/internal/config"
	"github.com/phantom-perimeter/phantom/internal/testenv"
)

func testPerimeter() Perimeter {
	p := Defaults()
	p.GatewayAddr = netip.MustParseAddrPort("127.0.0.1:18445")
	p.STSAddr = netip.MustParseAddrPort("127.0.0.1:18444")
	p.EndpointAddr = netip.MustParseAddrPort("127.0.0.1:18443")
	p.BackendURL = "https://127.0.0.1:18446"
	return p
}

func TestSpecRendersAValidPerimeter(t *testing.T) {
	p := testPerimeter()
	b, err := p.Spec()
	if err != nil {
		t.Fatal(err)
	}
	spec, err := config.Parse("demo.yaml", b)
	if err != nil {
		t.Fatalf("the demo spec does not validate: %v", err)
	}
	ep, ok := spec.Endpoint(p.Endpoint)
	if !ok || len(ep.Listen) != 1 || ep.Listen[0] != p.EndpointAddr {
		t.Fatalf("endpoint %s listens on %v, want %s", p.Endpoint, ep, p.EndpointAddr)
	}
	if !ep.Ingress[0].Ports.Contains(p.EndpointPort()) || ep.Ingress[0].Ports.Contains(p.EndpointPort()+1) {
		t.Fatalf("security group ports %+v, want exactly %d", ep.Ingress[0].Ports, p.EndpointPort())
	}
	if _, ok := spec.RoleByARN(p.RoleARN()); !ok {
		t.Fatalf("no role %s", p.RoleARN())
	}
	if _, ok := spec.RoleByARN(p.OtherRoleARN()); !ok {
		t.Fatalf("no role %s", p.OtherRoleARN())
	}
	if spec.Gateway.Listen != p.GatewayAddr || spec.STS.Listen != p.STSAddr {
		t.Fatalf("gateway %s sts %s", spec.Gateway.Listen, spec.STS.Listen)
	}
}

func TestSpecRefusesMissingAddresses(t *testing.T) {
	p := testPerimeter()
	p.GatewayAddr = netip.AddrPort{}
	if _, err := p.Spec(); err == nil {
		t.Fatal("rendered a spec without a gateway address")
	}
	p = testPerimeter()
	p.BackendURL = ""
	if _, err := p.Spec(); err == nil {
		t.Fatal("rendered a spec without a backend")
	}
}

func TestWriteEnvQuotesForTheShell(t *testing.T) {
	sh := testenv.LookPath(t, "sh")
	path := filepath.Join(t.TempDir(), "demo.env")
	tricky := `it's $HOME "quoted" ` + "`x`"
	if err := WriteEnv(path, []EnvVar{{"A", "plain"}, {"B", tricky}}, "C"); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("demo.env mode %v, want 0600 (it holds a secret key)", fi.Mode().Perm())
	}
	cmd := exec.Command(sh, "-c", `. "$1" && printf '%s\n%s\n%s' "$A" "$B" "${C-unset}"`, "sh", path)
	cmd.Env = append(os.Environ(), "C=left over")
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	if got := string(out); got != "plain\n"+tricky+"\nunset" {
		t.Fatalf("sourced values %q", got)
	}
}

func TestBackendRefusesRequestsWithoutAValidAssertion(t *testing.T) {
	b := &Backend{Verify: func(r *http.Request) (Caller, error) {
		if r.Header.Get(AssertionHeader) != "good" {
			return Caller{}, errors.New("bad assertion")
		}
		return Caller{Principal: "arn:aws:iam::123456789012:user/demo"}, nil
	}}
	for _, tc := range []struct {
		method, path, token, body string
		want                      int
	}{
		{"GET", "/health", "", "", 200},
		{"GET", "/orders", "", "", 401},
		{"GET", "/orders", "forged", "", 401},
		{"GET", "/orders", "good", "", 200},
		{"POST", "/orders", "good", `{"sku":"x"}`, 201},
		{"POST", "/orders", "good", `not json`, 400},
		{"GET", "/orders/1", "good", "", 200},
		{"GET", "/orders/9", "good", "", 404},
		{"DELETE", "/admin/users", "good", "", 200},
		{"GET", "/reports", "good", "", 200},
		{"GET", "/reports", "", "", 401},
	} {
		r := httptest.NewRequest(tc.method, tc.path, strings.NewReader(tc.body))
		if tc.token != "" {
			r.Header.Set(AssertionHeader, tc.token)
		}
		w := httptest.NewRecorder()
		b.ServeHTTP(w, r)
		if w.Code != tc.want {
			t.Errorf("%s %s token %q: %d %s, want %d", tc.method, tc.path, tc.token, w.Code, w.Body, tc.want)
		}
	}
	if rr := httptest.NewRecorder(); true {
		b.ServeHTTP(rr, withToken(httptest.NewRequest("GET", "/orders/1", nil), "good"))
		if !strings.Contains(rr.Body.String(), `"createdBy":"arn:aws:iam::123456789012:user/demo"`) {
			t.Fatalf("order 1 does not name its creator: %s", rr.Body)
		}
	}
}

func withToken(r *http.Request, tok string) *http.Request {
	r.Header.Set(AssertionHeader, tok)
	return r
}

func TestPortBase(t *testing.T) {
	p := testPerimeter()
	if got := p.PortBase(); got != 18443 {
		t.Fatalf("PortBase of the 18443.. layout = %d", got)
	}
	p.GatewayAddr = netip.MustParseAddrPort("127.0.0.1:19000")
	if got := p.PortBase(); got != 0 {
		t.Fatalf("PortBase of an edited layout = %d, want 0", got)
	}
}

// TestAdoptReadsTheSpecsAddresses: a demo spec written earlier gives back the addresses
// it was written with, and one that lost the demo's endpoint says so.
func TestAdoptReadsTheSpecsAddresses(t *testing.T) {
	want := testPerimeter()
	b, err := want.Spec()
	if err != nil {
		t.Fatal(err)
	}
	spec, err := config.Parse("perimeter.yaml", b)
	if err != nil {
		t.Fatal(err)
	}
	got := Defaults()
	if err := got.Adopt(spec); err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Fatalf("Adopt = %+v, want %+v", got, want)
	}
	other := Defaults()
	other.Endpoint = "vpce-0000000000000000f"
	if err := other.Adopt(spec); err == nil || !strings.Contains(err.Error(), "vpce-0000000000000000f") {
		t.Fatalf("Adopt of a spec without the demo endpoint: %v", err)
	}
	// A demo spec from before the backend spoke HTTPS names it over http: the backend
	// would not answer there, so Adopt says so rather than start a broken demo.
	old := want
	old.BackendURL = "http://127.0.0.1:18446"
	if b, err = old.Spec(); err != nil {
		t.Fatal(err)
	}
	if spec, err = config.Parse("perimeter.yaml", b); err != nil {
		t.Fatal(err)
	}
	again := Defaults()
	if err := again.Adopt(spec); err == nil || !strings.Contains(err.Error(), "https backend") {
		t.Fatalf("Adopt of a spec with an http backend: %v", err)
	}
}

// TestAWSConfig: the profiles name absolute paths, quote a path with a space for the
// shell that runs credential_process, and point STS calls at the demo STS.
func TestAWSConfig(t *testing.T) {
	p := testPerimeter()
	got := string(p.AWSConfig(AWSConfigFile{Phantom: "/opt/my tools/phantom", CABundle: "/data/ca.pem", AccessKeyID: "AKIAEXAMPLE", SecretAccessKey: "secret"}))
	for _, want := range []string{
		"[profile phantom-demo]\n",
		"credential_process = '/opt/my tools/phantom' credentials --role arn:aws:iam::123456789012:role/service-a --source-profile phantom-demo-user --sts https://127.0.0.1:18444 --ca-bundle /data/ca.pem\n",
		"[profile phantom-demo-user]\n",
		"aws_access_key_id = AKIAEXAMPLE\n",
		"ca_bundle = /data/ca.pem\n",
		"[services phantom-demo-endpoints]\nsts =\n  endpoint_url = https://127.0.0.1:18444\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("AWS config lacks %q:\n%s", want, got)
		}
	}
}
