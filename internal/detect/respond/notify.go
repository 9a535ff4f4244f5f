package respond

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"net/url"
	"time"

	"github.com/phantom-perimeter/phantom/internal/config"
	"github.com/phantom-perimeter/phantom/internal/detect"
)

// ValidateWebhook checks a webhook URL as the spec does: absolute, https (plain http
// only to a loopback address), no credentials, query or fragment. The spec validated it
// already; this is checked again at delivery so nothing else can make the responder post
// findings in clear text across the network.
func ValidateWebhook(raw string) (*url.URL, error) {
	if len(raw) > 2048 {
		return nil, errors.New("webhook URL longer than 2048 characters")
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("webhook URL: %w", err)
	}
	switch {
	case !u.IsAbs() || u.Host == "" || u.Opaque != "":
		return nil, errors.New("webhook URL is not absolute")
	case u.User != nil:
		return nil, errors.New("webhook URL holds credentials")
	case u.RawQuery != "" || u.Fragment != "" || u.ForceQuery:
		return nil, errors.New("webhook URL has a query or fragment")
	case u.Scheme == "https":
	case u.Scheme == "http":
		if !isLoopback(u.Hostname()) {
			return nil, errors.New("webhook URL must use https (plain http only to a loopback address)")
		}
	default:
		return nil, fmt.Errorf("webhook URL scheme %q is not https", u.Scheme)
	}
	return u, nil
}

func isLoopback(h string) bool {
	if h == "localhost" {
		return true
	}
	a, err := netip.ParseAddr(h)
	return err == nil && a.IsLoopback()
}

// redact returns what of a webhook URL may be audited: scheme and host.
func redact(u *url.URL) string { return u.Scheme + "://" + u.Host }

// Event is the notification body: the finding wrapped as GuardDuty's EventBridge event
// ("GuardDuty finding format" / "Amazon EventBridge event format"), so receivers built
// for GuardDuty parse it.
type Event struct {
	Version    string         `json:"version"`
	ID         string         `json:"id"`
	DetailType string         `json:"detail-type"`
	Source     string         `json:"source"`
	Account    string         `json:"account"`
	Time       time.Time      `json:"time"`
	Region     string         `json:"region"`
	Resources  []string       `json:"resources"`
	Detail     detect.Finding `json:"detail"`
}

// NewEvent wraps f as the notification body.
func NewEvent(f detect.Finding, now time.Time) Event {
	return Event{
		Version:    "0",
		ID:         f.ID + "-" + fmt.Sprint(f.Service.Count),
		DetailType: "GuardDuty Finding",
		Source:     "aws.guardduty",
		Account:    f.AccountID,
		Time:       now.UTC().Truncate(time.Second),
		Region:     f.Region,
		Resources:  []string{},
		Detail:     f,
	}
}

// notify starts an asynchronous delivery and reports whether the action is settled
// (queued, or refused for good). The outcome is audited when the delivery ends.
func (r *Responder) notify(spec *config.Spec, f detect.Finding, webhook string, params map[string]any) bool {
	u, err := ValidateWebhook(webhook)
	if err != nil {
		params["webhook"] = "(invalid)"
		r.audit(context.Background(), spec, EventNotify, params, outcome{code: "ValidationError", message: err.Error()})
		return true
	}
	params["webhook"] = redact(u)
	body, err := json.Marshal(NewEvent(f, r.now()))
	if err != nil {
		r.audit(context.Background(), spec, EventNotify, params, outcome{code: "InternalFailure", message: err.Error()})
		return true
	}
	select {
	case r.pending <- struct{}{}:
	default:
		r.audit(context.Background(), spec, EventNotify, params, outcome{code: "Throttling",
			message: fmt.Sprintf("%d webhook deliveries already in flight; notification dropped", cap(r.pending))})
		return true
	}
	r.notifyWG.Add(1)
	go func() {
		defer r.notifyWG.Done()
		defer func() { <-r.pending }()
		out := r.deliver(u.String(), body)
		r.audit(context.Background(), spec, EventNotify, params, out)
	}()
	return true
}

// deliver posts body, retrying transport errors, 429 and 5xx with backoff.
func (r *Responder) deliver(u string, body []byte) outcome {
	backoff := r.cfg.NotifyBackoff
	var last outcome
	for attempt := 1; attempt <= r.cfg.NotifyAttempts; attempt++ {
		if attempt > 1 {
			select {
			case <-r.notifyCtx.Done():
				return outcome{code: "RequestCanceled", message: "shutting down: " + last.message}
			case <-time.After(backoff):
			}
			backoff *= 2
		}
		status, err := r.post(u, body)
		switch {
		case err == nil && status/100 == 2:
			return outcome{response: map[string]any{"status": status, "attempts": attempt}}
		case err != nil:
			last = outcome{code: "RequestTimeout", message: err.Error()}
		case status == http.StatusTooManyRequests || status >= 500:
			last = outcome{code: "ServiceUnavailable", message: fmt.Sprintf("webhook answered %d", status)}
		default:
			return outcome{code: "WebhookRejected", message: fmt.Sprintf("webhook answered %d", status), response: map[string]any{"status": status, "attempts": attempt}}
		}
		last.response = map[string]any{"attempts": attempt}
	}
	return last
}

func (r *Responder) post(u string, body []byte) (int, error) {
	ctx, cancel := context.WithTimeout(r.notifyCtx, r.cfg.NotifyTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "phantom-detector")
	resp, err := r.http.Do(req)
	if err != nil {
		// The URL may hold a secret in its path: report without it.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return 0, err
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	return resp.StatusCode, nil
}
