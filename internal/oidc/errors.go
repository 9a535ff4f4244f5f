package oidc

import (
	"crypto/subtle"
	"fmt"
	"strings"
	"time"
)

// Error is the typed error every verification failure returns; the STS handler maps it once
// with errors.As to the AWS error response. Code is the AWS query-API code of the
// AssumeRoleWithWebIdentity operation ("Errors" in the AWS STS API Reference); Message is
// the text sent to the caller. Err, when set, is the underlying cause for logs and audit; it
// never goes on the wire (it may name internal URLs or network details).
type Error struct {
	Code    string
	Message string
	Err     error
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("oidc: ")
	b.WriteString(e.Code)
	b.WriteString(": ")
	b.WriteString(e.Message)
	if e.Err != nil {
		b.WriteString(": ")
		b.WriteString(e.Err.Error())
	}
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

// AWS STS error codes of AssumeRoleWithWebIdentity, spelled as they appear in the query
// API's ErrorResponse/Error/Code (botocore's sts service model: InvalidIdentityTokenException
// has code InvalidIdentityToken, IDPCommunicationErrorException IDPCommunicationError,
// IDPRejectedClaimException IDPRejectedClaim, ExpiredTokenException ExpiredTokenException).
// All are sender faults with HTTP status 400.
const (
	// CodeInvalidIdentityToken: malformed token, bad signature, unknown issuer, wrong
	// audience, unusable key, token not yet valid.
	CodeInvalidIdentityToken = "InvalidIdentityToken"
	// CodeExpiredToken: the token's exp is in the past.
	CodeExpiredToken = "ExpiredTokenException"
	// CodeIDPCommunicationError: the provider's discovery document or JWKS could not be
	// fetched or parsed.
	CodeIDPCommunicationError = "IDPCommunicationError"
	// CodeIDPRejectedClaim: the token is signed and current but a claim Phantom requires is
	// missing or unacceptable (no sub, a lifetime beyond the configured maximum).
	CodeIDPRejectedClaim = "IDPRejectedClaim"
	// CodeValidationError: the WebIdentityToken parameter breaks the API's length
	// constraint (4 to 20,000 characters, "AssumeRoleWithWebIdentity" request parameters).
	CodeValidationError = "ValidationError"
)

// Messages AWS returns for the same conditions, kept verbatim where AWS's wording is
// known so scripts that match on them keep working.
const (
	msgAudience  = "Incorrect token audience"
	msgNoKey     = "Couldn't retrieve verification key from your identity provider, please reference AssumeRoleWithWebIdentity documentation for requirements"
	msgSignature = "The token signature could not be verified"
	msgMalformed = "The web identity token is not a valid JWT"
	msgIDPDown   = "Couldn't communicate with your identity provider to retrieve verification keys, please try again later"
)

func invalid(msg string, cause error) *Error {
	return &Error{Code: CodeInvalidIdentityToken, Message: msg, Err: cause}
}

func malformed(format string, args ...any) *Error {
	return invalid(msgMalformed, fmt.Errorf(format, args...))
}

func expired(now, exp time.Time) *Error {
	// AWS's wording, with the times as epoch seconds as AWS prints them.
	return &Error{Code: CodeExpiredToken, Message: fmt.Sprintf(
		"Token expired: current date/time %d must be before the expiration date/time %d",
		now.Unix(), exp.Unix())}
}

func rejected(msg string) *Error {
	return &Error{Code: CodeIDPRejectedClaim, Message: msg}
}

// printable shortens an attacker-supplied string before it goes into an error message.
func printable(s string) string {
	const max = 255
	var b strings.Builder
	for i, r := range s {
		if i >= max {
			b.WriteString("...")
			break
		}
		if r < 0x20 || r == 0x7f || r == '\uFFFD' {
			r = '?'
		}
		b.WriteRune(r)
	}
	return b.String()
}

func constantTimeEqual(a, b string) bool {
	return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}
