package sts

import (
	"context"
	"errors"
	"time"

	"github.com/phantom-perimeter/phantom/internal/mfa"
)

// mfaRequest is the SerialNumber and TokenCode of a GetSessionToken or AssumeRole call.
type mfaRequest struct{ serial, code string }

// The answers AWS gives when MFA does not authenticate ("MultiFactorAuthentication
// failed ..."); which of the reasons it was goes to the log and the audit record only.
const (
	msgMFAInvalid  = "MultiFactorAuthentication failed with invalid MFA one time pass code."
	msgMFAUnusable = "MultiFactorAuthentication failed, unable to validate MFA code."
	serialPattern  = `[\w+=/:,.@-]*`
)

// parseMFA reads SerialNumber and TokenCode (AWS STS API Reference: SerialNumber length 9
// to 256, pattern [\w+=/:,.@-]*; TokenCode length 6, pattern [\d]*). Neither is nil, nil;
// one without the other is a validation error. The code is never echoed.
func parseMFA(p params) (*mfaRequest, *apiError) {
	serial, hasSerial := p["SerialNumber"]
	code, hasCode := p["TokenCode"]
	if !hasSerial && !hasCode {
		return nil, nil
	}
	if !hasSerial || !hasCode {
		return nil, validationError("SerialNumber and TokenCode must be given together.")
	}
	if e := checkLength(serial, true, "serialNumber", 9, 256); e != nil {
		return nil, e
	}
	if !mfaSerialChars(serial) {
		return nil, memberError(serial, "serialNumber", "Member must satisfy regular expression pattern: "+serialPattern)
	}
	if _, err := mfa.ParseCode(code); err != nil {
		return nil, validationError("1 validation error detected: Value at 'tokenCode' failed to satisfy constraint: Member must have length 6 and satisfy regular expression pattern: [\\d]*")
	}
	return &mfaRequest{serial: serial, code: code}, nil
}

func mfaSerialChars(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case c == '_' || c == '+' || c == '=' || c == '/' || c == ':' || c == ',' || c == '.' || c == '@' || c == '-':
		default:
			return false
		}
	}
	return true
}

// verifyMFA takes the call's code from the caller's device and returns when the user
// authenticated. Only IAM users have MFA devices: a role session naming one is refused.
func (h *Handler) verifyMFA(ctx context.Context, c *call, m *mfaRequest) (time.Time, *apiError) {
	c.ev.RequestParameters["serialNumber"] = m.serial
	refuse := func(reason, msg string) (time.Time, *apiError) {
		if c.ev.AdditionalEventData == nil {
			c.ev.AdditionalEventData = map[string]any{}
		}
		c.ev.AdditionalEventData["mfaFailure"] = reason
		h.log.Info("sts mfa refused", "request_id", c.id, "principal", c.caller.arn, "serial_number", m.serial, "reason", reason)
		return time.Time{}, accessDenied(msg)
	}
	u := c.caller.user
	if u == nil {
		return refuse("the caller is not an IAM user: only users have MFA devices", msgMFAUnusable)
	}
	if _, err := mfa.ParseSerial(h.cfg.Account, m.serial); err != nil {
		return refuse("the serial number is not a virtual MFA device of this account", msgMFAUnusable)
	}
	if h.cfg.MFA == nil {
		return refuse("this STS has no MFA device store", msgMFAUnusable)
	}
	at, err := h.cfg.MFA.Verify(ctx, u.Name, m.serial, m.code)
	var r *mfa.Refusal
	switch {
	case errors.As(err, &r):
		return refuse(r.Reason, msgMFAInvalid)
	case err != nil:
		h.log.Error("sts mfa verification failed", "request_id", c.id, "serial_number", m.serial, "error", err)
		return time.Time{}, internalFailure()
	}
	return at, nil
}
