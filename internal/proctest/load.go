package proctest

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
)

// LoadOptions says what load to put on the cluster's endpoints.
type LoadOptions struct {
	Concurrency int // clients, each with at most one request in flight (at least 1)
	// Endpoints are the endpoints to call (indexes); nil: every one. Client w sends its
	// k-th request through Endpoints[(w+k) % len(Endpoints)].
	Endpoints []int
	// Creds is read before every request, so a caller can renew a session under load.
	Creds func() aws.Credentials
	// Rate caps the requests per second of all clients together; 0: each client sends its
	// next request as soon as the last one is answered.
	Rate float64
	// Latencies records the latency of every successful request in Stats.Latencies.
	Latencies bool
}

// Stats counts the outcome of requests.
type Stats struct {
	OK        int            // answered 200
	Errors    map[string]int // by ErrorKind
	Latencies []time.Duration
}

// ErrorCount is the number of failed requests.
func (s Stats) ErrorCount() int {
	n := 0
	for _, v := range s.Errors {
		n += v
	}
	return n
}

// Add merges o into s.
func (s *Stats) Add(o Stats) {
	s.OK += o.OK
	for k, v := range o.Errors {
		if s.Errors == nil {
			s.Errors = map[string]int{}
		}
		s.Errors[k] += v
	}
	s.Latencies = append(s.Latencies, o.Latencies...)
}

// ErrorSummary lists the error kinds, most frequent first: "3× timeout, 1× 503 …".
func (s Stats) ErrorSummary() string {
	kinds := slices.Collect(maps.Keys(s.Errors))
	slices.SortFunc(kinds, func(a, b string) int {
		if s.Errors[a] != s.Errors[b] {
			return s.Errors[b] - s.Errors[a]
		}
		return strings.Compare(a, b)
	})
	var parts []string
	for _, k := range kinds {
		parts = append(parts, fmt.Sprintf("%d× %s", s.Errors[k], k))
	}
	return strings.Join(parts, ", ")
}

// Tally collects Stats from concurrent clients; Take hands them over and starts afresh,
// so a reporter can read one interval at a time while the load runs.
type Tally struct {
	mu sync.Mutex
	s  Stats
}

// Record counts one reply that took d.
func (t *Tally) Record(r Reply, d time.Duration, latency bool) {
	kind := ErrorKind(r)
	t.mu.Lock()
	defer t.mu.Unlock()
	if kind == "" {
		t.s.OK++
		if latency {
			t.s.Latencies = append(t.s.Latencies, d)
		}
		return
	}
	if t.s.Errors == nil {
		t.s.Errors = map[string]int{}
	}
	t.s.Errors[kind]++
}

// Take returns what was recorded since the last Take.
func (t *Tally) Take() Stats {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := t.s
	t.s = Stats{}
	return s
}

// Load sends SigV4-signed GETs of the orders API through the endpoints until ctx is done,
// recording every reply in t, and returns when every client has stopped. A request cut
// short because ctx ended is not recorded.
func (c *Cluster) Load(ctx context.Context, o LoadOptions, t *Tally) error {
	if o.Concurrency < 1 || o.Creds == nil {
		return errors.New("load: at least one client and a Creds function")
	}
	client, err := c.Client()
	if err != nil {
		return err
	}
	eps := o.Endpoints
	if eps == nil {
		for i := range c.endpointAddrs {
			eps = append(eps, i)
		}
	}
	urls := make([]string, len(eps))
	for i, e := range eps {
		if e < 0 || e >= len(c.endpointAddrs) {
			return fmt.Errorf("load: no endpoint %d", e)
		}
		urls[i] = c.EndpointURL(e)
	}
	var tick <-chan time.Time
	if o.Rate > 0 {
		// A ticker drops the ticks nobody is waiting for, so the clients never make up
		// for time they spent slow: the rate is a cap, not a debt.
		tk := time.NewTicker(time.Duration(float64(time.Second) / o.Rate))
		defer tk.Stop()
		tick = tk.C
	}
	var wg sync.WaitGroup
	for w := range o.Concurrency {
		wg.Go(func() {
			for k := w; ; k++ {
				if tick != nil {
					select {
					case <-tick:
					case <-ctx.Done():
						return
					}
				}
				if ctx.Err() != nil {
					return
				}
				t0 := time.Now()
				r := Get(ctx, client, urls[k%len(urls)], o.Creds())
				d := time.Since(t0)
				if ctx.Err() != nil {
					return
				}
				t.Record(r, d, o.Latencies)
			}
		})
	}
	wg.Wait()
	return nil
}

// ErrorKind names what went wrong with a reply, "" for a 200: the status and the AWS
// error type ("403 AccessDeniedException"), or the class of transport error.
func ErrorKind(r Reply) string {
	if r.Err == nil {
		if r.Status == http.StatusOK {
			return ""
		}
		if r.ErrorType != "" {
			return fmt.Sprintf("%d %s", r.Status, r.ErrorType)
		}
		return fmt.Sprintf("%d", r.Status)
	}
	err := r.Err
	var ne net.Error
	var cv *tls.CertificateVerificationError
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return "connection reset"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "connection closed"
	case errors.As(err, &cv):
		return "tls certificate"
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		return "out of local ports"
	}
	for u := errors.Unwrap(err); u != nil; u = errors.Unwrap(err) {
		err = u
	}
	return fmt.Sprintf("transport %T", err)
}
