package detect

import (
	"container/list"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"sync"
	"sync/atomic"
	"time"

	"github.com/phantom-perimeter/phantom/internal/audit"
	"github.com/phantom-perimeter/phantom/internal/config"
	"github.com/phantom-perimeter/phantom/internal/detect/sigma"
)

// Defaults for Config's bounds.
const (
	DefaultMaxPrincipals = 100_000
	DefaultMaxFindings   = 100_000
	maxEvidence          = 20
)

// Config is the detector's configuration.
type Config struct {
	Account string
	Region  string
	// LearningPeriod is how long after a principal's first event its baseline only
	// learns; nothing is scored as anomalous before. Zero scores from the first event
	// (every first call of a sensitive API is then new); negative is an error.
	LearningPeriod time.Duration
	// ThreatLists are files of malicious addresses/CIDRs; see SetThreatLists.
	ThreatLists []config.ThreatList
	// AdminUsers are IAM user names (or ARNs) whose long-term access keys (AKIA…) are
	// administrator keys: any use raises Policy:IAMUser/AdminLongTermKeyUsage.
	// CloudTrail carries no policy, so the list is the operator's.
	AdminUsers []string
	// SigmaRules is a directory of Sigma rules for AWS CloudTrail (SigmaHQ's, the
	// operator's) run on every event; see SetSigmaRules. Empty: none.
	SigmaRules string
	// PeerGroups maps a user's or role's ARN to its peer group, whose habits stand in
	// for its own while it has none (see PeerGroups(spec)); principals not in it are
	// grouped by IAM path.
	PeerGroups map[string]string
	// MaxPrincipals bounds each kind of per-principal, per-key and per-address state
	// (least recently used dropped first); MaxFindings bounds open findings.
	MaxPrincipals int
	MaxFindings   int
	// Now is the clock for CreatedAt/UpdatedAt (event times come from the events).
	Now func() time.Time
}

// Detector runs the rules over CloudTrail events and keeps deduplicated findings.
// Observe is safe for concurrent use (one mutex; the rules do no I/O).
type Detector struct {
	cfg     Config
	threats atomic.Pointer[threatSet]
	sigma   atomic.Pointer[loadedSigma]
	admins  map[string]bool

	mu        sync.Mutex
	baselines *lru[*baseline]      // baseline key (role for sessions) -> baseline
	peers     *lru[*groupBaseline] // peer group -> what its principals call
	accounts  *lru[*groupBaseline] // account -> what its principals call
	trails    *lru[*trail]         // principal -> recent discovery calls
	bulk      *lru[*window]        // principal -> secret and parameter names read
	sensitive *sensitiveIndex
	peerGen   uint64             // bumped when the operator's peer groups change
	denied    *lru[*window]      // principal -> access-denied window
	sigFail   *lru[*window]      // "k:"+key or "ip:"+address -> signature failures
	instances *lru[*instSession] // instance session ARN -> where it was first used
	ipUsers   *lru[string]       // source address -> last long-term-key principal from it
	findings  *lru[*Finding]     // id -> finding
	uaTools   map[string]string  // user agent -> attack tool named in it ("" none)
	ids       map[idKey]*idRef   // finding ids worked out
	// sigmaMatch is the Sigma rules' scratch space, kept from event to event.
	sigmaMatch sigma.Matcher
}

