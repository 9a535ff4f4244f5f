package detect

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/phantom-perimeter/phantom/internal/audit"
	"github.com/phantom-perimeter/phantom/internal/config"
	"github.com/phantom-perimeter/phantom/internal/testenv"
)

// datasetsRel is the labelled evaluation set in ../shared.
const datasetsRel = "datasets/cloudtrail"

// sigmaRulesRel is SigmaHQ's CloudTrail rules in ../shared.
const sigmaRulesRel = "datasets/sigma"

// evalDir returns the evaluation set; without ../shared the test is skipped.
func evalDir(t *testing.T) string {
	t.Helper()
	return testenv.Shared(t, datasetsRel)
}

// ordinaryUA replaces every user agent in the second evaluation run: what a real attacker
// sends (the AWS CLI v2 on Linux), not the attack tool's name.
const ordinaryUA = "aws-cli/2.17.20 md/awscrt#0.20.11 ua/2.0 os/linux#6.5.0-1022-aws md/arch#x86_64 lang/python#3.11.9 md/pyimpl#CPython cfg/retry-mode#standard md/installer#exe md/distrib#ubuntu.22 md/prompt#off"

// unit is one malicious (or benign) principal of one case.
type unit struct {
	file, principal string
	ip              string // when set, only findings whose remote IP is this count
}

// named returns the findings naming u.
func named(fs []Finding, u unit) []Finding {
	var out []Finding
	for _, f := range fs {
		k := f.Resource.AccessKeyDetails
		if k == nil || (k.PrincipalARN != u.principal && k.AccessKeyID != u.principal) {
			continue
		}
		if u.ip != "" {
			a := f.Service.Action.AWSAPICallAction
			if a == nil || a.RemoteIPDetails == nil || a.RemoteIPDetails.IPAddressV4 != u.ip {
				continue
			}
		}
		out = append(out, f)
	}
	return out
}

// flagged reports whether findings name u, and with which finding types.
func flagged(fs []Finding, u unit, skipPenTest bool) []string {
	var types []string
	for _, f := range named(fs, u) {
		if skipPenTest && f.Type == TypePenTest {
			continue
		}
		types = append(types, f.Type)
	}
	sort.Strings(types)
	return compact(types)
}

func compact(s []string) []string {
	var out []string
	for i, x := range s {
		if i == 0 || s[i-1] != x {
			out = append(out, x)
		}
	}
	return out
}

// evalConfig is one run of the evaluation.
type evalConfig struct {
	cfg       Config
	replaceUA bool
}

func runFiles(t *testing.T, ec evalConfig, files ...string) []Finding {
	t.Helper()
	d, err := New(ec.cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		rep, err := ReadEvents(f, func(ev *audit.Event) error {
			if ec.replaceUA {
				ev.UserAgent = ordinaryUA
			}
			d.Observe(ev)
			return nil
		})
		if err != nil || len(rep.Problems) > 0 {
			t.Fatalf("%s: %v %v", f, err, rep.Problems)
		}
	}
	return d.Findings()
}

// stratusTactic is the ATT&CK tactic of a Stratus technique id (aws.<tactic>.<name>),
// spelled as finding types spell tactics.
func stratusTactic(technique string) string {
	parts := strings.SplitN(technique, ".", 3)
	if len(parts) < 2 {
		return ""
	}
	var b strings.Builder
	for _, w := range strings.Split(parts[1], "-") {
		b.WriteString(strings.ToUpper(w[:1]) + w[1:])
	}
	return b.String()
}

// sameTactic treats ATT&CK v18's split of Defense Evasion (Stealth, Defense Impairment)
// as the one tactic Stratus files the techniques under.
func sameTactic(got, want string) bool {
	norm := func(s string) string {
		switch s {
		case "Stealth", "DefenseImpairment":
			return "DefenseEvasion"
		}
		return s
	}
	return norm(got) == norm(want)
}

// techniqueRow is one Stratus technique's result.
type techniqueRow struct {
	technique, tactic string
	flagged           bool
	principals        []string // flagged principals
	tactics           []string // tactics of their findings, highest severity first
	rightTactic       bool     // some finding naming a principal carries the tactic
	rightPrimary      bool     // the most severe one does
}

type evalReport struct {
	rows                  []techniqueRow
	units, hit, noPenTest int
	benign, fp            int
	otrf, panther         bool
}

func (r evalReport) techniques() (flagged, right int) {
	flagged, right, _ = r.tactics()
	return flagged, right
}

