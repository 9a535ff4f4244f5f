package gateway

import (
	"bufio"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"

	"github.com/phantom-perimeter/phantom/internal/audit"
)

// The load test of issue 15: 200 slow 10 MiB uploads held open against the gateway, half
// of them anonymous, half correctly signed by a principal whose policies deny the call.
// The attackers run in a child process (this test binary again), so the heap measured is
// the gateway's alone.

const (
	attackUploads   = 200
	heapBound       = 64 << 20 // what the gateway's live heap may grow by
	heapAbort       = 1 << 30  // stop an attack that is clearly winning before it hurts the machine
	attackerEnv     = "PHANTOM_TEST_HOSTILE_ATTACKER"
	attackerTimeout = 60 * time.Second
)

// TestHostileHeapUnderSlowUploads holds the uploads open over HTTP/1.1 (one connection
// each) and over HTTP/2 (streams on shared connections) and checks that every one is
// refused and that the gateway's live heap grows by less than 64 MiB meanwhile.
func TestHostileHeapUnderSlowUploads(t *testing.T) {
	if testing.Short() {
		t.Skip("a load test: 200 uploads of 10 MiB")
	}
	refusals := &countAudit{}
	h := newHostile(t, func(c *Config) { c.Auditor = refusals })
	bundle := t.TempDir() + "/ca.pem"
	if err := os.WriteFile(bundle, h.ca.BundlePEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, proto := range []string{"h1", "h2"} {
		t.Run(proto, func(t *testing.T) {
			refusals.n.Store(0)
			runtime.GC()
			var base runtime.MemStats
			runtime.ReadMemStats(&base)

			cmd := exec.Command(os.Args[0], "-test.run=^TestHostileAttacker$", "-test.v")
			bob := h.keys["bob"]
			cmd.Env = append(os.Environ(), attackerEnv+"=1", "ATTACK_URL=https://"+h.gwAddr+"/prod/orders", "ATTACK_CA="+bundle,
				"ATTACK_PROTO="+proto, "ATTACK_KEY="+bob.AccessKeyID, "ATTACK_SECRET="+bob.SecretAccessKey,
				"ATTACK_TIME="+h.clock.Now().Format(time.RFC3339))
			stdin, _ := cmd.StdinPipe()
			out, _ := cmd.StdoutPipe()
			cmd.Stderr = os.Stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			defer func() { stdin.Close(); cmd.Process.Kill(); cmd.Wait() }()

			// Sample the heap while the attack runs; abort when it is clearly lost.
			var peak atomic.Uint64
			stop := make(chan struct{})
			var wg sync.WaitGroup
			wg.Add(1)
			go func() {
				defer wg.Done()
				var m runtime.MemStats
				for {
					select {
					case <-stop:
						return
					case <-time.After(50 * time.Millisecond):
					}
					runtime.ReadMemStats(&m)
					if m.HeapAlloc > peak.Load() {
						peak.Store(m.HeapAlloc)
					}
					if m.HeapAlloc > base.HeapAlloc+heapAbort {
						cmd.Process.Kill()
						return
					}
				}
			}()
			report := map[string]string{}
			reported := false
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				if k, v, ok := strings.Cut(sc.Text(), "="); ok && strings.HasPrefix(k, "attack.") {
					report[k] = v
				}
				if sc.Text() == "attack.holding" {
					reported = true
					break
				}
			}
			runtime.GC()
			var held runtime.MemStats
			runtime.ReadMemStats(&held)
			close(stop)
			wg.Wait()
			grew := int64(held.HeapAlloc) - int64(base.HeapAlloc)
			t.Logf("%s: live heap %.1f MiB before, %.1f MiB with the uploads held (grew %.1f MiB); peak sampled heap %.1f MiB; attacker: %v",
				proto, mib(base.HeapAlloc), mib(held.HeapAlloc), float64(grew)/(1<<20), mib(peak.Load()), report)
			if !reported {
				t.Fatalf("the attacker did not report (killed at %.0f MiB of heap growth?)", float64(peak.Load()-base.HeapAlloc)/(1<<20))
			}
			if grew >= heapBound || peak.Load() > base.HeapAlloc+heapAbort {
				t.Errorf("the gateway's live heap grew by %.1f MiB under %d slow uploads; the bound is %d MiB", float64(grew)/(1<<20), attackUploads, heapBound>>20)
			}
			// Every upload is refused as its headers arrive: the attacker sees a 403, or,
			// still writing its body, the connection closed under it.
			deadline := time.Now().Add(10 * time.Second)
			for refusals.n.Load() < attackUploads && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			if got := refusals.n.Load(); got != attackUploads {
				t.Errorf("the gateway refused %d of %d uploads (%v)", got, attackUploads, report)
			}
			if report["attack.holding.count"] != "0" {
				t.Errorf("%s uploads were taken up to their last byte (%v)", report["attack.holding.count"], report)
			}
		})
	}
}

