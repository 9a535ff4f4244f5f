package mutants

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// mutant breaks one security check. find must occur exactly once in file; replace is what
// it becomes. pkg's tests matching run must notice: fail with the mutant, pass without it.
type mutant struct {
	name    string // the check, as the issue that asked for it names it
	file    string // from the repository root
	find    string
	replace string
	pkg     string // the package whose tests must kill it, from the repository root
	run     string // go test -run: the tests that guard the check (keeps the run short)
}

// mutants is the maintained list (issue 24). Each run filter names the tests that are
// known to kill the mutant; a renamed test makes the mutant survive, which fails the run.
var mutants = []mutant{
	{
		name: "sigv4 signature comparison",
		file: "internal/sigv4/verify.go",
		find: "return hmac.Equal(s.sig[:], s.want[:])", replace: "return hmac.Equal(s.sig[:], s.sig[:])",
		pkg: "internal/sigv4",
		run: "^(TestTamper|TestTamperPresigned|TestDenyHeaderForm)$",
	},
	{
		name:    "sigv4 session-token compare",
		file:    "internal/sigv4/verify.go",
		find:    "subtle.ConstantTimeCompare([]byte(cred.SessionToken), []byte(a.token)) != 1",
		replace: "subtle.ConstantTimeCompare([]byte(cred.SessionToken), []byte(cred.SessionToken)) != 1",
		pkg:     "internal/sigv4",
		run:     "^TestDenyCredentials$",
	},
	{
		name: "policy explicit-deny precedence",
		file: "internal/policy/eval.go",
		find: "if denyN > 0 {", replace: "if false && denyN > 0 {",
		pkg: "internal/policy",
		run: "^TestEvaluationLogic$",
	},
	{
		name: "gateway endpoint kind",
		file: "internal/gateway/channel.go",
		find: "if id.Kind != pki.KindEndpoint {", replace: "if false && id.Kind != pki.KindEndpoint {",
		pkg: "internal/gateway",
		run: "^TestOnlyEndpointCertificatesNameEndpoints$",
	},
	{
		name: "gateway peer-certificate expiry",
		file: "internal/gateway/channel.go",
		find: "if ok && (now.After(leaf.NotAfter) || now.Before(leaf.NotBefore)) {", replace: "if false && ok && (now.After(leaf.NotAfter) || now.Before(leaf.NotBefore)) {",
		pkg: "internal/gateway",
		run: "^TestEndpointCertificateExpiresMidConnection$",
	},
	{
		name: "gateway handover endpoint in spec",
		file: "internal/gateway/channel.go",
		find: "	ep, ok := spec.Endpoint(h.Endpoint)\n	if !ok {", replace: "	ep, ok := spec.Endpoint(h.Endpoint)\n	if ok = true; ep == nil {\n		ep = &config.Endpoint{ID: h.Endpoint}\n	}\n	if !ok {",
		pkg: "internal/endpoint",
		run: "^TestHandoverRefusals$",
	},
	{
		name: "gateway handover believes headers",
		file: "internal/gateway/channel.go",
		find: "func handedOver(r *http.Request, spec *config.Spec, h *Handover, src string, td *audit.TLSDetails, apiID *[1]string) (channel, *errClientCert) {\n", replace: "func handedOver(r *http.Request, spec *config.Spec, h *Handover, src string, td *audit.TLSDetails, apiID *[1]string) (channel, *errClientCert) {\n	if v := r.Header.Get(handoff.HeaderSourceIP); v != \"\" {\n		src = v\n	}\n",
		pkg: "internal/endpoint",
		run: "^TestHandoverRefusals$",
	},
	{
		name: "handoff socket peer uid",
		file: "internal/handoff/fd.go",
		find: "if !slices.Contains(uids, cr.UID) {", replace: "if false && !slices.Contains(uids, cr.UID) {",
		pkg: "internal/handoff",
		run: "^TestFDRefusesPeerUID$",
	},
	{
		name:    "handoff socket taken over from a serving gateway",
		file:    "internal/handoff/fd.go",
		find:    "if err == nil {\n\t\tuc.Close()\n\t\treturn fmt.Errorf(\"handoff socket %s is in use",
		replace: "if err == nil {\n\t\tuc.Close()\n\t\terr = syscall.ECONNREFUSED\n\t}\n\tif false {\n\t\treturn fmt.Errorf(\"handoff socket %s is in use",
		pkg:     "internal/handoff",
		run:     "^TestFDListenRefusesTakeover$",
	},
	{
		name: "handoff endpoint passes callers to a gateway that refused it",
		file: "internal/handoff/fd.go",
		find: "if err != nil || n != 1 || b[0] != ackAccepted {", replace: "if false && (err != nil || n != 1 || b[0] != ackAccepted) {",
		pkg: "internal/handoff",
		run: "^TestFDRefusesPeerUID$",
	},
	{
		name: "handoff passed socket contradicts the preamble",
		file: "internal/handoff/fd.go",
		find: "if src != p.Source || uint16(la.Port) != p.DstPort {", replace: "if false && (src != p.Source || uint16(la.Port) != p.DstPort) {",
		pkg: "internal/handoff",
		run: "^TestFDRefusesForgedSource$",
	},
	{
		name: "handoff tunnel peer is an endpoint",
		file: "internal/handoff/tunnel.go",
		find: "if id.Kind != pki.KindEndpoint {", replace: "if false && id.Kind != pki.KindEndpoint {",
		pkg: "internal/handoff",
		run: "^TestTunnelRefusesPeers$",
	},
	{
		name: "gateway staleness hook",
		file: "internal/gateway/serve.go",
		find: "if g.cfg.Fresh != nil {", replace: "if false && g.cfg.Fresh != nil {",
		pkg: "internal/gateway",
		run: "^TestStaleStateDenies$",
	},
	{
		name:    "identity staleness",
		file:    "internal/identity/service.go",
		find:    "if s.maxStale > 0 && s.now().Sub(time.Unix(0, s.synced.Load())) > s.maxStale {",
		replace: "if false && s.maxStale > 0 && s.now().Sub(time.Unix(0, s.synced.Load())) > s.maxStale {",
		pkg:     "internal/identity",
		run:     "^TestStaleSnapshotsFailClosed$",
	},
	{
		name:    "session token alg bound to its key (issue 26)",
		file:    "internal/identity/sealer.go",
		find:    "if version != k.version() {",
		replace: "if version == tokenVersionLegacy && k.pub != nil {",
		pkg:     "internal/identity",
		run:     "^TestTokenKeyAlgConfusion$",
	},
	{
		name: "identity revocation cutoff",
		file: "internal/identity/service.go",
		find: "snap.revoked[role]; ok && issued.Before(before)", replace: "snap.revoked[role]; ok && issued.Before(before.Add(-time.Minute))",
		pkg: "internal/identity",
		run: "^TestRevokeSessions$",
	},
	{
		name: "audit previous-hash link",
		file: "internal/audit/verify.go",
		find: "case r.Seq == v.expSeq && r.Prev != v.expPrev:", replace: "case false && r.Seq == v.expSeq && r.Prev != v.expPrev:",
		pkg: "internal/audit",
		run: "^TestEditedMiddleRecordBreaksTheLink$",
	},
	{
		name: "egress guard on names resolving to special-purpose addresses",
		file: "internal/egress/rules.go",
		find: "if !guarded && nameRule != \"\" {", replace: "if nameRule != \"\" {",
		pkg: "internal/egress",
		run: "^TestNameResolvingToDenied$",
	},
	{
		name: "egress proxy password signature check",
		file: "internal/egress/key.go",
		find: "if !ed25519.Verify(pub, passwordMessage(node, addr, b[:16]), b[16:]) {", replace: "if false && !ed25519.Verify(pub, passwordMessage(node, addr, b[:16]), b[16:]) {",
		pkg: "internal/egress",
		run: "^(TestWrongPassword|TestProxyPassword)$",
	},
	{
		name: "agent IMDS hop limit",
		file: "internal/agent/hoplimit.go",
		find: "append(lns, HopLimitListener(imds, HopLimit))", replace: "append(lns, imds)",
		pkg: "internal/agent",
		run: "^TestServeIMDSHopLimit$",
	},
	{
		name: "agent IMDS X-Forwarded-For and Forwarded refusal",
		file: "internal/agent/imds.go",
		find: "\tif proxied(r) {\n\t\t// \"IMDSv2", replace: "\tif false && proxied(r) {\n\t\t// \"IMDSv2",
		pkg: "internal/agent",
		run: "^TestIMDS$",
	},
	{
		name: "agent IMDS session-token MAC compare",
		file: "internal/agent/imds.go",
		find: "if subtle.ConstantTimeCompare(m.Sum(nil)[:tokenMACSize], b[tokenNonceSize+8:]) != 1 {", replace: "if false && subtle.ConstantTimeCompare(m.Sum(nil)[:tokenMACSize], b[tokenNonceSize+8:]) != 1 {",
		pkg: "internal/agent",
		run: "^TestIMDS$",
	},
	{
		name: "agent container token compare",
		file: "internal/agent/container.go",
		find: "if subtle.ConstantTimeCompare(got[:], want[:]) != 1 {", replace: "if false && subtle.ConstantTimeCompare(got[:], want[:]) != 1 {",
		pkg: "internal/agent",
		run: "^TestContainerEndpoint$",
	},
	{
		name:    "console CSRF origin",
		file:    "internal/console/console.go",
		find:    "if o := r.Header.Get(\"Origin\"); o != \"\" && o != \"null\" && !strings.EqualFold(o, \"https://\"+r.Host) {",
		replace: "if o := r.Header.Get(\"Origin\"); false && o != \"\" && o != \"null\" && !strings.EqualFold(o, \"https://\"+r.Host) {",
		pkg:     "internal/console",
		run:     "^TestCSRF$",
	},
	{
		name: "console CSRF token compare",
		file: "internal/console/session.go",
		find: "subtle.ConstantTimeCompare([]byte(got), []byte(s.csrf)) == 1", replace: "subtle.ConstantTimeCompare([]byte(got), []byte(s.csrf)) >= 0",
		pkg: "internal/console",
		run: "^TestCSRF$",
	},
	{
		name: "sts node API certificate kind",
		file: "internal/sts/node.go",
		find: "if id.Kind != pki.KindNode {", replace: "if false && id.Kind != pki.KindNode {",
		pkg: "internal/sts",
		run: "^TestNodeRefusals$",
	},
	// Issue 17.
	{
		name: "agent fetches fresh credentials when told its session was revoked",
		file: "internal/agent/watch.go",
		find: "case ev.Event == nodeapi.EventRefresh:", replace: "case false:",
		pkg: "internal/agent",
		run: "^TestRevocationHealsWithinTwoSeconds$",
	},
	{
		name: "agent stops serving when STS refuses the node's certificate",
		file: "internal/agent/watch.go",
		find: "return errors.As(err, &e) && e.Status == http.StatusForbidden && e.Code == codeNodeRefused", replace: "return false && errors.As(err, &e)",
		pkg: "internal/agent",
		run: "^(TestNodeRevokedBeforeWatchStopsServing|TestNodeRefusedOnRefreshStopsServing)$",
	},
	{
		name: "node revocation refuses the node's sessions",
		file: "internal/identity/service.go",
		find: "ok && issued.Before(before) || snap.nodeRevoked[node] {", replace: "ok && issued.Before(before) && false || snap.nodeRevoked[node] && false {",
		pkg: "internal/identity",
		run: "^TestRevokeNode$",
	},
	{
		name: "endpoint TLS server name binds the API",
		file: "internal/endpoint/route.go",
		find: "case sb.API != \"\" && named != \"\" && named != sb.API:", replace: "case false:",
		pkg: "internal/endpoint",
		run: "^TestSNIBindsAPI$",
	},
	{
		name: "endpoint binds the TLS server name itself when it differs from the host",
		file: "internal/endpoint/route.go",
		find: "if sni != h {", replace: "if false {",
		pkg: "internal/endpoint",
		run: "^TestSNIBindsAPI$",
	},
	{
		name: "endpoint strips caller headers in any case",
		file: "internal/endpoint/forward.go",
		find: "switch k[0] | 0x20 {", replace: "switch k[0] {",
		pkg: "internal/endpoint",
		run: "^(TestForward|TestHandoverIgnoresCallerHeaders)$",
	},
	{
		name: "egress tunnel to an endpoint checks the server name",
		file: "internal/egress/sni.go",
		find: "api, reason := p.checkServerName(q, hello.ServerName)", replace: "api, reason := q.endpoints[0].APIs[0], \"\"",
		pkg: "internal/egress",
		run: "^TestTunnelBoundToAllowedAPI$",
	},
	{
		name: "egress proxy password bound to the node's address",
		file: "internal/egress/proxy.go",
		find: "err != nil || !addr.IsValid() || src.Unmap() != addr.Unmap()", replace: "(err != nil || !addr.IsValid() || src.Unmap() != addr.Unmap()) && false",
		pkg: "internal/egress",
		run: "^TestPasswordBoundToAddress$",
	},
	{
		name: "egress refuses a proxy password issued before a revocation",
		file: "internal/egress/standing.go",
		find: "if !issued.IsZero() && st.SessionRevoked(n.Role, n.Name, issued) {", replace: "if false {",
		pkg: "internal/egress",
		run: "^TestRevokeSessionsCutsEgress$",
	},
	{
		name: "egress refuses an expired proxy password",
		file: "internal/egress/proxy.go",
		find: "if !p.now().Before(expires) {", replace: "if false {",
		pkg: "internal/egress",
		run: "^TestExpiredPasswordRefused$",
	},
	{
		name: "egress refuses on stale perimeter state",
		file: "internal/egress/proxy.go",
		find: "if p.cfg.Fresh != nil {", replace: "if false {",
		pkg: "internal/egress",
		run: "^TestStaleStateRefuses$",
	},
	{
		name: "egress rules stop at their maxRiskLevel",
		file: "internal/egress/rules.go",
		find: "if risk > bound {", replace: "if false {",
		pkg: "internal/egress",
		run: "^TestRiskRaiseCutsEgress$",
	},
	{
		name: "backend assertion replay cache",
		file: "internal/gateway/verify.go",
		find: "if _, dup := v.seen[a.ID]; dup {", replace: "if false {",
		pkg: "internal/gateway",
		run: "^TestCapturedAssertionReplayed$",
	},
	{
		name: "backend assertion bound to the query",
		file: "internal/gateway/verify.go",
		find: "case a.Query != query:", replace: "case false:",
		pkg: "internal/gateway",
		run: "^TestCapturedAssertionReplayed$",
	},
	{
		name: "gateway closes the connection after a cut body",
		file: "internal/gateway/serve.go",
		find: "\t\th.Set(\"Connection\", \"close\")\n", replace: "",
		pkg: "internal/gateway",
		run: "^TestCutBodyClosesConnection$",
	},
	{
		name: "endpoint closes the caller's connection after a cut body",
		file: "internal/endpoint/forward.go",
		find: "\tif r.ProtoMajor == 1 {\n\t\tw = closingWriter{w, b}\n\t}\n", replace: "",
		pkg: "internal/gateway",
		run: "^TestCutBodyClosesConnection$",
	},
	// Issue 19: raw tunnels, the caller's bytes after its ClientHello outside the tunnel's TLS.
	{
		name: "raw tunnel without the guard on its stream",
		file: "internal/handoff/records.go",
		find: "if gerr := c.g.check(b[:n]); gerr != nil {", replace: "if gerr := c.g.check(nil); gerr != nil {",
		pkg: "internal/handoff",
		run: "^TestRawTunnelGuardsTheHandshake$",
	},
	{
		name: "raw tunnel served on the gateway's own group preferences",
		file: "internal/handoff/handoff.go",
		find: "\tif c.groups == nil {\n\t\treturn base\n\t}", replace: "\treturn base",
		pkg: "internal/handoff",
		run: "^TestRawTunnel$",
	},
	{
		name: "raw tunnel's preamble read with TLS reading ahead",
		file: "internal/handoff/tunnel.go",
		find: "ex := &exactConn{Conn: raw, exact: true}", replace: "ex := &exactConn{Conn: raw}",
		pkg: "internal/handoff",
		run: "^TestRawTunnelKeepsBytesAfterPreamble$",
	},
	// Issue 19: HS256 assertions under a key per API.
	{
		name: "assertion alg pinned by the verifier",
		file: "internal/gateway/assertion.go",
		find: "if hdr.Alg != vk.alg {", replace: "if false {",
		pkg: "internal/gateway",
		run: "^TestHS256Refusals$",
	},
	{
		name: "assertion HS256 MAC checked",
		file: "internal/gateway/assertion.go",
		find: "if !hmac.Equal(m.Sum(nil), sig) {", replace: "if false {",
		pkg: "internal/gateway",
		run: "^TestHS256Refusals$",
	},
	{
		name: "assertion head made for the call's identity",
		file: "internal/gateway/assertionhead.go",
		find: "if h := sl.p.Load(); h != nil && h.signer == s && h.claims == c {", replace: "if h := sl.p.Load(); h != nil {",
		pkg: "internal/gateway",
		run: "^TestSignHeadMatchesSign$",
	},
	{
		name: "responses never act on a claimed identity",
		file: "internal/detect/respond/respond.go",
		find: "if d := f.Resource.AccessKeyDetails; d != nil && d.Claimed {", replace: "if false {",
		pkg: "internal/detect/respond",
		run: "^TestClaimedIdentityNeverActedOn$",
	},
	// Issue 27: people's short-lived credentials.
	{
		name: "gateway refusal of long-term keys",
		file: "internal/gateway/serve.go",
		find: "if c.claims == nil && cl.m.route.LongTermKeys == config.LongTermKeysRefuse {", replace: "if false && c.claims == nil && cl.m.route.LongTermKeys == config.LongTermKeysRefuse {",
		pkg: "internal/gateway",
		run: "^TestLongTermKeysRefused$",
	},
	{
		name:    "MFA code taken once (the store's compare-and-set)",
		file:    "internal/store/mfa.go",
		find:    "AND user_name <> '' AND last_step < ?`, step, serial, user, step)",
		replace: "AND user_name <> ''`, step, serial, user)",
		pkg:     "internal/store",
		run:     "^TestSQLiteContract$",
	},
	{
		name:    "MFA code compare",
		file:    "internal/mfa/totp.go",
		find:    "eq := subtle.ConstantTimeCompare([]byte(Code(seed, s)), []byte(code))",
		replace: "eq := subtle.ConstantTimeCompare([]byte(Code(seed, s)), []byte(Code(seed, s)))",
		pkg:     "internal/mfa",
		run:     "^TestVerify$",
	},
	{
		name: "STS MFA only for IAM users",
		file: "internal/sts/mfa.go",
		find: "if u == nil {", replace: "if false && u == nil {",
		pkg: "internal/sts",
		run: "^TestMFARefusals$",
	},
	{
		name:    "console SSO state bound to the browser",
		file:    "internal/console/sso.go",
		find:    "if c := cookieValue(r, ssoCookie); c == \"\" || subtle.ConstantTimeCompare([]byte(c), []byte(state)) != 1 {",
		replace: "if false {",
		pkg:     "internal/console",
		run:     "^TestSSOLoginCSRF$",
	},
	{
		name: "console key sign-in switch",
		file: "internal/console/signin.go",
		find: "if h.cfg.Spec().Console.KeySignIn == config.KeySignInRefuse {", replace: "if false {",
		pkg: "internal/console",
		run: "^TestKeySignInRefused$",
	},
	{
		name:    "a new issuing CA is the current one (issue 26: rotations within a second)",
		file:    "internal/pki/authority.go",
		find:    "if min := last.Add(backdate + time.Second); n.Before(min) {",
		replace: "if min := last.Add(backdate + time.Second); false && n.Before(min) {",
		pkg:     "internal/pki",
		run:     "^TestAuthorityRotationsInOneSecond$",
	},
	{
		name:    "a retired storage key generation opens nothing (issue 26)",
		file:    "internal/store/seal.go",
		find:    "if st.retired[pg] {",
		replace: "if false {",
		pkg:     "internal/store",
		run:     "^TestStorageKeyRotation$",
	},
	{
		name:    "component store roles delete no revocation (issue 26; PostgreSQL)",
		file:    "internal/store/roles.go",
		find:    "`SELECT, INSERT ON audit_chains, audit_anchors, audit_signers`,",
		replace: "`SELECT, INSERT ON audit_chains, audit_anchors, audit_signers`, `DELETE ON revocations`,",
		pkg:     "internal/store",
		run:     "^TestPostgresComponentRoles$",
	},
	{
		name:    "only the store's owner enables a disabled key (issue 26; PostgreSQL)",
		file:    "internal/store/migrations/postgres/0007_component_roles.sql",
		find:    "IF OLD.status = 'Inactive' AND NEW.status = 'Active' AND NOT pg_has_role(",
		replace: "IF false AND NOT pg_has_role(",
		pkg:     "internal/store",
		run:     "^TestPostgresComponentRoles$",
	},
	// Issue 20: console replicas share sessions and the sign-in limiter in the store.
	{
		name:    "console sign-out ends the session in the store (issue 20)",
		file:    "internal/console/signin.go",
		find:    "\tif err := h.sessions.remove(r.Context(), s); err != nil {\n\t\t// Not signed out",
		replace: "\tif err := error(nil); err != nil {\n\t\t// Not signed out",
		pkg:     "internal/console",
		run:     "^TestReplicasShareSessions$",
	},
	{
		name:    "console idle timeout across replicas (issue 20)",
		file:    "internal/console/session.go",
		find:    "if !now.Before(cs.ExpiresAt) || now.Sub(cs.LastSeen) >= t.idle {",
		replace: "if !now.Before(cs.ExpiresAt) {",
		pkg:     "internal/console",
		run:     "^TestReplicasShareSessions$",
	},
	{
		name:    "console sign-in limiter refuses a spent address (issue 20)",
		file:    "internal/console/limiter.go",
		find:    "case k.pace == 0:",
		replace: "case false:",
		pkg:     "internal/console",
		run:     "^TestReplicasShareLimiter$",
	},
	{
		name:    "console store role writes a session once (issue 20; PostgreSQL)",
		file:    "internal/store/roles.go",
		find:    "`SELECT, INSERT, DELETE, UPDATE (last_seen) ON console_sessions`,",
		replace: "`SELECT, INSERT, DELETE, UPDATE ON console_sessions`,",
		pkg:     "internal/store",
		run:     "^TestPostgresComponentRoles$",
	},
	{
		name:    "stream records checked against the audit anchors (issue 20)",
		file:    "internal/detect/consume/stream.go",
		find:    `case want != "" && want != r.Hash:`,
		replace: `case false && want != r.Hash:`,
		pkg:     "internal/detect/consume",
		run:     "^TestStreamRecordContradictingAnchorIsRefused$",
	},
	// Issue 19: the data path's caches and shortcuts.
	{
		name:    "opened session token cache honours expiry and the key ring (issue 19)",
		file:    "internal/identity/sealer.go",
		find:    "k != nil && k.aead == e.aead && !retired(k, now) && now.Before(e.claims.Expires) {",
		replace: "k != nil || now.IsZero() {",
		pkg:     "internal/identity",
		run:     "^(TestOpenSharedExpiry|TestOpenSharedKeyGone)$",
	},
	{
		name:    "cached session tokens still checked for revocation (issue 19)",
		file:    "internal/identity/service.go",
		find:    "	if snap.revokedSession(c.RoleName(), c.Node, c.IssuedAt) {\n		return c, ErrSessionRevoked",
		replace: "	if c.Principal == \"\" && snap.revokedSession(c.RoleName(), c.Node, c.IssuedAt) {\n		return c, ErrSessionRevoked",
		pkg:     "internal/gateway",
		run:     "^TestCachedSessionToken$",
	},
	{
		name:    "gateway decision keys in lower case (issue 19)",
		file:    "internal/gateway/authz.go",
		find:    "	if !b.canonical {\n		name = strings.ToLower(name)\n	}\n	b.setName(name, v)",
		replace: "	b.setName(name, v)",
		pkg:     "internal/gateway",
		run:     "^TestDecisionKeysLowerCase$",
	},
	{
		name:    "sigv4 empty body's hash taken as a constant (issue 19)",
		file:    "internal/sigv4/verify.go",
		find:    "	if len(body) == 0 {\n		copy(bodyHash[:], emptyPayloadHash)",
		replace: "	if len(body) >= 0 {\n		copy(bodyHash[:], emptyPayloadHash)",
		pkg:     "internal/sigv4",
		run:     "^(TestPayloadHash|TestPresignedBodyMustBeSigned)$",
	},
	{
		name:    "gateway override headers stripped (issue 19)",
		file:    "internal/gateway/headers.go",
		find:    "return len(name) < len(overrideLengths) && overrideLengths[len(name)] && overrideHeaders",
		replace: "return len(name) < len(overrideLengths) && !overrideLengths[len(name)] && overrideHeaders",
		pkg:     "internal/gateway",
		run:     "^TestHostileOverrideHeaders$",
	},
	{
		name:    "gateway backend timeout (issue 19)",
		file:    "internal/gateway/serve.go",
		find:    "defer g.disarm(g.armTimeout(cl, t))",
		replace: "_ = t",
		pkg:     "internal/gateway",
		run:     "^(TestBackendTimeout|TestBackendTimeoutTimersReused)$",
	},
	{
		name:    "glob literal jump only after a star (issue 19)",
		file:    "internal/policy/pattern.go",
		find:    "if fold == foldNone && starPi >= 0 && pi == starPi+1 {",
		replace: "if fold == foldNone && pi == starPi+1 {",
		pkg:     "internal/policy",
		run:     "^(TestGlob|FuzzGlob)$",
	},
}