// tactics counts the flagged techniques, those with a finding of their tactic, and those
// whose most severe finding has it.
func (r evalReport) tactics() (flagged, right, primary int) {
	for _, row := range r.rows {
		if row.flagged {
			flagged++
			if row.rightTactic {
				right++
			}
			if row.rightPrimary {
				primary++
			}
		}
	}
	return flagged, right, primary
}

// evaluate runs the detector over the labelled real CloudTrail logs (README.md of the set)
// and scores it: per Stratus technique, whether a finding names one of its principals and
// whether that principal's findings carry the technique's tactic; the OTRF stolen session;
// the Panther root compromises; the benign principals next to them.
func evaluate(t *testing.T, dir string, ec evalConfig) evalReport {
	t.Helper()
	var r evalReport
	var labels []struct {
		File       string         `json:"file"`
		Technique  string         `json:"technique_id"`
		Principals map[string]int `json:"malicious_principals"`
	}
	data, err := os.ReadFile(filepath.Join(dir, "stratus-red-team/labels.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &labels); err != nil {
		t.Fatal(err)
	}
	for _, l := range labels {
		fs := runFiles(t, ec, filepath.Join(dir, "stratus-red-team", l.File))
		row := techniqueRow{technique: l.Technique, tactic: stratusTactic(l.Technique)}
		for p := range l.Principals {
			r.units++
			mine := named(fs, unit{principal: p})
			if len(mine) > 0 {
				r.hit++
				row.flagged = true
				row.principals = append(row.principals, p)
			}
			if len(flagged(fs, unit{principal: p}, true)) > 0 {
				r.noPenTest++
			}
			sort.SliceStable(mine, func(i, j int) bool { return mine[i].Severity > mine[j].Severity })
			if len(mine) > 0 && sameTactic(Tactic(mine[0]), row.tactic) {
				row.rightPrimary = true
			}
			for _, f := range mine {
				tac := Tactic(f)
				if tac != "" && !slices.Contains(row.tactics, tac) {
					row.tactics = append(row.tactics, tac)
				}
				if sameTactic(tac, row.tactic) {
					row.rightTactic = true
				}
			}
		}
		sort.Strings(row.principals)
		r.rows = append(r.rows, row)
		if strings.Contains(l.File, "ec2-steal-instance-credentials") {
			s := "arn:aws:sts::017622104382:assumed-role/stratus-red-team-ec2-steal-credentials-role/i-786a3A8B5C0d92eF4"
			if !slices.Contains(flagged(fs, unit{principal: s}, true), TypeExfilOutside) {
				t.Errorf("steal-instance-credentials: no %s for %s", TypeExfilOutside, s)
			}
		}
	}

	// OTRF: the stolen instance session, next to a benign console user and EC2's
	// credential delivery.
	fs := runFiles(t, ec, filepath.Join(dir, "otrf-security-datasets/ec2_proxy_s3_exfiltration/ec2_proxy_s3_exfiltration_2020-09-14011940.json"))
	mal := "arn:aws:sts::123456789123:assumed-role/MordorNginxStack-BankingWAFRole-9S3E0UAE1MM0/i-0317f6c6b66ae9c40"
	types := flagged(fs, unit{principal: mal}, false)
	r.units++
	if len(types) > 0 {
		r.hit++
		r.noPenTest++
		r.otrf = true
	}
	t.Logf("otrf stolen session %s: %s", mal, strings.Join(types, " "))
	for _, b := range []string{"arn:aws:iam::123456789123:user/pedro", "ec2.amazonaws.com"} {
		r.benign++
		if bt := flagged(fs, unit{principal: b}, false); len(bt) > 0 {
			r.fp++
			t.Logf("otrf BENIGN %s flagged: %s", b, strings.Join(bt, " "))
		}
	}

	// Panther: the same root used by its owner and by an attacker.
	r.panther = true
	for _, sc := range []struct{ name, legit, attacker, created string }{
		{"compromised-root-creds", "71.253.251.71", "92.55.146.245", "arn:aws:iam::493859302102:user/tracy_stone"},
		{"enrichment-example", "136.24.229.58", "200.58.83.179", ""},
	} {
		base := filepath.Join(dir, "panther-analysis/scenarios", sc.name)
		fs := runFiles(t, ec, filepath.Join(base, "victim_cloudtrail.jsonl"), filepath.Join(base, "attacker_cloudtrail.jsonl"))
		root := "arn:aws:iam::493859302102:root"
		mal := []unit{{principal: root, ip: sc.attacker}}
		if sc.created != "" {
			mal = append(mal, unit{principal: sc.created})
		}
		for _, u := range mal {
			r.units++
			types := flagged(fs, u, false)
			if len(types) > 0 {
				r.hit++
				r.noPenTest++
			}
			t.Logf("panther %s: %s from %s: %s", sc.name, u.principal, u.ip, strings.Join(types, " "))
		}
		// The owner's root use is a policy finding (root should not be used), not a
		// threat: counted as a false positive only for other types.
		r.benign++
		var threat []string
		for _, ty := range flagged(fs, unit{principal: root, ip: sc.legit}, false) {
			if ty != TypeRoot {
				threat = append(threat, ty)
			}
		}
		if len(threat) > 0 {
			r.fp++
			t.Logf("panther %s BENIGN owner from %s flagged: %s", sc.name, sc.legit, strings.Join(threat, " "))
		}
		var threatFromAttacker []string
		for _, ty := range flagged(fs, unit{principal: root, ip: sc.attacker}, true) {
			if ty != TypeRoot {
				threatFromAttacker = append(threatFromAttacker, ty)
			}
		}
		if len(threatFromAttacker) == 0 {
			r.panther = false
		}
	}
	return r
}

func (r evalReport) log(t *testing.T, name string) {
	t.Helper()
	t.Logf("== %s", name)
	t.Logf("%-62s %-7s %-22s %-40s %s", "technique", "flagged", "tactic (want)", "tactics of its findings", "principals flagged")
	for _, row := range r.rows {
		mark := "no"
		if row.flagged {
			mark = "yes"
		}
		want := row.tactic
		if row.flagged && !row.rightTactic {
			want += " WRONG"
		}
		t.Logf("%-62s %-7s %-22s %-40s %s", row.technique, mark, want, strings.Join(row.tactics, ","), strings.Join(row.principals, " "))
	}
	f, right, primary := r.tactics()
	t.Logf("%s: stratus techniques flagged %d/%d, right tactic %d/%d (of the most severe finding %d/%d); units %d/%d (without the attack-tool user agent rule %d); otrf stolen session %v; panther root compromise (threat findings) %v; benign flagged %d/%d",
		name, f, len(r.rows), right, f, primary, f, r.hit, r.units, r.noPenTest, r.otrf, r.panther, r.fp, r.benign)
}

// TestEvaluation runs the evaluation twice, with the default 7-day learning period: as
// the logs are, and with every user agent replaced by an ordinary AWS CLI one (a real
// attacker does not announce the tool). The second run is what issue 21 asks of
// detection that does not depend on the attacker's user agent.
func TestEvaluation(t *testing.T) {
	dir := evalDir(t)
	tl := filepath.Join(t.TempDir(), "malware-ips.txt")
	// The enrichment scenario's publisher names 200.58.83.179 as on a malware list: the
	// operator's list here.
	if err := os.WriteFile(tl, []byte("200.58.83.179\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := Config{LearningPeriod: 7 * 24 * time.Hour, ThreatLists: []config.ThreatList{{Name: "malware", File: tl}}}

	asIs := evaluate(t, dir, evalConfig{cfg: cfg})
	asIs.log(t, "as recorded")
	if f, _ := asIs.techniques(); f < 34 || asIs.hit < 42 || asIs.fp != 0 || !asIs.otrf || !asIs.panther {
		t.Errorf("as recorded: recall fell: stratus %d/35, units %d/%d, benign flagged %d, otrf %v, panther %v", f, asIs.hit, asIs.units, asIs.fp, asIs.otrf, asIs.panther)
	}

	withSigma := cfg
	withSigma.SigmaRules = testenv.Shared(t, sigmaRulesRel)
	sig := evaluate(t, dir, evalConfig{cfg: withSigma, replaceUA: true})
	sig.log(t, "user agents replaced, with SigmaHQ's CloudTrail rules")

	plain := evaluate(t, dir, evalConfig{cfg: cfg, replaceUA: true})
	plain.log(t, "user agents replaced")
	f, right := plain.techniques()
	// Issue 21's goals: >= 30/35 techniques, >= 80% of them with the right tactic, the
	// OTRF and Panther compromises still flagged, the benign principals not.
	if f < 30 || right*5 < f*4 || !plain.otrf || !plain.panther || plain.fp != 0 {
		t.Errorf("user agents replaced: techniques %d/35 (want >= 30), right tactic %d/%d (want >= 80%%), otrf %v, panther %v, benign flagged %d",
			f, right, f, plain.otrf, plain.panther, plain.fp)
	}
}
