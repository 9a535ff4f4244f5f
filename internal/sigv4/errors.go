package sigv4

import (
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Error is the typed error every verification failure returns; handlers map it once with
// errors.As. Code is the query-API (STS, IAM) spelling, GatewayType the API Gateway / JSON
// protocol spelling ("__type") of the same condition.
type Error struct {
	Code        string // IncompleteSignature, MissingAuthenticationToken, InvalidClientTokenId, SignatureDoesNotMatch, RequestExpired, ExpiredToken, AccessDenied, ...
	GatewayType string // IncompleteSignatureException, MissingAuthenticationTokenException, UnrecognizedClientException, InvalidSignatureException, ExpiredTokenException, ...
	Message     string // AWS's message text
	HTTPStatus  int    // 400 or 403 as AWS returns

	// CanonicalRequest and StringToSign are what the server computed; set on a signature
	// mismatch only. They never contain secrets (AWS returns them to the caller too).
	CanonicalRequest string
	StringToSign     string

	// Hint is a human explanation for debugging tools (clock skew, scope region, unsigned
	// header, body hash ...). Not part of AWS's wire format.
	Hint string

	// GatewayMessage is API Gateway's wording where it differs from Message (for example
	// "Missing Authentication Token" vs "Request is missing Authentication Token").
	GatewayMessage string
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("sigv4: ")
	b.WriteString(e.Code)
	b.WriteString(": ")
	b.WriteString(e.Message)
	if e.Hint != "" {
		b.WriteString(" (hint: ")
		b.WriteString(e.Hint)
		b.WriteString(")")
	}
	return b.String()
}

// Codes, in both spellings. The query-API codes are those of "Common Errors" in the AWS STS
// and IAM API references; the gateway types are API Gateway's (x-amzn-ErrorType).
const (
	CodeIncompleteSignature   = "IncompleteSignature"
	CodeMissingAuthToken      = "MissingAuthenticationToken"
	CodeInvalidClientTokenID  = "InvalidClientTokenId"
	CodeSignatureDoesNotMatch = "SignatureDoesNotMatch"
	CodeRequestExpired        = "RequestExpired"
	CodeExpiredToken          = "ExpiredToken"
	CodeAccessDenied          = "AccessDenied"
	CodeContentSHA256Mismatch = "XAmzContentSHA256Mismatch"
	CodeMalformedQueryString  = "MalformedQueryString"
	CodeInternalFailure       = "InternalFailure"

	GatewayIncompleteSignature = "IncompleteSignatureException"
	GatewayMissingAuthToken    = "MissingAuthenticationTokenException"
	GatewayUnrecognizedClient  = "UnrecognizedClientException"
	GatewayInvalidSignature    = "InvalidSignatureException"
	GatewayExpiredToken        = "ExpiredTokenException"
	GatewayAccessDenied        = "AccessDeniedException"
	GatewayBadRequest          = "BadRequestException"
	GatewayInternalFailure     = "InternalFailure"
)

// AWS's message texts.
const (
	msgSignatureMismatch = "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details."
	msgMissingToken      = "Request is missing Authentication Token"
	msgMissingTokenGW    = "Missing Authentication Token"
	msgInvalidToken      = "The security token included in the request is invalid."
	msgExpiredToken      = "The security token included in the request is expired"
	msgRequestExpired    = "Request has expired."
	msgBodyHashMismatch  = "The provided 'x-amz-content-sha256' header does not match what was computed."
)

func incomplete(msg string) *Error {
	return &Error{Code: CodeIncompleteSignature, GatewayType: GatewayIncompleteSignature, Message: msg, HTTPStatus: http.StatusBadRequest}
}

// badSignature is a scope or signature failure: AWS answers 403 SignatureDoesNotMatch.
func badSignature(msg string) *Error {
	return &Error{Code: CodeSignatureDoesNotMatch, GatewayType: GatewayInvalidSignature, Message: msg, HTTPStatus: http.StatusForbidden}
}

func missingToken() *Error {
	return &Error{Code: CodeMissingAuthToken, GatewayType: GatewayMissingAuthToken, Message: msgMissingToken, GatewayMessage: msgMissingTokenGW, HTTPStatus: http.StatusForbidden}
}

func invalidToken(hint string) *Error {
	return &Error{Code: CodeInvalidClientTokenID, GatewayType: GatewayUnrecognizedClient, Message: msgInvalidToken, HTTPStatus: http.StatusForbidden, Hint: hint}
}

func expiredToken(hint string) *Error {
	return &Error{Code: CodeExpiredToken, GatewayType: GatewayExpiredToken, Message: msgExpiredToken, HTTPStatus: http.StatusForbidden, Hint: hint}
}

func requestExpired(msg, hint string) *Error {
	return &Error{Code: CodeRequestExpired, GatewayType: GatewayInvalidSignature, Message: msg, HTTPStatus: http.StatusForbidden, Hint: hint}
}

func accessDenied(msg, hint string) *Error {
	return &Error{Code: CodeAccessDenied, GatewayType: GatewayAccessDenied, Message: msg, HTTPStatus: http.StatusForbidden, Hint: hint}
}

func bodyHashMismatch(hint string) *Error {
	return &Error{Code: CodeContentSHA256Mismatch, GatewayType: GatewayBadRequest, Message: msgBodyHashMismatch, HTTPStatus: http.StatusBadRequest, Hint: hint}
}

func malformedQuery(msg string) *Error {
	return &Error{Code: CodeMalformedQueryString, GatewayType: GatewayBadRequest, Message: msg, HTTPStatus: http.StatusBadRequest}
}

func tooLarge(limit int64) *Error {
	return &Error{Code: "RequestEntityTooLarge", GatewayType: "RequestEntityTooLargeException", Message: "Request must be smaller than " + strconv.FormatInt(limit, 10) + " bytes for the operation", HTTPStatus: http.StatusRequestEntityTooLarge}
}

func internalFailure(hint string) *Error {
	return &Error{Code: CodeInternalFailure, GatewayType: GatewayInternalFailure, Message: "The request processing has failed because of an unknown error, exception or failure.", HTTPStatus: http.StatusInternalServerError, Hint: hint}
}

// skewMessage renders AWS's clock-skew texts, e.g. "Signature expired: 20150830T123600Z is
// now earlier than 20150830T124600Z (20150830T125100Z - 5 min.)" ("Troubleshoot signed
// requests for AWS APIs", IAM User Guide).
func skewMessage(reqTime, now time.Time, skew time.Duration, future bool) string {
	mins := skewText(skew)
	if future {
		return "Signature not yet current: " + reqTime.UTC().Format(iso8601Basic) + " is still later than " +
			now.Add(skew).UTC().Format(iso8601Basic) + " (" + now.UTC().Format(iso8601Basic) + " + " + mins + ")"
	}
	return "Signature expired: " + reqTime.UTC().Format(iso8601Basic) + " is now earlier than " +
		now.Add(-skew).UTC().Format(iso8601Basic) + " (" + now.UTC().Format(iso8601Basic) + " - " + mins + ")"
}

func skewText(d time.Duration) string {
	if d%time.Minute == 0 {
		return strconv.FormatInt(int64(d/time.Minute), 10) + " min."
	}
	return d.String()
}
