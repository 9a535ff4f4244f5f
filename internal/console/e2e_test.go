package console

import (
	"bytes"
	"context"
	"errors"
	"image/color"
	"image/png"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/phantom-perimeter/phantom/internal/audit"
	"github.com/phantom-perimeter/phantom/internal/config"
	"github.com/phantom-perimeter/phantom/internal/identity"
	"github.com/phantom-perimeter/phantom/internal/keys"
	"github.com/phantom-perimeter/phantom/internal/store"
)

// chromiumPath is Debian's chromium package (.ci/run installs it).
const chromiumPath = "/usr/bin/chromium"

// TestBrowser drives the console in headless Chromium end to end, over a real SQLite
// store, identity service and audit chains: sign in through the form, every page, a
// decisions filter and the live refresh, one click to archive a finding and one to revoke
// its role's sessions, a simulation; a screenshot of each page is checked (size, not
// blank) and kept in the test's artifact directory (PHANTOM_UPDATE_SCREENSHOTS=1 also
// writes them to docs/console/). The CSP must not have blocked anything.
func TestBrowser(t *testing.T) {
	if _, err := os.Stat(chromiumPath); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is missing: CI must install Debian's chromium package (.ci/run)", chromiumPath)
		}
		t.Skipf("%s is missing (apt-get install chromium): skipping the browser test", chromiumPath)
	}
	if testing.Short() {
		t.Skip("the browser test is not short")
	}
	ctx := context.Background()
	dir := t.TempDir()
	master := randomKey(t)
	db, err := store.OpenSQLite(ctx, store.Config{DataDir: dir, MasterKey: master})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	ids, err := identity.New(identity.Config{Account: account, Logger: slog.New(slog.DiscardHandler)},
		identity.Deps{AccessKeys: db, SealingKeys: db, Revocations: db, Changes: db})
	if err != nil {
		t.Fatal(err)
	}
	if err := ids.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := ids.RotateSealingKey(ctx); err != nil {
		t.Fatal(err)
	}
	key, err := ids.CreateAccessKey(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	// A live session of role app: the finding's principal, whose sessions get revoked.
	sess, token, err := ids.NewSession(identity.Claims{Principal: "arn:aws:sts::123456789012:assumed-role/app/i-0abc", Role: appARN, SessionName: "i-0abc"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.PutFinding(ctx, testFinding(t, findingID)); err != nil {
		t.Fatal(err)
	}
	if err := db.PutRiskLevel(ctx, store.RiskLevel{Principal: "arn:aws:sts::123456789012:assumed-role/app/i-0abc", Level: "high", FindingID: findingID, SetAt: time.Now()}); err != nil {
		t.Fatal(err)
	}

	auditDir := filepath.Join(dir, "audit")
	now := time.Now().UTC()
	var evs []*audit.Event
	for i := 1; i <= 6; i++ {
		code := ""
		if i%3 == 2 {
			code = "AccessDenied"
		}
		ev := gatewayEvent(i, aliceARN, code)
		ev.EventTime = now.Add(time.Duration(i-10) * time.Second)
		evs = append(evs, ev)
	}
	writeChain(t, auditDir, "gateway", evs...)
	signer, err := keys.DeriveEd25519(master, keys.AuditLegacy)
	if err != nil {
		t.Fatal(err)
	}
	consoleLog, err := audit.Open(audit.Config{Dir: auditDir, Chain: "console", Signer: signer})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { consoleLog.Close() })

	spec := loadSpec(t)
	h, err := New(Config{Spec: func() *config.Spec { return spec }, Store: db, Identity: ids, AuditDir: auditDir,
		Auditor: consoleLog, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewTLSServer(h)
	t.Cleanup(srv.Close)

	alloc, cancelAlloc := chromedp.NewExecAllocator(ctx,
		chromedp.ExecPath(chromiumPath),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1400, 1000),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		// The test server's certificate is httptest's own; the console itself is served
		// with the perimeter CA's, which browsers trust through ca.pem.
		chromedp.IgnoreCertErrors,
	)
	t.Cleanup(cancelAlloc)
	bctx, cancelBrowser := chromedp.NewContext(alloc)
	t.Cleanup(cancelBrowser)
	if err := chromedp.Do(bctx); err != nil { // start the browser without a deadline
		t.Fatalf("start chromium: %v", err)
	}
	var (
		msgMu sync.Mutex
		msgs  []string
	)
	console := chromedp.Console(bctx)
	go func() {
		for m, err := range console {
			if err != nil {
				return
			}
			msgMu.Lock()
			msgs = append(msgs, string(m.Type)+": "+m.Text)
			msgMu.Unlock()
		}
	}()

	step := func(name string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		sctx, cancel := context.WithTimeout(bctx, 30*time.Second)
		defer cancel()
		if err := chromedp.Do(sctx, steps...); err != nil {
			loc, _ := chromedp.Run(bctx, chromedp.Location())
			t.Fatalf("%s: %v (at %s)", name, err, loc)
		}
	}
	text := func(sel string) string {
		t.Helper()
		sctx, cancel := context.WithTimeout(bctx, 30*time.Second)
		defer cancel()
		s, err := chromedp.Run(sctx, chromedp.Text(chromedp.CSS(sel)))
		if err != nil {
			t.Fatalf("text of %s: %v", sel, err)
		}
		return s
	}
	shots := t.ArtifactDir()
	shoot := func(name string) {
		t.Helper()
		sctx, cancel := context.WithTimeout(bctx, 30*time.Second)
		defer cancel()
		b, err := chromedp.Run(sctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatalf("screenshot %s: %v", name, err)
		}
		checkScreenshot(t, name, b)
		if err := os.WriteFile(filepath.Join(shots, name+".png"), b, 0o644); err != nil {
			t.Fatal(err)
		}
		if os.Getenv("PHANTOM_UPDATE_SCREENSHOTS") == "1" {
			if err := os.WriteFile(filepath.Join("..", "..", "docs", "console", name+".png"), b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}

	// Anonymous: every page sends the browser to sign in.
	step("open the console", chromedp.Navigate(srv.URL+"/decisions"), chromedp.WaitVisible(chromedp.ID("secretAccessKey")))
	shoot("signin")
	step("a wrong secret", chromedp.SendKeys(chromedp.ID("accessKeyId"), key.ID), chromedp.SendKeys(chromedp.ID("secretAccessKey"), "wrong"),
		chromedp.Click(chromedp.ID("signin")), chromedp.WaitVisible(chromedp.ID("error")))
	if got := text("#error"); got != errBadCredentials {
		t.Errorf("wrong secret: %q", got)
	}
	// The refused form keeps the key id and never the secret.
	if v, err := chromedp.Run(bctx, chromedp.Value(chromedp.ID("accessKeyId"))); err != nil || v != key.ID {
		t.Errorf("key id after a refusal: %q %v", v, err)
	}
	step("sign in", chromedp.SendKeys(chromedp.ID("secretAccessKey"), key.Secret),
		chromedp.Click(chromedp.ID("signin")), chromedp.WaitVisible(chromedp.CSS("svg")))
	if got := text("header .who"); !strings.Contains(got, aliceARN) {
		t.Errorf("signed in as %q", got)
	}
	if got := text("main"); !strings.Contains(got, "user alice") || !strings.Contains(got, "egress proxy") {
		t.Errorf("the picture lacks its nodes: %q", got)
	}
	shoot("overview")

	step("decisions", chromedp.Navigate(srv.URL+"/decisions"), chromedp.WaitVisible(chromedp.ID("decisions")))
	if got := text("#decisions tbody"); !strings.Contains(got, "00000000-0000-4000-8000-000000000001") || !strings.Contains(got, "ConsoleLogin") {
		t.Errorf("decisions lack the gateway's or the console's events: %q", got)
	}
	step("filter denied", chromedp.SetValue(chromedp.ID("decision"), "denied"), chromedp.Click(chromedp.ID("apply")),
		chromedp.WaitReady(chromedp.CSS(`option[value="denied"][selected]`)))
	if got := text("#decisions tbody"); !strings.Contains(got, "00000000-0000-4000-8000-000000000002") ||
		strings.Contains(got, "00000000-0000-4000-8000-000000000001") || !strings.Contains(got, "AccessDenied") {
		t.Errorf("decision=denied shows %q", got)
	}
	// The live refresh brings in a denial written after the page loaded.
	late := gatewayEvent(9, aliceARN, "AccessDenied")
	late.EventTime = time.Now().UTC()
	writeChain(t, auditDir, "gateway", late)
	step("live refresh", chromedp.WaitVisible(chromedp.Search(`//td[contains(., "00000000-0000-4000-8000-000000000009")]`)))
	shoot("decisions")

	step("findings", chromedp.Navigate(srv.URL+"/findings"), chromedp.WaitVisible(chromedp.ID("findings")))
	if got := text("#findings"); !strings.Contains(got, "InstanceCredentialExfiltration") || !strings.Contains(got, "High 8.0") {
		t.Errorf("findings list: %q", got)
	}
	shoot("findings")
	step("open the finding", chromedp.Click(chromedp.CSS(`#findings a[href="/findings/`+findingID+`"]`)), chromedp.WaitVisible(chromedp.ID("archive")))
	if got := text("#evidence"); !strings.Contains(got, "00000000-0000-4000-8000-000000000001") {
		t.Errorf("evidence: %q", got)
	}
	shoot("finding")
	step("archive", chromedp.Click(chromedp.ID("archive")), chromedp.WaitVisible(chromedp.ID("unarchive")))
	if f, err := db.GetFinding(ctx, findingID); err != nil || !f.Archived {
		t.Errorf("after Archive: archived=%v err=%v", f.Archived, err)
	}
	if _, err := ids.Resolve(ctx, sess.AccessKeyID, token); err != nil {
		t.Fatalf("the app session before the revocation: %v", err)
	}
	step("revoke", chromedp.Click(chromedp.ID("revoke")), chromedp.WaitVisible(chromedp.Search(`//div[@id="done"][contains(., "was revoked")]`)))
	if _, err := ids.Resolve(ctx, sess.AccessKeyID, token); !errors.Is(err, identity.ErrSessionRevoked) {
		t.Errorf("the app session after Revoke: %v, want ErrSessionRevoked", err)
	}
	step("evidence link", chromedp.Click(chromedp.CSS(`#evidence a`)), chromedp.WaitVisible(chromedp.ID("decisions")))
	if got := text("#decisions tbody"); !strings.Contains(got, "00000000-0000-4000-8000-000000000001") || strings.Contains(got, "00000000-0000-4000-8000-000000000003") {
		t.Errorf("the evidence link shows %q", got)
	}

	step("simulator", chromedp.Navigate(srv.URL+"/simulate"), chromedp.WaitVisible(chromedp.ID("simform")),
		chromedp.SetValue(chromedp.ID("principal"), aliceARN),
		chromedp.SetValue(chromedp.ID("resource"), apiARN+"/prod/GET/orders"),
		chromedp.SetValue(chromedp.ID("endpoint"), endpoint),
		chromedp.Click(chromedp.ID("simulate")), chromedp.WaitVisible(chromedp.ID("result")))
	if got := text("#effect"); got != "Allow" {
		t.Errorf("simulation through the endpoint: %q, want Allow", got)
	}
	if got := text("#matched"); !strings.Contains(got, "OrdersAccess") {
		t.Errorf("matched: %q", got)
	}
	shoot("simulate")

	step("sign out", chromedp.Click(chromedp.ID("signout")), chromedp.WaitVisible(chromedp.ID("secretAccessKey")))
	step("signed out", chromedp.Navigate(srv.URL+"/findings"), chromedp.WaitVisible(chromedp.ID("secretAccessKey")))

	// Every event the console wrote is in its chain.
	names := map[string]int{}
	if err := audit.ReadChain(auditDir, "console", 0, func(e audit.Entry) error {
		ev, err := e.Decode()
		if err == nil {
			names[ev.EventName]++
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"ConsoleLogin", "ArchiveFindings", "RevokeSessions", "SimulatePrincipalPolicy", "ConsoleSignOut"} {
		if names[n] == 0 {
			t.Errorf("no %s event in the console chain (%v)", n, names)
		}
	}
	msgMu.Lock()
	defer msgMu.Unlock()
	for _, m := range msgs {
		if strings.Contains(m, "Content Security Policy") || strings.Contains(m, "Refused to") || strings.HasPrefix(m, "exception") {
			t.Errorf("browser console: %s", m)
		}
	}
	t.Logf("screenshots in %s", shots)
}

// checkScreenshot: a PNG of the window's size at least, and not blank: enough distinct
// colours and enough pixels that are not the page background.
func checkScreenshot(t *testing.T, name string, b []byte) {
	t.Helper()
	img, err := png.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	bd := img.Bounds()
	if bd.Dx() < 1200 || bd.Dy() < 700 {
		t.Errorf("screenshot %s is %dx%d, want at least 1200x700", name, bd.Dx(), bd.Dy())
	}
	bg := color.RGBAModel.Convert(img.At(bd.Max.X-2, bd.Max.Y-2)).(color.RGBA)
	colors := map[color.RGBA]bool{}
	other := 0
	for y := bd.Min.Y; y < bd.Max.Y; y += 2 {
		for x := bd.Min.X; x < bd.Max.X; x += 2 {
			c := color.RGBAModel.Convert(img.At(x, y)).(color.RGBA)
			colors[c] = true
			if c != bg {
				other++
			}
		}
	}
	sampled := (bd.Dx() / 2) * (bd.Dy() / 2)
	if len(colors) < 32 {
		t.Errorf("screenshot %s has %d distinct colours: blank?", name, len(colors))
	}
	if frac := float64(other) / float64(sampled); frac < 0.03 {
		t.Errorf("screenshot %s: only %.1f%% of pixels differ from the background", name, 100*frac)
	}
}
