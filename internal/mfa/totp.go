// Package mfa owns virtual MFA devices: their seeds, the one-time codes they show
// (TOTP, RFC 6238, over HOTP, RFC 4226: HMAC-SHA1, 6 digits, 30-second steps, as the
// authenticator apps AWS supports compute them), the parameters that name a device and a
// code (IAM's SerialNumber and TokenCode), and verifying a code exactly once.
//
// A code is accepted at most once per device across every replica: the store records the
// last time step accepted, and a code is taken only by moving that mark forward with a
// compare-and-set (RFC 6238 §5.2: "the verifier MUST NOT accept the second attempt of the
// OTP after the successful validation has been issued for the first OTP"). Every attempt
// is counted before it is checked, so concurrent guesses cannot exceed MaxFailures; past
// it the device refuses every code until an administrator resynchronises it
// (resync-mfa-device, RFC 4226 §7.3's throttling).
//
// It does not own storage (internal/store keeps the devices, seeds sealed under the
// master key), the IAM users (internal/config) or what a verified code grants (internal/sts
// sets aws:MultiFactorAuthPresent and aws:MultiFactorAuthAge on the session).
package mfa

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha1"
	"crypto/subtle"
	"encoding/base32"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/url"
	"regexp"
	"strings"
	"time"
)

// TOTP parameters (RFC 6238 §4 and §5.2: X = 30 s, T0 = 0; RFC 4226 §5.3: 6 digits). The
// authenticator apps use these defaults; otpauth URIs omit them.
const (
	Period = 30 * time.Second
	Digits = 6
	// SeedSize is 160 bits, RFC 4226 §4's recommended shared secret length.
	SeedSize = 20
)

// seedEncoding is the base32 (RFC 4648) authenticator apps take, without padding.
var seedEncoding = base32.StdEncoding.WithPadding(base32.NoPadding)

// NewSeed returns a new random seed from r (nil: crypto/rand).
func NewSeed(r io.Reader) ([]byte, error) {
	seed := make([]byte, SeedSize)
	if err := readRandom(r, seed); err != nil {
		return nil, fmt.Errorf("new mfa seed: %w", err)
	}
	return seed, nil
}

// EncodeSeed is the seed as an authenticator app is given it (AWS's Base32StringSeed).
func EncodeSeed(seed []byte) string { return seedEncoding.EncodeToString(seed) }

// URI is the otpauth URI an authenticator app reads (from a QR code, or pasted): Key
// Uri Format, as Google Authenticator defines it. label names the account in the app.
func URI(issuer, label string, seed []byte) string {
	q := url.Values{"secret": {EncodeSeed(seed)}, "issuer": {issuer}}
	return "otpauth://totp/" + url.PathEscape(issuer+":"+label) + "?" + q.Encode()
}

// Step is the time step of t: floor((t - T0) / X), RFC 6238 §4.2.
func Step(t time.Time) int64 { return t.Unix() / int64(Period/time.Second) }

// StepTime is when step began.
func StepTime(step int64) time.Time { return time.Unix(step*int64(Period/time.Second), 0).UTC() }

// Code is the 6-digit code of seed at step: HOTP(K, T) with dynamic truncation (RFC 4226
// §5.3), zero-padded.
func Code(seed []byte, step int64) string {
	mac := hmac.New(sha1.New, seed)
	var msg [8]byte
	binary.BigEndian.PutUint64(msg[:], uint64(step))
	mac.Write(msg[:])
	sum := mac.Sum(nil)
	off := sum[len(sum)-1] & 0x0f
	bin := binary.BigEndian.Uint32(sum[off:off+4]) & 0x7fffffff
	var out [Digits]byte
	for i := Digits - 1; i >= 0; i-- {
		out[i] = byte('0' + bin%10)
		bin /= 10
	}
	return string(out[:])
}

// match returns the step in [from, to] whose code is code, comparing every candidate in
// constant time so the timing says nothing about which (if any) matched.
func match(seed []byte, code string, from, to int64) (int64, bool) {
	var found int64
	ok := 0
	for s := from; s <= to; s++ {
		eq := subtle.ConstantTimeCompare([]byte(Code(seed, s)), []byte(code))
		if eq == 1 && ok == 0 {
			found = s
		}
		ok |= eq
	}
	return found, ok == 1
}

// Errors of the parameter parsers: bad input, reported in IAM's and STS's validation
// shape by their callers.
var (
	ErrCode   = errors.New("the MFA code must be 6 digits")
	ErrSerial = errors.New("not a virtual MFA device serial number")
	ErrName   = errors.New("not a virtual MFA device name")
	ErrPath   = errors.New("not an IAM path")
)

// ParseCode checks a TokenCode or AuthenticationCode: exactly 6 ASCII digits (the STS
// API Reference: length 6, pattern [\d]*).
func ParseCode(s string) (string, error) {
	if len(s) != Digits {
		return "", ErrCode
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return "", ErrCode
		}
	}
	return s, nil
}

// Names and paths of virtual MFA devices (IAM API Reference, CreateVirtualMFADevice:
// VirtualMFADeviceName [\w+=,.@-]+, 1 to 226; Path (\u002F)|(\u002F[\u0021-\u007E]+\u002F),
// 1 to 512).
var (
	deviceNameRe = regexp.MustCompile(`^[\w+=,.@-]{1,226}$`)
	pathRe       = regexp.MustCompile(`^/$|^/[\x21-\x7e]+/$`)
)

// SerialNumber is the ARN of a virtual MFA device: arn:aws:iam::ACCOUNT:mfa/PATHNAME.
func SerialNumber(account, path, name string) (string, error) {
	if !deviceNameRe.MatchString(name) {
		return "", ErrName
	}
	if path == "" {
		path = "/"
	}
	if len(path) > 512 || !pathRe.MatchString(path) || strings.Contains(path, "//") {
		return "", ErrPath
	}
	return "arn:aws:iam::" + account + ":mfa" + path + name, nil
}

// ParseSerial checks a SerialNumber parameter names a virtual MFA device of account: the
// STS API Reference's length 9 to 256 and pattern [\w+=/:,.@-]*, and the ARN shape.
func ParseSerial(account, s string) (string, error) {
	if len(s) < 9 || len(s) > 256 {
		return "", ErrSerial
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("_+=/:,.@-", c) >= 0) {
			return "", ErrSerial
		}
	}
	rest, ok := strings.CutPrefix(s, "arn:aws:iam::"+account+":mfa/")
	if !ok || rest == "" {
		return "", ErrSerial
	}
	i := strings.LastIndexByte(rest, '/')
	path, name := "/"+rest[:i+1], rest[i+1:] // i == -1: the root path
	if _, err := SerialNumber(account, path, name); err != nil {
		return "", ErrSerial
	}
	return s, nil
}

func readRandom(r io.Reader, b []byte) error {
	if r == nil {
		r = rand.Reader
	}
	_, err := io.ReadFull(r, b)
	return err
}
