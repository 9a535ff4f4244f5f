package main

import (
	"bufio"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/phantom-perimeter/phantom/internal/demo"
)

// scrape fetches a Prometheus text exposition and returns each sample line's value by
// its series (name{labels} exactly as exposed, labels sorted by name).
func scrape(t *testing.T, c *http.Client, url string) map[string]float64 {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("scrape %s: %v", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("scrape %s: %d %s %s", url, resp.StatusCode, resp.Header.Get("Content-Type"), b)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("sample %q: %v", line, err)
		}
		out[line[:i]] = v
	}
	return out
}

// TestUpMetricsEndToEnd: phantom up writes PHANTOM_METRICS_URL to demo.env; an allowed
// and two denied calls through the real binary move the gateway's and the endpoint's
// counters with the right labels, scraped over HTTPS with the perimeter CA bundle, and
// /healthz and /readyz answer 200. No series names a principal, an address or a path.
func TestUpMetricsEndToEnd(t *testing.T) {
	u := startUp(t, buildPhantom(t))
	metricsURL := u.env["PHANTOM_METRICS_URL"]
	if !strings.HasPrefix(metricsURL, "https://127.0.0.1:") || !strings.HasSuffix(metricsURL, "/metrics") {
		t.Fatalf("PHANTOM_METRICS_URL %q", metricsURL)
	}
	if !strings.Contains(u.logs(), "https://"+strings.TrimPrefix(metricsURL, "https://")) {
		t.Errorf("the banner does not show the metrics URL:\n%s", u.logs())
	}
	c := u.goClient(t, nil) // trusts AWS_CA_BUNDLE only
	base := strings.TrimSuffix(metricsURL, "/metrics")
	for _, path := range []string{"/healthz", "/readyz"} {
		resp, err := c.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		// /readyz names the spec in force after "ok".
		if resp.StatusCode != 200 || path == "/healthz" && string(body) != "ok\n" ||
			path == "/readyz" && !regexp.MustCompile(`^ok\nspec sha256:[0-9a-f]{64} \(.*perimeter.yaml, loaded `).Match(body) {
			t.Errorf("%s: %d %q", path, resp.StatusCode, body)
		}
	}

	user := u.user()
	api := demo.Defaults().APIID
	if r := u.signedGo(t, c, user, u.env["PHANTOM_API_URL"], nil); r.Status != 200 {
		t.Fatalf("allowed call: %s", r)
	}
	// Around the endpoint: the resource policy requires aws:SourceVpce.
	if r := u.signedGo(t, c, user, "https://"+u.env["PHANTOM_GATEWAY_ADDR"]+"/prod/orders", nil); r.Status != 403 {
		t.Fatalf("direct call: %s", r)
	}
	// Unsigned, through the endpoint.
	resp, err := c.Get(u.env["PHANTOM_API_URL"])
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()

	want := map[string]float64{
		`phantom_gateway_requests_total{api="` + api + `",reason="",result="allow"}`:                                        1,
		`phantom_gateway_requests_total{api="` + api + `",reason="AccessDenied",result="deny"}`:                             1,
		`phantom_gateway_requests_total{api="` + api + `",reason="MissingAuthenticationToken",result="deny"}`:               1,
		`phantom_gateway_decision_duration_seconds_count{api="` + api + `",result="allow"}`:                                 1,
		`phantom_gateway_backend_duration_seconds_count{api="` + api + `",status_class="2xx"}`:                              1,
		`phantom_endpoint_requests_total{api="` + api + `",endpoint="vpce-0123456789abcdef0",reason="",result="forwarded"}`: 2,
		`phantom_endpoint_connections_total{endpoint="vpce-0123456789abcdef0",reason="",result="accepted"}`:                 1,
		// The demo node's agent got its credentials from STS at start.
		`phantom_sts_requests_total{action="NodeCredentials",code="",result="allow"}`: 1,
		`phantom_agent_credential_refreshes_total{result="success"}`:                  1,
		`phantom_identity_state_fresh`:                                                1,
		`phantom_identity_store_reachable`:                                            1,
	}
	var got map[string]float64
	deadline := time.Now().Add(10 * time.Second)
	for {
		got = scrape(t, c, metricsURL)
		missing := ""
		for series, min := range want {
			if got[series] < min {
				missing = series
			}
		}
		if missing == "" {
			break
		}
		if time.Now().After(deadline) {
			var have []string
			for s := range got {
				if strings.HasPrefix(s, "phantom_") {
					have = append(have, s)
				}
			}
			t.Fatalf("%s below its minimum %v; phantom series:\n%s", missing, want[missing], strings.Join(have, "\n"))
		}
		time.Sleep(200 * time.Millisecond)
	}
	// phantom up's endpoint hands its requests to the gateway in memory: it dials no
	// gateway replica, so it reports none up or down.
	for s := range got {
		if strings.HasPrefix(s, "phantom_endpoint_gateway_") {
			t.Errorf("an in-process endpoint reports a gateway replica: %s", s)
		}
	}
	if got[`phantom_agent_credentials_expiry_seconds`] <= 0 {
		t.Errorf("agent credentials expire in %v s", got[`phantom_agent_credentials_expiry_seconds`])
	}
	build := false
	for series, v := range got {
		build = build || strings.HasPrefix(series, "phantom_build_info{") && v == 1
	}
	if !build {
		t.Error("no phantom_build_info")
	}
	for series := range got {
		for _, leak := range []string{"127.0.0.1\"", "arn:aws", user.AccessKeyID, "/prod/"} {
			if strings.HasPrefix(series, "phantom_") && strings.Contains(series, leak) {
				t.Errorf("series %s carries %q", series, leak)
			}
		}
	}
}