// New validates cfg, loads the threat lists and returns a detector.
func New(cfg Config) (*Detector, error) {
	if cfg.LearningPeriod < 0 {
		return nil, errors.New("detect: negative learning period")
	}
	if cfg.MaxPrincipals <= 0 {
		cfg.MaxPrincipals = DefaultMaxPrincipals
	}
	if cfg.MaxFindings <= 0 {
		cfg.MaxFindings = DefaultMaxFindings
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	d := &Detector{
		cfg:       cfg,
		admins:    make(map[string]bool),
		uaTools:   make(map[string]string),
		ids:       make(map[idKey]*idRef),
		baselines: newLRU[*baseline](cfg.MaxPrincipals),
		peers:     newLRU[*groupBaseline](cfg.MaxPrincipals),
		accounts:  newLRU[*groupBaseline](cfg.MaxPrincipals),
		trails:    newLRU[*trail](cfg.MaxPrincipals),
		bulk:      newLRU[*window](cfg.MaxPrincipals),
		sensitive: newSensitiveIndex(),
		denied:    newLRU[*window](cfg.MaxPrincipals),
		sigFail:   newLRU[*window](cfg.MaxPrincipals),
		instances: newLRU[*instSession](cfg.MaxPrincipals),
		ipUsers:   newLRU[string](cfg.MaxPrincipals),
		findings:  newLRU[*Finding](cfg.MaxFindings),
	}
	for _, u := range cfg.AdminUsers {
		d.admins[u] = true
	}
	if err := d.SetThreatLists(cfg.ThreatLists); err != nil {
		return nil, err
	}
	if _, err := d.SetSigmaRules(cfg.SigmaRules); err != nil {
		return nil, err
	}
	return d, nil
}

// SetSigmaRules loads the Sigma rules under dir ("" for none) and swaps them in whole.
// Rules that do not load are listed in the returned set's Problems (the others are
// used); the error is for a directory that cannot be read, and then the old rules stay.
func (d *Detector) SetSigmaRules(dir string) (*sigma.Set, error) {
	s := &sigma.Set{}
	if dir != "" {
		var err error
		if s, err = sigma.Load(dir); err != nil {
			return nil, fmt.Errorf("detect: %w", err)
		}
	}
	d.sigma.Store(newLoadedSigma(s))
	d.mu.Lock()
	d.cfg.SigmaRules = dir
	d.mu.Unlock()
	return s, nil
}

// SigmaRules is the loaded Sigma rule set (never nil).
func (d *Detector) SigmaRules() *sigma.Set { return d.sigma.Load().set }

// SetThreatLists loads lists and swaps them in whole: Observe sees either the old or the
// new set, never a mix. On error the old set stays.
func (d *Detector) SetThreatLists(lists []config.ThreatList) error {
	s, err := loadThreatLists(lists)
	if err != nil {
		return err
	}
	d.threats.Store(s)
	d.mu.Lock()
	d.cfg.ThreatLists = lists
	d.mu.Unlock()
	return nil
}

// Reload reads the configured threat lists and Sigma rules again (files edited in
// place).
func (d *Detector) Reload() error {
	d.mu.Lock()
	lists, rules := d.cfg.ThreatLists, d.cfg.SigmaRules
	d.mu.Unlock()
	if err := d.SetThreatLists(lists); err != nil {
		return err
	}
	_, err := d.SetSigmaRules(rules)
	return err
}

// Findings returns a copy of every open finding, in no particular order.
func (d *Detector) Findings() []Finding {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]Finding, 0, d.findings.len())
	for e := d.findings.order.Back(); e != nil; e = e.Prev() {
		out = append(out, copyFinding(e.Value.(*lruEntry[*Finding]).val))
	}
	return out
}

// Restore loads findings an earlier run stored (newest first, as the store lists them),
// so a repeat after a restart continues a finding's count, first-seen time and evidence
// instead of starting it again at 1 and overwriting the stored one. A finding the
// detector already holds is kept; past MaxFindings the oldest are dropped. Baselines
// and windows are not restored: they are rebuilt from the events that follow.
func (d *Detector) Restore(fs []Finding) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for i := len(fs) - 1; i >= 0; i-- { // oldest first: the newest ends most recently used
		if fs[i].ID == "" {
			continue
		}
		if _, ok := d.findings.items[fs[i].ID]; ok {
			continue
		}
		f := copyFinding(&fs[i])
		d.findings.put(f.ID, &f)
	}
}