func mib(n uint64) float64 { return float64(n) / (1 << 20) }

// countAudit counts the refusals of uploads: MissingAuthenticationToken (anonymous) and
// AccessDenied (signed by a denied principal).
type countAudit struct{ n atomic.Int64 }

func (a *countAudit) Record(_ context.Context, ev *audit.Event) error {
	if ev.ErrorCode == "MissingAuthenticationToken" || ev.ErrorCode == "AccessDenied" {
		a.n.Add(1)
	}
	return nil
}

// TestHostileAttacker is the attacking process of TestHostileHeapUnderSlowUploads; it runs
// only when that test starts it. It starts the uploads, each sending its body at full
// speed up to the last byte and holding that one back, waits until every upload is either
// answered or holding, prints its counts and "attack.holding", then holds until its stdin
// closes.
func TestHostileAttacker(t *testing.T) {
	if os.Getenv(attackerEnv) == "" {
		t.Skip("run by TestHostileHeapUnderSlowUploads")
	}
	pem, err := os.ReadFile(os.Getenv("ATTACK_CA"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: os.Getenv("ATTACK_PROTO") == "h2", MaxIdleConnsPerHost: attackUploads}
	if os.Getenv("ATTACK_PROTO") != "h2" {
		tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	}
	client := &http.Client{Transport: tr}
	at, _ := time.Parse(time.RFC3339, os.Getenv("ATTACK_TIME"))
	creds := aws.Credentials{AccessKeyID: os.Getenv("ATTACK_KEY"), SecretAccessKey: os.Getenv("ATTACK_SECRET")}
	sum := sha256.Sum256(make([]byte, uploadSize))
	hold := make(chan struct{})
	go func() { io.Copy(io.Discard, os.Stdin); close(hold) }()

	var refused, holding, failed atomic.Int64
	var firstErr atomic.Pointer[error]
	settled := make(chan struct{}, attackUploads)
	for i := range attackUploads {
		var once sync.Once
		settle := func() { once.Do(func() { settled <- struct{}{} }) }
		go func() {
			body := &heldBack{left: uploadSize - 1, hold: hold, holding: func() { holding.Add(1); settle() }}
			r, _ := http.NewRequestWithContext(context.Background(), "POST", os.Getenv("ATTACK_URL"), body)
			r.ContentLength = uploadSize
			if i%2 == 1 {
				if err := v4.NewSigner().SignHTTP(context.Background(), creds, r, fmt.Sprintf("%x", sum), "execute-api", "us-east-1", at); err != nil {
					panic(err)
				}
			}
			resp, err := client.Do(r)
			switch {
			case err != nil:
				failed.Add(1)
				firstErr.CompareAndSwap(nil, &err)
			case resp.StatusCode == http.StatusForbidden:
				refused.Add(1)
			default:
				failed.Add(1)
			}
			if err == nil {
				resp.Body.Close()
			}
			settle()
		}()
	}
	deadline := time.After(attackerTimeout)
wait:
	for range attackUploads {
		select {
		case <-settled:
		case <-deadline:
			fmt.Println("attack.timeout=1")
			break wait
		}
	}
	if e := firstErr.Load(); e != nil {
		fmt.Printf("attack.error=%v\n", *e)
	}
	fmt.Printf("attack.refused=%d\nattack.holding.count=%d\nattack.failed=%d\nattack.holding\n", refused.Load(), holding.Load(), failed.Load())
	<-hold
}

// heldBack is a body of zeros that yields all but its last byte at once, then blocks
// until hold closes.
type heldBack struct {
	mu      sync.Mutex
	left    int
	held    bool
	hold    chan struct{}
	holding func()
}

func (b *heldBack) Read(p []byte) (int, error) {
	b.mu.Lock()
	if b.left > 0 {
		n := min(len(p), b.left)
		clear(p[:n])
		b.left -= n
		b.mu.Unlock()
		return n, nil
	}
	first := !b.held
	b.held = true
	b.mu.Unlock()
	if first {
		b.holding()
	}
	<-b.hold
	return 0, io.ErrUnexpectedEOF
}

func (b *heldBack) reachedHold() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.held
}
