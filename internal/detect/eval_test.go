package detect

import (
	"encoding/json"
	"os"
	"path/filepath"
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

// evalDir returns the evaluation set; without ../shared the test is skipped.
func evalDir(t *testing.T) string {
	t.Helper()
	return testenv.Shared(t, datasetsRel)
}

// unit is one malicious (or benign) principal of one case.
type unit struct {
	file, principal string
	ip              string // when set, only findings whose remote IP is this count
}

// flagged reports whether findings name u, and with which finding types.
func flagged(fs []Finding, u unit, skipPenTest bool) []string {
	var types []string
	for _, f := range fs {
		if skipPenTest && f.Type == TypePenTest {
			continue
		}
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

func runFiles(t *testing.T, cfg Config, files ...string) []Finding {
	t.Helper()
	d, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		rep, err := ReadEvents(f, func(ev *audit.Event) error { d.Observe(ev); return nil })
		if err != nil || len(rep.Problems) > 0 {
			t.Fatalf("%s: %v %v", f, err, rep.Problems)
		}
	}
	return d.Findings()
}

type evalResult struct {
	units, hit, hitNoPenTest int
	benign, fp               int
}

// TestEvaluation runs the detector over the labelled real CloudTrail logs (README.md of
// the set) with the default 7-day learning period, prints a per-case table with -v and
// holds the recall it achieves. Stratus files are single detonations with no baseline:
// the anomaly rule only learns there, so what flags them is the signature rules
// (attack-tool user agent, CloudTrail tampering, access-denied sweeps, instance
// credential exfiltration); the learning-period-0 run shows the anomaly rule alone.
func TestEvaluation(t *testing.T) {
	dir := evalDir(t)
	tl := filepath.Join(t.TempDir(), "malware-ips.txt")
	// The enrichment scenario's publisher names 200.58.83.179 as on a malware list: the
	// operator's list here.
	os.WriteFile(tl, []byte("200.58.83.179\n"), 0o600)
	for _, lp := range []time.Duration{7 * 24 * time.Hour, 0} {
		cfg := Config{LearningPeriod: lp, ThreatLists: []config.ThreatList{{Name: "malware", File: tl}}}
		var r evalResult
		t.Logf("learning period %s", lp)
		t.Logf("%-70s %-100s %s", "case", "malicious principal", "finding types")

		// Stratus: every principal of every file is malicious.
		var labels []struct {
			File       string         `json:"file"`
			Principals map[string]int `json:"malicious_principals"`
		}
		data, err := os.ReadFile(filepath.Join(dir, "stratus-red-team/labels.json"))
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(data, &labels); err != nil {
			t.Fatal(err)
		}
		stratusCases, stratusHit := 0, 0
		for _, l := range labels {
			fs := runFiles(t, cfg, filepath.Join(dir, "stratus-red-team", l.File))
			stratusCases++
			caseHit := false
			for p := range l.Principals {
				r.units++
				types := flagged(fs, unit{principal: p}, false)
				if len(types) > 0 {
					r.hit++
					caseHit = true
				}
				if len(flagged(fs, unit{principal: p}, true)) > 0 {
					r.hitNoPenTest++
				}
				t.Logf("%-70s %-100s %s", strings.TrimSuffix(filepath.Base(l.File), ".json"), p, strings.Join(types, " "))
			}
			if caseHit {
				stratusHit++
			}
			if strings.Contains(l.File, "ec2-steal-instance-credentials") {
				s := "arn:aws:sts::017622104382:assumed-role/stratus-red-team-ec2-steal-credentials-role/i-786a3A8B5C0d92eF4"
				if !contains(flagged(fs, unit{principal: s}, true), TypeExfilOutside) {
					t.Errorf("steal-instance-credentials: no %s for %s", TypeExfilOutside, s)
				}
			}
		}

		// OTRF: the stolen instance session, next to a benign console user and EC2's
		// credential delivery.
		fs := runFiles(t, cfg, filepath.Join(dir, "otrf-security-datasets/ec2_proxy_s3_exfiltration/ec2_proxy_s3_exfiltration_2020-09-14011940.json"))
		mal := "arn:aws:sts::123456789123:assumed-role/MordorNginxStack-BankingWAFRole-9S3E0UAE1MM0/i-0317f6c6b66ae9c40"
		types := flagged(fs, unit{principal: mal}, false)
		r.units++
		if len(types) > 0 {
			r.hit++
			r.hitNoPenTest++
		}
		if !contains(types, TypeExfilOutside) {
			t.Errorf("otrf: no %s for the stolen session: %v", TypeExfilOutside, types)
		}
		t.Logf("%-70s %-100s %s", "otrf ec2_proxy_s3_exfiltration", mal, strings.Join(types, " "))
		for _, b := range []string{"arn:aws:iam::123456789123:user/pedro", "ec2.amazonaws.com"} {
			r.benign++
			if bt := flagged(fs, unit{principal: b}, false); len(bt) > 0 {
				r.fp++
				t.Logf("%-70s %-100s %s", "otrf (BENIGN)", b, strings.Join(bt, " "))
			}
		}
		if len(fs) > 0 {
			for _, f := range fs {
				if p := f.Resource.AccessKeyDetails.PrincipalARN; p != mal {
					t.Logf("  otrf other finding: %s %s", f.Type, p)
				}
			}
		}

		// Panther: the same root used by its owner and by an attacker.
		for _, sc := range []struct{ name, legit, attacker, created string }{
			{"compromised-root-creds", "71.253.251.71", "92.55.146.245", "arn:aws:iam::493859302102:user/tracy_stone"},
			{"enrichment-example", "136.24.229.58", "200.58.83.179", ""},
		} {
			base := filepath.Join(dir, "panther-analysis/scenarios", sc.name)
			fs := runFiles(t, cfg, filepath.Join(base, "victim_cloudtrail.jsonl"), filepath.Join(base, "attacker_cloudtrail.jsonl"))
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
					r.hitNoPenTest++
				}
				t.Logf("%-70s %-100s %s", "panther "+sc.name, u.principal+" from "+u.ip, strings.Join(types, " "))
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
			}
			t.Logf("%-70s %-100s %s", "panther "+sc.name+" (BENIGN owner)", root+" from "+sc.legit, strings.Join(flagged(fs, unit{principal: root, ip: sc.legit}, false), " "))
			if !contains(flagged(fs, unit{principal: root, ip: sc.attacker}, true), TypeRoot) {
				t.Errorf("panther %s: root from the attacker's address not flagged", sc.name)
			}
		}
		t.Logf("learning %s: stratus cases %d/%d; units %d/%d (without the attack-tool user agent rule %d/%d); benign flagged (threat types) %d/%d",
			lp, stratusHit, stratusCases, r.hit, r.units, r.hitNoPenTest, r.units, r.fp, r.benign)
		if lp != 0 {
			// Measured: 34/35 (the federation-token detonation uses the Go SDK's agent and has
			// no baseline), 42/45 units, 9/45 without the user agent rule, 0 benign.
			if stratusHit < 34 || r.hit < 42 || r.hitNoPenTest < 9 || r.fp != 0 {
				t.Errorf("recall fell: stratus %d/35, units %d/%d, without user agent %d, benign flagged %d", stratusHit, r.hit, r.units, r.hitNoPenTest, r.fp)
			}
		} else if stratusHit < 35 || r.hitNoPenTest < 38 || r.fp > 3 {
			// Measured: 35/35, 44/45 units, 38/45 without the user agent rule; with no
			// learning every first call is new, so 3/4 benign principals are flagged too.
			t.Errorf("recall fell (learning 0): stratus %d/35, without user agent %d/%d, benign flagged %d", stratusHit, r.hitNoPenTest, r.units, r.fp)
		}
	}
}

func contains(s []string, x string) bool {
	for _, y := range s {
		if y == x {
			return true
		}
	}
	return false
}
