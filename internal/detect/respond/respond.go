// Package respond owns the automatic responses to findings: it stores each finding the
// detector reports and applies the spec's detection.responses to it — revoke the
// principal's role sessions, disable its access key, raise its phantom:RiskLevel, notify a
// webhook — once per finding and action, auditing every action. It also serves the risk
// levels to the gateway (RiskLevel, gateway.RiskSource) from an in-memory snapshot.
//
// It does not detect (package detect), keep credentials (package identity) or evaluate
// policies: a raised risk level matters only through policies that test phantom:RiskLevel.
//
// Choices:
//   - Each action is recorded in the store (MarkFindingResponse) after it succeeded, so a
//     repeat of the finding (a count bump) does not apply it again, across restarts and
//     processes; an action that failed for a passing reason (store or network error) is
//     retried when the finding is next reported. The applied actions are shown in the
//     finding's service.additionalInfo.phantomResponses.
//   - revokeSessions revokes the role of an assumed-role (or role) principal: every
//     session of the role issued before now, AWS's "revoke active sessions". For an IAM
//     user it revokes the sessions Phantom's STS issued to the user (GetSessionToken
//     sessions carry the user's name where a role session carries the role's), which also
//     revokes the sessions of a role with the same name: failing closed. The user's access
//     key itself is disableAccessKey's job.
//   - disableAccessKey sets a long-term (AKIA) key Inactive; a temporary (ASIA) key cannot
//     be disabled, only its role's sessions revoked, so it is recorded as not applicable.
//   - raiseRiskLevel only raises (low < medium < high < critical); lowering is an analyst's
//     decision (the store's DeleteRiskLevel). The level is set on the finding's principal
//     ARN; RiskLevel for an assumed-role session also applies a level set on its role.
//   - notify posts the finding, wrapped as GuardDuty's EventBridge event ("detail-type":
//     "GuardDuty Finding"), to an https (or loopback http) webhook, asynchronously so
//     detection never waits: 5 s per attempt, 3 attempts with backoff, no redirects.
//   - Safe against being turned on users: an action acts only on a principal whose
//     signature verified (a finding marked claimed names an identity a request merely
//     claimed: anyone can name someone else's access key id), never on a principal of
//     detection.protectedPrincipals (a role's ARN protects its sessions), and at most
//     maxPerHour findings per response per hour (in this process); a response in mode
//     report records what it would have done and does nothing. Each refusal is audited
//     (NotApplicable, or Throttling once per finding and hour). Notify is no action on a
//     principal: it runs for claimed and protected principals too.
//   - Audit: one CloudTrail-shaped event per action, eventSource
//     "detector.phantom.amazonaws.com" (Phantom's own service, named like
//     egress.phantom.amazonaws.com; GuardDuty itself does not act on findings), eventType
//     AwsServiceEvent, eventName RevokeSessions / DisableAccessKey / RaiseRiskLevel /
//     Notify, requestParameters {findingId, findingType, severity, principal, ...},
//     errorCode on failure. Webhook URLs are audited as scheme and host only: their paths
//     often hold a secret.
package respond

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/phantom-perimeter/phantom/internal/arn"
	"github.com/phantom-perimeter/phantom/internal/audit"
	"github.com/phantom-perimeter/phantom/internal/config"
	"github.com/phantom-perimeter/phantom/internal/detect"
	"github.com/phantom-perimeter/phantom/internal/detect/export"
	"github.com/phantom-perimeter/phantom/internal/identity"
	"github.com/phantom-perimeter/phantom/internal/store"
)

// EventSource is the audit eventSource of every response action.
const EventSource = "detector.phantom.amazonaws.com"

// Audit eventNames, one per action.
const (
	EventRevokeSessions   = "RevokeSessions"
	EventDisableAccessKey = "DisableAccessKey"
	EventRaiseRiskLevel   = "RaiseRiskLevel"
	EventNotify           = "Notify"
)

// AdditionalInfoKey is the key of service.additionalInfo listing the actions applied.
const AdditionalInfoKey = "phantomResponses"

// DefaultRefreshInterval is how often Run polls the store's change counter.
const DefaultRefreshInterval = 500 * time.Millisecond

