// Command egress measures the egress proxy against a bare CONNECT proxy in the same run.
// Each proxy runs in a process of its own (this program, re-executed), so
// their peak resident memory (VmHWM) and CPU time are their own; the load comes from this
// process, on loopback, in alternating rounds so load from other processes falls on both
// alike. Three scenarios, each at every concurrency:
//
//	setup      CONNECT to an allowed HTTPS server, TLS handshake, GET /, close
//	refused    CONNECT with credentials to a destination the rules refuse (403)
//	nocreds    CONNECT without credentials (407)
//
// The bare proxy makes the same decisions with constant checks (one allowed
// host:port, one Proxy-Authorization value) and records nothing; Phantom's decides on
// its rules and writes a hash-chained audit log (refusals rate-bounded into summaries).
// It prints requests/s per proxy and the ratio, CPU per request, and each proxy's peak
// RSS and audit records written.
//
//	go run ./bench/egress -duration 5s -concurrency 1,16
package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

func main() {
	duration := flag.Duration("duration", 5*time.Second, "how long each proxy is measured per scenario and concurrency")
	warmup := flag.Duration("warmup", time.Second, "unmeasured load before each cell")
	conc := flag.String("concurrency", "1,16", "comma-separated numbers of concurrent clients")
	rounds := flag.Int("rounds", 2, "split each cell into this many slices, measured in turns across the proxies")
	flag.Parse()
	serveIfChild()
	var levels []int
	for _, f := range strings.Split(*conc, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 || n > 1024 {
			fmt.Fprintf(os.Stderr, "bench/egress: concurrency %q is not a number from 1 to 1024\n", f)
			os.Exit(2)
		}
		levels = append(levels, n)
	}
	if *rounds < 1 {
		fmt.Fprintln(os.Stderr, "bench/egress: -rounds must be at least 1")
		os.Exit(2)
	}
	if err := run(context.Background(), os.Stdout, options{duration: *duration, warmup: *warmup, levels: levels, rounds: *rounds}); err != nil {
		fmt.Fprintln(os.Stderr, "bench/egress:", err)
		os.Exit(1)
	}
}

type options struct {
	duration, warmup time.Duration
	levels           []int
	rounds           int
}

// The environment of a proxy process: which proxy it serves, and the one destination
// its rules allow.
const (
	serveEnv  = "PHANTOM_BENCH_EGRESS_SERVE"
	targetEnv = "PHANTOM_BENCH_EGRESS_TARGET"
)

// serveIfChild serves a proxy and exits when this process is one of the proxies.
func serveIfChild() {
	kind := os.Getenv(serveEnv)
	if kind == "" {
		return
	}
	if err := serveChild(kind, os.Getenv(targetEnv)); err != nil {
		fmt.Fprintln(os.Stderr, "bench/egress proxy:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

// proxy is a proxy process being measured.
type proxy struct {
	name string
	cmd  *exec.Cmd
	in   io.WriteCloser // closing it stops the child
	addr string         // its listener
	auth string         // the Proxy-Authorization it accepts
	dir  string         // the child's audit directory ("" for none)
}

func startProxy(kind, target string) (*proxy, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), serveEnv+"="+kind, targetEnv+"="+target)
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	outp, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	line, err := bufio.NewReader(outp).ReadString('\n')
	f := strings.Fields(line)
	if err != nil || len(f) != 3 {
		in.Close()
		cmd.Wait()
		return nil, fmt.Errorf("the %s proxy printed %q: %v", kind, line, err)
	}
	dir := f[2]
	if dir == "-" {
		dir = ""
	}
	return &proxy{name: kind, cmd: cmd, in: in, addr: f[0], auth: "Basic " + f[1], dir: dir}, nil
}

// stats reads the child's peak RSS (VmHWM, kB) and CPU time from /proc.
func (p *proxy) stats() (peakKB int, cpu time.Duration) {
	pid := strconv.Itoa(p.cmd.Process.Pid)
	if b, err := os.ReadFile("/proc/" + pid + "/status"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "VmHWM:"); ok {
				peakKB, _ = strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
			}
		}
	}
	if b, err := os.ReadFile("/proc/" + pid + "/stat"); err == nil {
		// Fields after the command name (in parentheses): utime and stime are 14 and 15.
		s := string(b)
		if i := strings.LastIndexByte(s, ')'); i > 0 {
			f := strings.Fields(s[i+1:])
			if len(f) > 13 {
				u, _ := strconv.Atoi(f[11])
				k, _ := strconv.Atoi(f[12])
				cpu = time.Duration(u+k) * time.Second / 100 // USER_HZ is 100 on Linux
			}
		}
	}
	return peakKB, cpu
}

func (p *proxy) stop() {
	p.in.Close()
	p.cmd.Wait()
}

// scenario is one kind of request a client makes in a loop.
type scenario struct {
	name string
	do   func(p *proxy) error
}

