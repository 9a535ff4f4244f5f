package sso

import (
	"context"
	"errors"
	"net/url"
	"strings"
	"time"
)

// DeviceAuthorization is the device authorization endpoint's answer (RFC 8628 §3.2):
// what to show the person, and the device code to poll with.
type DeviceAuthorization struct {
	DeviceCode string
	UserCode   string
	// VerificationURI is where the person enters UserCode; VerificationURIComplete, when
	// the provider gives one, has the code in it already.
	VerificationURI         string
	VerificationURIComplete string
	ExpiresAt               time.Time
	Interval                time.Duration
}

// Bounds of a device authorization answer.
const (
	defaultInterval = 5 * time.Second // RFC 8628 §3.2
	maxInterval     = 5 * time.Minute
	maxDeviceLife   = 24 * time.Hour
	maxUserCode     = 64
	slowDownStep    = 5 * time.Second // RFC 8628 §3.5
)

type deviceJSON struct {
	DeviceCode              *string        `json:"device_code"`
	UserCode                *string        `json:"user_code"`
	VerificationURI         *string        `json:"verification_uri"`
	VerificationURIComplete *string        `json:"verification_uri_complete"`
	ExpiresIn               flexibleNumber `json:"expires_in"`
	Interval                flexibleNumber `json:"interval"`
}

// ParseDeviceAuthorization reads a device authorization answer. The user code and the
// URIs are shown on a terminal, so they must be printable (no escape sequences) and the
// URIs https or loopback http.
func ParseDeviceAuthorization(status int, body []byte, now time.Time) (*DeviceAuthorization, error) {
	var j deviceJSON
	if err := decodeAnswer(status, body, &j, "device authorization endpoint"); err != nil {
		return nil, err
	}
	if j.DeviceCode == nil || !vschar(*j.DeviceCode, 1, maxOpaqueToken) {
		return nil, errors.New("device authorization response: device_code is missing or not a code")
	}
	if j.UserCode == nil || !vschar(*j.UserCode, 1, maxUserCode) || strings.TrimSpace(*j.UserCode) == "" {
		return nil, errors.New("device authorization response: user_code is missing or not printable")
	}
	if j.VerificationURI == nil || CheckURL(*j.VerificationURI) != nil || !vschar(*j.VerificationURI, 1, 2048) {
		return nil, errors.New("device authorization response: verification_uri is missing or not an https URL")
	}
	d := &DeviceAuthorization{DeviceCode: *j.DeviceCode, UserCode: *j.UserCode, VerificationURI: *j.VerificationURI, Interval: defaultInterval}
	if j.VerificationURIComplete != nil {
		if CheckURL(*j.VerificationURIComplete) != nil || !vschar(*j.VerificationURIComplete, 1, 2048) {
			return nil, errors.New("device authorization response: verification_uri_complete is not an https URL")
		}
		d.VerificationURIComplete = *j.VerificationURIComplete
	}
	if !j.ExpiresIn.set || j.ExpiresIn.n <= 0 || time.Duration(j.ExpiresIn.n)*time.Second > maxDeviceLife {
		return nil, errors.New("device authorization response: expires_in is missing or out of range")
	}
	d.ExpiresAt = now.Add(time.Duration(j.ExpiresIn.n) * time.Second)
	if j.Interval.set {
		if j.Interval.n <= 0 || time.Duration(j.Interval.n)*time.Second > maxInterval {
			return nil, errors.New("device authorization response: interval is out of range")
		}
		d.Interval = time.Duration(j.Interval.n) * time.Second
	}
	return d, nil
}

// StartDevice asks the provider for a device code and a user code (RFC 8628 §3.1).
func (c *Client) StartDevice(ctx context.Context) (*DeviceAuthorization, error) {
	if c.Provider.DeviceAuthorizationEndpoint == "" {
		return nil, errors.New("the provider has no device authorization endpoint (device_authorization_endpoint in its discovery document)")
	}
	status, body, err := c.post(ctx, c.Provider.DeviceAuthorizationEndpoint, url.Values{"scope": {strings.Join(c.Scopes, " ")}})
	if err != nil {
		return nil, err
	}
	return ParseDeviceAuthorization(status, body, c.now())
}

// PollDevice polls the token endpoint until the person approves (RFC 8628 §3.4-3.5):
// authorization_pending waits the interval, slow_down adds five seconds to it, and
// access_denied, expired_token or the device code's expiry end it.
func (c *Client) PollDevice(ctx context.Context, d *DeviceAuthorization) (*Token, error) {
	interval := d.Interval
	for {
		if !c.now().Add(interval).Before(d.ExpiresAt) {
			return nil, errors.New("the device code expired before the sign-in was approved")
		}
		t := time.NewTimer(interval)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-t.C:
		}
		tok, err := c.token(ctx, url.Values{
			"grant_type":  {"urn:ietf:params:oauth:grant-type:device_code"},
			"device_code": {d.DeviceCode},
		})
		var oe *OAuthError
		switch {
		case err == nil:
			return needIDToken(tok, nil)
		case errors.As(err, &oe) && oe.Code == "authorization_pending":
		case errors.As(err, &oe) && oe.Code == "slow_down":
			interval = min(interval+slowDownStep, maxInterval)
		default:
			return nil, err
		}
	}
}