// Observe feeds one event to the rules (its time is ev.EventTime) and returns the
// findings it created or updated.
func (d *Detector) Observe(ev *audit.Event) []Finding {
	if ev == nil {
		return nil
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []Finding
	d.observe(ev, func(f *Finding) { out = append(out, copyFinding(f)) })
	return out
}

// Feed is Observe for a caller that reads the findings when it is done (Findings), such
// as a batch run over files: it copies out none of those each event changed.
func (d *Detector) Feed(ev *audit.Event) {
	if ev == nil {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.observe(ev, nil)
}

// observe runs the rules on ev and records their hits, passing each finding created or
// updated to changed (when not nil). d.mu is held.
func (d *Detector) observe(ev *audit.Event, changed func(*Finding)) {
	c := newCall(ev)
	d.rules(&c, func(h hit) {
		f := d.record(&c, h)
		if changed != nil {
			changed(f)
		}
	})
}

// hit is one rule's verdict on one event.
type hit struct {
	typ      string
	severity float64
	key      string // the rule's dedup key beyond type and principal
	title    string
	desc     string
	sigma    *sigmaMeta // a Sigma rule's hit: desc is made from it only for a new finding
	info     map[string]any
}

// record creates the finding of h or, when one with the same id exists, raises its
// count, and returns it (d's own: copy before letting go of d.mu).
func (d *Detector) record(c *call, h hit) *Finding {
	principal := c.principal
	if c.claimed {
		// A claimed identity's finding is another finding than a verified one's: its
		// count and evidence never mix with the verified principal's, and responses,
		// which act only on verified principals, never act on it.
		principal = "claimed:" + principal
	}
	ref := d.findingRef(h.typ, principal, h.key)
	id := ref.id
	now := d.cfg.Now().UTC()
	t := c.ev.EventTime.UTC()
	f, ok := (*Finding)(nil), false
	if ref.e != nil {
		f, ok = d.findings.byRef(ref.e)
	}
	if !ok {
		f, ref.e, ok = d.findings.getRef(ref.id)
	}
	if ok {
		f.Service.Count++
		if t.After(f.Service.EventLastSeen) {
			f.Service.EventLastSeen = t
		}
		if t.Before(f.Service.EventFirstSeen) {
			f.Service.EventFirstSeen = t
		}
		if h.severity > f.Severity {
			f.Severity = h.severity
		}
		f.UpdatedAt = now
		if len(f.Service.Evidence) < maxEvidence && c.ev.EventID != "" {
			f.Service.Evidence = append(f.Service.Evidence, c.ev.EventID)
		}
		// A sequence grows: its new last step joins the listed ones (a Sigma rule's
		// info is the rule's, never a sequence's).
		if steps, ok := h.info["steps"].([]string); h.sigma == nil && ok && len(steps) > 0 {
			var old []string
			switch o := f.Service.AdditionalInfo["steps"].(type) {
			case []string:
				old = o
			case []any: // restored from the store
				for _, x := range o {
					if s, ok := x.(string); ok {
						old = append(old, s)
					}
				}
			}
			if len(old) < maxEvidence && f.Service.AdditionalInfo != nil {
				f.Service.AdditionalInfo["steps"] = append(old[:len(old):len(old)], steps[len(steps)-1])
			}
		}
		return f
	}
	account := c.ev.RecipientAccountID
	if account == "" {
		account = c.ev.UserIdentity.AccountID
	}
	if d.cfg.Account != "" {
		account = d.cfg.Account
	}
	region := d.cfg.Region
	if region == "" {
		region = c.ev.AWSRegion
	}
	info := h.info
	if h.sigma != nil {
		// A Sigma rule's info is the rule's, shared by its findings and never written
		// (record writes only a sequence's steps, in the sequence's own map).
		h.desc = h.sigma.describe(c)
	} else {
		info = maps.Clone(h.info) // the finding's own: a sequence's steps grow in it
	}
	f = &Finding{
		SchemaVersion: "2.0",
		AccountID:     account,
		Region:        region,
		Partition:     "aws",
		ID:            id,
		ARN:           "arn:aws:guardduty:" + region + ":" + account + ":detector/phantom/finding/" + id,
		Type:          h.typ,
		Title:         h.title,
		Description:   h.desc,
		Severity:      h.severity,
		CreatedAt:     now,
		UpdatedAt:     now,
		Resource: Resource{
			ResourceType: "AccessKey",
			AccessKeyDetails: &AccessKeyDetails{
				AccessKeyID:  c.ev.UserIdentity.AccessKeyID,
				PrincipalID:  c.ev.UserIdentity.PrincipalID,
				UserName:     c.userName(),
				UserType:     c.ev.UserIdentity.Type,
				PrincipalARN: c.ev.UserIdentity.ARN,
				Claimed:      c.claimed,
			},
		},
		Service: Service{
			ServiceName: "guardduty",
			DetectorID:  "phantom",
			Action: Action{
				ActionType: "AWS_API_CALL",
				AWSAPICallAction: &AWSAPICallAction{
					API:         c.ev.EventName,
					ServiceName: c.ev.EventSource,
					CallerType:  "Remote IP",
					ErrorCode:   c.ev.ErrorCode,
					UserAgent:   c.ev.UserAgent,
				},
			},
			ResourceRole:   "TARGET",
			Count:          1,
			EventFirstSeen: t,
			EventLastSeen:  t,
			AdditionalInfo: info,
		},
	}
	if c.addr.IsValid() {
		r := &RemoteIPDetails{}
		if c.addr.Is4() {
			r.IPAddressV4 = c.addr.String()
		} else {
			r.IPAddressV6 = c.addr.String()
		}
		f.Service.Action.AWSAPICallAction.RemoteIPDetails = r
	} else if c.ev.SourceIPAddress != "" {
		f.Service.Action.AWSAPICallAction.CallerType = "AWS Service"
	}
	if c.ev.EventID != "" {
		f.Service.Evidence = []string{c.ev.EventID}
	}
	ref.e = d.findings.putRef(id, f)
	return f
}

// idKey is what a finding id is derived from.
type idKey struct{ typ, principal, key string }

// idRef is a finding id worked out, and a handle on its finding in d.findings when it
// was last found or made there (nil before; stale once evicted, see lru.byRef).
type idRef struct {
	id string
	e  *list.Element
}

// findingRef is findingID's result remembered, with a handle on the finding: a rule
// that fires on most events (a Sigma rule for every role session) would hash twice on
// every one, and look up its finding by id. Bounded: cleared when full.
func (d *Detector) findingRef(typ, principal, key string) *idRef {
	k := idKey{typ, principal, key}
	if r, ok := d.ids[k]; ok {
		return r
	}
	if len(d.ids) >= d.cfg.MaxFindings {
		clear(d.ids)
	}
	r := &idRef{id: findingID(typ, principal, key)}
	d.ids[k] = r
	return r
}

// findingID is GuardDuty-like: 32 hex characters, derived from what the finding is
// about so a repeat (and a rerun over the same logs) gets the same id.
func findingID(typ, principal, key string) string {
	h := sha256.New()
	h.Write([]byte(typ))
	h.Write([]byte{0})
	h.Write([]byte(principal))
	h.Write([]byte{0})
	h.Write([]byte(key))
	var sum [sha256.Size]byte
	return hex.EncodeToString(h.Sum(sum[:0])[:16])
}

func copyFinding(f *Finding) Finding {
	out := *f
	if f.Resource.AccessKeyDetails != nil {
		a := *f.Resource.AccessKeyDetails
		out.Resource.AccessKeyDetails = &a
	}
	if f.Service.Action.AWSAPICallAction != nil {
		a := *f.Service.Action.AWSAPICallAction
		if a.RemoteIPDetails != nil {
			r := *a.RemoteIPDetails
			a.RemoteIPDetails = &r
		}
		out.Service.Action.AWSAPICallAction = &a
	}
	out.Service.Evidence = append([]string(nil), f.Service.Evidence...)
	if f.Service.AdditionalInfo != nil {
		m := make(map[string]any, len(f.Service.AdditionalInfo))
		for k, v := range f.Service.AdditionalInfo {
			m[k] = v
		}
		out.Service.AdditionalInfo = m
	}
	return out
}