// Identity is what responses need from the identity service (*identity.Service).
type Identity interface {
	RevokeSessions(ctx context.Context, role string) (identity.Revocation, error)
	UpdateAccessKeyStatus(ctx context.Context, id, status string) error
}

// Store is what the responder needs from the store (store.Store).
type Store interface {
	PutFinding(ctx context.Context, f store.Finding) error
	ListFindings(ctx context.Context, f store.FindingFilter) ([]store.Finding, error)
	ListAuditCursors(ctx context.Context, consumer string) ([]store.AuditCursor, error)
	CommitAudit(ctx context.Context, consumer string, adv []store.CursorAdvance, findings []store.Finding) error
	MarkFindingResponse(ctx context.Context, findingID, action string, at time.Time) (bool, error)
	ListFindingResponses(ctx context.Context, findingID string) ([]string, error)
	PutRiskLevel(ctx context.Context, r store.RiskLevel) error
	ListRiskLevels(ctx context.Context) ([]store.RiskLevel, error)
	Version(ctx context.Context) (int64, error)
}

// Auditor records response actions (*audit.Log).
type Auditor interface {
	Record(ctx context.Context, ev *audit.Event) error
}

// Config configures New.
type Config struct {
	// Spec returns the current perimeter spec (its detection.responses, account, region).
	Spec func() *config.Spec
	// Identity revokes sessions and disables keys; required when a response uses them.
	Identity Identity
	Store    Store
	Auditor  Auditor
	// HTTPClient posts webhooks; nil means a client with no redirects. Its Timeout is
	// not used: each attempt has NotifyTimeout.
	HTTPClient *http.Client
	Logger     *slog.Logger
	Now        func() time.Time
	// NotifyTimeout bounds one webhook attempt (default 5 s); NotifyAttempts is how many
	// are made (default 3); NotifyBackoff is the wait before the second, doubling after
	// (default 1 s).
	NotifyTimeout  time.Duration
	NotifyAttempts int
	NotifyBackoff  time.Duration
	// MaxPendingNotifications bounds deliveries in flight (default 64); beyond it a
	// notification is dropped and audited as Throttling.
	MaxPendingNotifications int
}

// Responder stores findings and applies responses. Handle may be called from several
// goroutines; RiskLevel is lock-free.
type Responder struct {
	cfg  Config
	log  *slog.Logger
	now  func() time.Time
	http *http.Client

	mu sync.Mutex // serializes Handle: one finding's actions are decided at a time
	// rates and throttled are the rate caps' state (rate.go); guarded by mu.
	rates          map[string]*rateWindow
	throttled      map[string]time.Time
	throttlePruned time.Time
	risk           atomic.Pointer[riskView]
	// riskMu serializes snapshot writers (raise and Refresh).
	riskMu  sync.Mutex
	version atomic.Int64

	notifyCtx    context.Context
	notifyCancel context.CancelFunc
	notifyWG     sync.WaitGroup
	pending      chan struct{}
}