// TestMutants applies each mutant to a copy of its file (go test -overlay: the tree is
// never written), runs the guarding tests, and fails unless each mutant is killed: its
// tests fail with it and pass without it. A snippet that is gone or ambiguous, a mutant
// that does not compile, and a filter that selects no test are failures too.
func TestMutants(t *testing.T) {
	if os.Getenv("PHANTOM_MUTATE") != "1" {
		t.Skip("set PHANTOM_MUTATE=1 (scripts/mutate) to run the security mutants")
	}
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("repository root: %v", err)
	}
	only := os.Getenv("PHANTOM_MUTANT") // a substring of one mutant's name, to run it alone
	baseline := map[string]bool{}       // pkg+run that passed unmutated
	start := time.Now()
	killed := 0
	for _, m := range mutants {
		if only != "" && !strings.Contains(m.name, only) {
			continue
		}
		t.Run(m.name, func(t *testing.T) {
			src, err := os.ReadFile(filepath.Join(root, m.file))
			if err != nil {
				t.Fatalf("%s: %v", m.file, err)
			}
			if n := bytes.Count(src, []byte(m.find)); n != 1 {
				t.Fatalf("%s: the snippet %q occurs %d times (want exactly once): the check was rewritten or moved; update this mutant in internal/mutants", m.file, m.find, n)
			}
			key := m.pkg + "\x00" + m.run
			if !baseline[key] {
				if out, err := goTest(t, root, m, ""); err != nil {
					t.Fatalf("the tests fail without the mutant, so they cannot judge it: %v\n%s", err, tail(out))
				}
				baseline[key] = true
			}
			mutated := filepath.Join(t.TempDir(), filepath.Base(m.file))
			if err := os.WriteFile(mutated, bytes.Replace(src, []byte(m.find), []byte(m.replace), 1), 0o644); err != nil {
				t.Fatal(err)
			}
			overlay, _ := json.Marshal(map[string]any{"Replace": map[string]string{filepath.Join(root, m.file): mutated}})
			ov := filepath.Join(t.TempDir(), "overlay.json")
			if err := os.WriteFile(ov, overlay, 0o644); err != nil {
				t.Fatal(err)
			}
			t0 := time.Now()
			out, err := goTest(t, root, m, ov)
			switch {
			case err == nil && strings.Contains(out, "no tests to run"):
				t.Fatalf("SURVIVED: -run %q selects no test in ./%s (renamed?)", m.run, m.pkg)
			case err == nil:
				t.Fatalf("SURVIVED: %s with %q instead of %q, and every test of ./%s (-run %q) passed", m.file, m.replace, m.find, m.pkg, m.run)
			case strings.Contains(out, "[build failed]") || strings.Contains(out, "[setup failed]"):
				t.Fatalf("the mutant does not compile: fix its replacement\n%s", tail(out))
			}
			killed++
			t.Logf("killed in %.1fs by %s", time.Since(t0).Seconds(), strings.Join(failedTests(out), ", "))
		})
	}
	t.Logf("%d mutants killed in %.0fs", killed, time.Since(start).Seconds())
}

// goTest runs the mutant's package tests, with the overlay when ov is not empty.
func goTest(t *testing.T, root string, m mutant, ov string) (string, error) {
	t.Helper()
	args := []string{"test", "-count=1", "-timeout", "10m"}
	if ov != "" {
		args = append(args, "-overlay", ov)
	}
	if m.run != "" {
		args = append(args, "-run", m.run)
	}
	args = append(args, "./"+m.pkg)
	ctx, cancel := context.WithTimeout(context.Background(), 11*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = root
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		return string(out), fmt.Errorf("go %s: timed out", strings.Join(args, " "))
	}
	return string(out), err
}

var failRe = regexp.MustCompile(`(?m)^\s*--- FAIL: (\S+)`)

// failedTests lists the failing tests named in go test output (a panic names none).
func failedTests(out string) []string {
	var names []string
	for _, m := range failRe.FindAllStringSubmatch(out, 8) {
		names = append(names, m[1])
	}
	if len(names) == 0 {
		return []string{"a failing run (" + firstLine(tail(out)) + ")"}
	}
	return names
}

func tail(s string) string {
	if len(s) > 4000 {
		s = "…" + s[len(s)-4000:]
	}
	return s
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	return s
}