func run(ctx context.Context, out io.Writer, o options) error {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	defer srv.Close()
	target := srv.Listener.Addr().String()
	tlsCfg := srv.Client().Transport.(*http.Transport).TLSClientConfig.Clone()
	tlsCfg.ServerName = "example.com"
	var ps []*proxy
	defer func() {
		for _, p := range ps {
			p.stop()
		}
	}()
	for _, kind := range []string{"bare", "phantom"} {
		p, err := startProxy(kind, target)
		if err != nil {
			return err
		}
		ps = append(ps, p)
	}
	scenarios := []scenario{
		{"setup", func(p *proxy) error {
			c, err := connect(p.addr, target, p.auth, http.StatusOK)
			if err != nil {
				return err
			}
			defer c.Close()
			tc := tls.Client(c, tlsCfg)
			if _, err := io.WriteString(tc, "GET / HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n"); err != nil {
				return err
			}
			resp, err := http.ReadResponse(bufio.NewReader(tc), nil)
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			if _, err := io.Copy(io.Discard, resp.Body); err != nil || resp.StatusCode != http.StatusOK {
				return fmt.Errorf("GET through the tunnel: %d %v", resp.StatusCode, err)
			}
			return nil
		}},
		{"refused", func(p *proxy) error {
			c, err := connect(p.addr, "127.0.0.1:1", p.auth, http.StatusForbidden)
			if c != nil {
				c.Close()
			}
			return err
		}},
		{"nocreds", func(p *proxy) error {
			c, err := connect(p.addr, target, "", http.StatusProxyAuthRequired)
			if c != nil {
				c.Close()
			}
			return err
		}},
	}
	fmt.Fprintf(out, "phantom egress bench: %s per cell after %s warm-up, %d rounds; each proxy in its own process\n\n", o.duration, o.warmup, o.rounds)
	fmt.Fprintf(out, "%-8s %5s %12s %12s %8s %12s %12s %8s\n", "scenario", "conc", "bare req/s", "phantom r/s", "x bare", "bare cpu/r", "phantom cpu/r", "cpu x")
	for _, s := range scenarios {
		for _, c := range o.levels {
			counts := make([]int64, len(ps))
			cpus := make([]time.Duration, len(ps))
			for _, p := range ps {
				if _, err := load(ctx, p, s, c, o.warmup); err != nil {
					return fmt.Errorf("%s through %s: %w", s.name, p.name, err)
				}
			}
			for range o.rounds {
				for i, p := range ps {
					_, before := p.stats()
					n, err := load(ctx, p, s, c, o.duration/time.Duration(o.rounds))
					if err != nil {
						return fmt.Errorf("%s through %s: %w", s.name, p.name, err)
					}
					_, after := p.stats()
					counts[i] += n
					cpus[i] += after - before
				}
			}
			rate := func(i int) float64 { return float64(counts[i]) / o.duration.Seconds() }
			perReq := func(i int) time.Duration { return cpus[i] / time.Duration(max(counts[i], 1)) }
			fmt.Fprintf(out, "%-8s %5d %12.0f %12.0f %8.2f %12s %12s %8.2f\n", s.name, c, rate(0), rate(1), rate(1)/rate(0),
				perReq(0).Round(time.Microsecond), perReq(1).Round(time.Microsecond), float64(perReq(0))/float64(max(perReq(1), 1)))
		}
	}
	fmt.Fprintln(out)
	for _, p := range ps {
		peak, cpu := p.stats()
		records, bytes := auditSize(p.dir)
		fmt.Fprintf(out, "%-8s peak RSS %6.1f MB, CPU %s", p.name, float64(peak)/1024, cpu.Round(time.Millisecond))
		if p.dir != "" {
			fmt.Fprintf(out, ", audit %d records (%.1f MB)", records, float64(bytes)/(1<<20))
		}
		fmt.Fprintln(out)
	}
	return nil
}

// load runs s through p from c clients for d and returns how many requests completed;
// any failed request fails the run.
func load(ctx context.Context, p *proxy, s scenario, c int, d time.Duration) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var n atomic.Int64
	var wg sync.WaitGroup
	var once sync.Once
	var first error
	for range c {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				if err := s.do(p); err != nil {
					once.Do(func() { first = err; cancel() })
					return
				}
				n.Add(1)
			}
		}()
	}
	wg.Wait()
	return n.Load(), first
}

// connect sends a CONNECT for target through the proxy at addr and checks the status;
// on 200 it returns the tunnel.
func connect(addr, target, auth string, want int) (net.Conn, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	req := "CONNECT " + target + " HTTP/1.1\r\nHost: " + target + "\r\n"
	if auth != "" {
		req += "Proxy-Authorization: " + auth + "\r\n"
	}
	if _, err := io.WriteString(c, req+"\r\n"); err != nil {
		c.Close()
		return nil, err
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil {
		c.Close()
		return nil, err
	}
	if resp.StatusCode != want {
		c.Close()
		return nil, fmt.Errorf("CONNECT %s: %s, want %d", target, resp.Status, want)
	}
	if want != http.StatusOK {
		return c, nil
	}
	if br.Buffered() > 0 {
		c.Close()
		return nil, errors.New("bytes after the CONNECT response")
	}
	c.SetDeadline(time.Time{})
	return c, nil
}