// New checks cfg and returns a Responder with an empty risk snapshot: call Refresh (or
// Run) to load the stored levels.
func New(cfg Config) (*Responder, error) {
	if cfg.Spec == nil {
		return nil, errors.New("respond: no spec")
	}
	if cfg.Store == nil {
		return nil, errors.New("respond: no store")
	}
	if cfg.Auditor == nil {
		return nil, errors.New("respond: no auditor: every response must be audited")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.NotifyTimeout <= 0 {
		cfg.NotifyTimeout = 5 * time.Second
	}
	if cfg.NotifyAttempts <= 0 {
		cfg.NotifyAttempts = 3
	}
	if cfg.NotifyBackoff <= 0 {
		cfg.NotifyBackoff = time.Second
	}
	if cfg.MaxPendingNotifications <= 0 {
		cfg.MaxPendingNotifications = 64
	}
	hc := cfg.HTTPClient
	if hc == nil {
		hc = &http.Client{}
	}
	// Never follow a redirect: the spec names where findings go.
	c := *hc
	c.Timeout = 0
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	r := &Responder{cfg: cfg, log: cfg.Logger, now: cfg.Now, http: &c, pending: make(chan struct{}, cfg.MaxPendingNotifications),
		rates: map[string]*rateWindow{}, throttled: map[string]time.Time{}}
	r.notifyCtx, r.notifyCancel = context.WithCancel(context.Background())
	r.risk.Store(&riskView{})
	r.version.Store(-1)
	return r, nil
}

// Close cancels webhook deliveries still in flight after ctx is done, and waits for them
// (each records its outcome).
func (r *Responder) Close(ctx context.Context) error {
	done := make(chan struct{})
	go func() { r.notifyWG.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		r.notifyCancel()
		<-done
		return ctx.Err()
	}
}

// Handle stores f (an upsert that keeps an analyst's archive) and applies every response
// of the spec that matches its type and severity, each action once per finding. The
// returned error joins the store and audit failures; an action's own failure is audited
// and logged, not returned.
func (r *Responder) Handle(ctx context.Context, f detect.Finding) error {
	if f.ID == "" {
		return errors.New("handle finding: no id")
	}
	r.mu.Lock()
	defer r.mu.Unlock()

	applied, err := r.cfg.Store.ListFindingResponses(ctx, f.ID)
	if err != nil {
		return fmt.Errorf("handle finding %s: %w", f.ID, err)
	}
	if err := r.put(ctx, f, applied); err != nil {
		return err
	}
	return r.respond(ctx, f, applied)
}

// respond applies the spec's responses to f, a stored finding, except those in applied
// (the actions recorded for it), and when it applied any rewrites the stored finding
// with the longer list. The caller holds r.mu.
func (r *Responder) respond(ctx context.Context, f detect.Finding, applied []string) error {
	spec := r.cfg.Spec()
	if spec == nil {
		return nil
	}
	var errs []error
	before := len(applied)
	for i := range spec.Detection.Responses {
		rsp := &spec.Detection.Responses[i]
		if !Matches(rsp, f) {
			continue
		}
		for _, a := range rsp.Actions {
			key := actionKey(a, rsp)
			if rsp.Mode == config.ModeReport {
				key = "report:" + key // enforcing it later is another action
			}
			if slices.Contains(applied, key) {
				continue
			}
			done, err := r.apply(ctx, spec, f, rsp, a)
			if err != nil {
				errs = append(errs, err)
			}
			if !done {
				continue
			}
			if _, err := r.cfg.Store.MarkFindingResponse(ctx, f.ID, key, r.now()); err != nil {
				errs = append(errs, fmt.Errorf("handle finding %s: record %s: %w", f.ID, key, err))
				continue
			}
			applied = append(applied, key)
		}
	}
	if len(applied) != before {
		slices.Sort(applied)
		if err := r.put(ctx, f, applied); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// put stores f with the applied actions in its additionalInfo.
func (r *Responder) put(ctx context.Context, f detect.Finding, applied []string) error {
	rec, err := record(f, applied)
	if err != nil {
		return err
	}
	if err := r.cfg.Store.PutFinding(ctx, rec); err != nil {
		return fmt.Errorf("handle finding %s: %w", f.ID, err)
	}
	return nil
}

// record is the store's record of f listing the applied actions in its additionalInfo
// (and no stale list: a finding restored from the store carries the list it had).
func record(f detect.Finding, applied []string) (store.Finding, error) {
	if len(applied) > 0 || f.Service.AdditionalInfo[AdditionalInfoKey] != nil {
		info := maps.Clone(f.Service.AdditionalInfo)
		if info == nil {
			info = map[string]any{}
		}
		if len(applied) > 0 {
			info[AdditionalInfoKey] = slices.Clone(applied)
		} else {
			delete(info, AdditionalInfoKey)
		}
		f.Service.AdditionalInfo = info
	}
	rec, err := export.ToStore(f)
	if err != nil {
		return store.Finding{}, fmt.Errorf("handle finding: %w", err)
	}
	return rec, nil
}

// Matches reports whether a response applies to a finding: its type matches the glob
// (* is any run of characters, everything else literal) and its severity is at least
// the response's minimum.
func Matches(rsp *config.Response, f detect.Finding) bool {
	return f.Severity >= rsp.MinSeverity && Glob(rsp.FindingType, f.Type)
}

// Glob matches s against pattern, where * matches any run of characters (also none) and
// every other character only itself.
func Glob(pattern, s string) bool {
	parts := strings.Split(pattern, "*")
	if len(parts) == 1 {
		return pattern == s
	}
	if !strings.HasPrefix(s, parts[0]) {
		return false
	}
	s = s[len(parts[0]):]
	last := parts[len(parts)-1]
	for _, p := range parts[1 : len(parts)-1] {
		i := strings.Index(s, p)
		if i < 0 {
			return false
		}
		s = s[i+len(p):]
	}
	return len(s) >= len(last) && strings.HasSuffix(s, last)
}

// actionKey names an action for the once-per-finding record: the action, plus what makes
// two responses' uses of it differ (the level, the webhook).
func actionKey(a config.Action, rsp *config.Response) string {
	switch a {
	case config.ActionRaiseRiskLevel:
		return string(a) + ":" + rsp.RiskLevel
	case config.ActionNotify:
		sum := sha256.Sum256([]byte(rsp.Webhook))
		return string(a) + ":" + hex.EncodeToString(sum[:6])
	}
	return string(a)
}

// outcome is an action's result for the audit record.
type outcome struct {
	code, message string
	response      map[string]any
}

// apply runs one action and audits it. done reports whether the action is settled
// (succeeded, or can never apply) and must not be tried again.
func (r *Responder) apply(ctx context.Context, spec *config.Spec, f detect.Finding, rsp *config.Response, a config.Action) (done bool, err error) {
	params := map[string]any{
		"findingId":   f.ID,
		"findingType": f.Type,
		"severity":    f.Severity,
		"principal":   export.Principal(f),
	}
	name := eventName(a)
	if rsp.Mode == config.ModeReport {
		params["mode"] = string(config.ModeReport)
	}
	if a != config.ActionNotify {
		// Who the action would touch: never a claimed identity, never a protected one.
		if d := f.Resource.AccessKeyDetails; d != nil && d.Claimed {
			return true, r.audit(ctx, spec, name, params, notApplicable("the finding's identity was only claimed by a request whose signature or credential did not verify: responses act only on verified principals"))
		}
		if p, ok := protected(spec, export.Principal(f)); ok {
			return true, r.audit(ctx, spec, name, params, notApplicable("principal "+export.Principal(f)+" is protected (detection.protectedPrincipals: "+p+")"))
		}
	}
	if rsp.Mode == config.ModeReport {
		return true, r.audit(ctx, spec, name, params, outcome{response: map[string]any{"applied": false, "mode": string(config.ModeReport)}})
	}
	if !r.admit(rsp, f.ID) {
		// Not done: applied when the finding repeats within the cap.
		if r.throttleOnce(rsp, f.ID, a) {
			return false, r.audit(ctx, spec, name, params, outcome{code: "Throttling",
				message: fmt.Sprintf("the response acted on %d findings in the last hour (maxPerHour); it acts on this one when it repeats within the cap", rsp.MaxPerHour)})
		}
		return false, nil
	}
	var out outcome
	switch a {
	case config.ActionRevokeSessions:
		out, done = r.revoke(ctx, f, params)
	case config.ActionDisableAccessKey:
		out, done = r.disableKey(ctx, f, params)
	case config.ActionRaiseRiskLevel:
		out, done = r.raise(ctx, f, rsp.RiskLevel, params)
	case config.ActionNotify:
		// Audited when the delivery finishes.
		return r.notify(spec, f, rsp.Webhook, params), nil
	default:
		out, done = outcome{code: "InvalidAction", message: fmt.Sprintf("unknown response action %q", a)}, true
	}
	return done, r.audit(ctx, spec, name, params, out)
}

// eventName is an action's audit eventName.
func eventName(a config.Action) string {
	switch a {
	case config.ActionRevokeSessions:
		return EventRevokeSessions
	case config.ActionDisableAccessKey:
		return EventDisableAccessKey
	case config.ActionRaiseRiskLevel:
		return EventRaiseRiskLevel
	case config.ActionNotify:
		return EventNotify
	}
	return string(a)
}

// protected reports whether a principal ARN is one of the spec's protected principals,
// and which pattern protects it: the ARN itself, or, for a role session, its role's ARN.
func protected(spec *config.Spec, principal string) (string, bool) {
	if principal == "" || len(spec.Detection.ProtectedPrincipals) == 0 {
		return "", false
	}
	names := []string{principal}
	if p, ok := arn.Parse(principal); ok && p.Kind == "assumed-role" {
		if role, ok := spec.Role(p.Name); ok {
			names = append(names, role.ARN)
		}
		names = append(names, "arn:aws:iam::"+p.Account+":role/"+p.Name)
	}
	for _, pat := range spec.Detection.ProtectedPrincipals {
		for _, n := range names {
			if Glob(pat, n) {
				return pat, true
			}
		}
	}
	return "", false
}

func (r *Responder) audit(ctx context.Context, spec *config.Spec, name string, params map[string]any, out outcome) error {
	ev := &audit.Event{
		EventVersion:       audit.EventVersion,
		UserIdentity:       audit.UserIdentity{Type: "AWSService", PrincipalID: EventSource},
		EventTime:          r.now().UTC(),
		EventSource:        EventSource,
		EventName:          name,
		AWSRegion:          spec.Region,
		SourceIPAddress:    EventSource,
		UserAgent:          EventSource,
		ErrorCode:          out.code,
		ErrorMessage:       out.message,
		RequestParameters:  params,
		ResponseElements:   out.response,
		EventType:          "AwsServiceEvent",
		ManagementEvent:    true,
		RecipientAccountID: spec.Account,
		EventCategory:      "Management",
	}
	if out.code != "" {
		r.log.Warn("finding response failed", "action", name, "finding_id", params["findingId"], "error_code", out.code, "error", out.message)
	} else {
		r.log.Info("finding response applied", "action", name, "finding_id", params["findingId"], "principal", params["principal"])
	}
	if err := r.cfg.Auditor.Record(ctx, ev); err != nil {
		r.log.Error("audit finding response", "action", name, "finding_id", params["findingId"], "err", err)
		return fmt.Errorf("audit %s for finding %v: %w", name, params["findingId"], err)
	}
	return nil
}

func notApplicable(msg string) outcome { return outcome{code: "NotApplicable", message: msg} }

func failure(err error) (outcome, bool) {
	if errors.Is(err, store.ErrNotFound) {
		return outcome{code: "NoSuchEntity", message: err.Error()}, true
	}
	return outcome{code: "InternalFailure", message: err.Error()}, false
}

func (r *Responder) revoke(ctx context.Context, f detect.Finding, params map[string]any) (outcome, bool) {
	role, ok := RoleName(export.Principal(f))
	if !ok {
		return notApplicable("the finding names no role or user whose sessions could be revoked"), true
	}
	params["roleName"] = role
	if r.cfg.Identity == nil {
		return outcome{code: "InternalFailure", message: "no identity service configured"}, false
	}
	rev, err := r.cfg.Identity.RevokeSessions(ctx, role)
	if err != nil {
		return failure(err)
	}
	return outcome{response: map[string]any{"roleName": rev.Role, "tokenIssueTimeBefore": rev.Before.UTC().Format(time.RFC3339Nano)}}, true
}

func (r *Responder) disableKey(ctx context.Context, f detect.Finding, params map[string]any) (outcome, bool) {
	var id string
	if d := f.Resource.AccessKeyDetails; d != nil {
		id = d.AccessKeyID
	}
	params["accessKeyId"] = id
	if !strings.HasPrefix(id, "AKIA") {
		return notApplicable("only long-term (AKIA) access keys can be disabled; revoke a temporary key's sessions instead"), true
	}
	if r.cfg.Identity == nil {
		return outcome{code: "InternalFailure", message: "no identity service configured"}, false
	}
	if err := r.cfg.Identity.UpdateAccessKeyStatus(ctx, id, store.StatusInactive); err != nil {
		return failure(err)
	}
	return outcome{response: map[string]any{"accessKeyId": id, "status": store.StatusInactive}}, true
}

// RoleName returns the name whose sessions revokeSessions revokes for a principal ARN:
// the role of an assumed-role session (arn:aws:sts::A:assumed-role/ROLE/SESSION) or of
// a role ARN (arn:aws:iam::A:role/PATH/ROLE), or an IAM user's name
// (arn:aws:iam::A:user/PATH/NAME), whose GetSessionToken sessions carry it.
func RoleName(principal string) (string, bool) {
	p, ok := arn.Parse(principal)
	if !ok {
		return "", false
	}
	switch p.Kind {
	case "assumed-role", "role", "user":
		return p.Name, p.Name != ""
	}
	return "", false
}
