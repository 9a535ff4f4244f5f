package gateway

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"

	"github.com/phantom-perimeter/phantom/internal/sigv4"
)

// apiError is a refusal in API Gateway's shape ("Gateway responses"): the status, the
// x-amzn-ErrorType header and a JSON body {"message": ...}. Code is the errorCode the audit
// event records (API Gateway's type without "Exception", CloudTrail style, unless set).
type apiError struct {
	Status  int
	Type    string // x-amzn-ErrorType
	Message string
	Code    string // audit errorCode
	// Encoded is the encoded authorization message of an IAM denial.
	Encoded string
}

func (e *apiError) Error() string { return e.Type + ": " + e.Message }

func errMissingToken() *apiError {
	return &apiError{Status: http.StatusForbidden, Type: sigv4.GatewayMissingAuthToken, Message: "Missing Authentication Token", Code: "MissingAuthenticationToken"}
}

func errForbidden() *apiError {
	return &apiError{Status: http.StatusForbidden, Type: "ForbiddenException", Message: "Forbidden", Code: "Forbidden"}
}

func errInvalidToken() *apiError {
	return &apiError{Status: http.StatusForbidden, Type: sigv4.GatewayUnrecognizedClient, Message: "The security token included in the request is invalid.", Code: sigv4.CodeInvalidClientTokenID}
}

func errAccessDeniedMsg(msg string) *apiError {
	return &apiError{Status: http.StatusForbidden, Type: sigv4.GatewayAccessDenied, Message: msg, Code: "AccessDenied"}
}

func errClientCertificate() *apiError {
	// The caller learns only that it is refused; why stays in the audit record and the log.
	return &apiError{Status: http.StatusForbidden, Type: "ForbiddenException", Message: "Forbidden", Code: "InvalidClientCertificate"}
}

func errInternal() *apiError {
	return &apiError{Status: http.StatusInternalServerError, Type: "InternalServerErrorException", Message: "Internal server error", Code: "InternalFailure"}
}

func errStale() *apiError {
	return &apiError{Status: http.StatusServiceUnavailable, Type: "ServiceUnavailableException", Message: "Service Unavailable", Code: "PerimeterStateStale"}
}

func errBadGateway() *apiError {
	return &apiError{Status: http.StatusBadGateway, Type: "InternalServerErrorException", Message: "Internal server error", Code: "IntegrationFailure"}
}

func errGatewayTimeout() *apiError {
	return &apiError{Status: http.StatusGatewayTimeout, Type: "InternalServerErrorException", Message: "Endpoint request timed out", Code: "IntegrationTimeout"}
}

func errBadRequest(msg string) *apiError {
	return &apiError{Status: http.StatusBadRequest, Type: sigv4.GatewayBadRequest, Message: msg, Code: "BadRequest"}
}

// The limits' refusals ("Gateway responses": REQUEST_TOO_LARGE, THROTTLED), each with its
// own audit errorCode.

func errTooLarge() *apiError {
	return &apiError{Status: http.StatusRequestEntityTooLarge, Type: "RequestEntityTooLargeException", Message: "Request Too Long", Code: "RequestEntityTooLarge"}
}

func errBodyTimeout() *apiError {
	return &apiError{Status: http.StatusRequestTimeout, Type: "RequestTimeoutException", Message: "Request Timeout: the body arrived too slowly", Code: "RequestTimeout"}
}

func errIncompleteBody() *apiError {
	return &apiError{Status: http.StatusBadRequest, Type: sigv4.GatewayBadRequest, Message: "The request body ended before its declared length", Code: "IncompleteBody"}
}

func errHashMismatch() *apiError {
	return &apiError{Status: http.StatusBadRequest, Type: sigv4.GatewayBadRequest, Message: "The provided 'x-amz-content-sha256' header does not match what was computed.", Code: sigv4.CodeContentSHA256Mismatch}
}

func errTooManyRequests() *apiError {
	return &apiError{Status: http.StatusTooManyRequests, Type: "TooManyRequestsException", Message: "Too Many Requests", Code: "TooManyRequests"}
}

func errBodyBuffer() *apiError {
	return &apiError{Status: http.StatusTooManyRequests, Type: "TooManyRequestsException", Message: "Too Many Requests", Code: "BodyBufferExhausted"}
}

func errReplayed() *apiError {
	return &apiError{Status: http.StatusForbidden, Type: sigv4.GatewayInvalidSignature, Message: "The request signature has already been used.", Code: "SignatureReused"}
}

func errReplayUnavailable() *apiError {
	return &apiError{Status: http.StatusServiceUnavailable, Type: "ServiceUnavailableException", Message: "Service Unavailable", Code: "ReplayGuardUnavailable"}
}

// fromSigV4 maps the verifier's typed error once, at the edge. On a signature mismatch the
// message carries the canonical request and string-to-sign the gateway computed, as AWS
// shows the key holder (they hold no secret).
func fromSigV4(err error) *apiError {
	var se *sigv4.Error
	if !errors.As(err, &se) {
		return errInternal()
	}
	msg := se.Message
	if se.GatewayMessage != "" {
		msg = se.GatewayMessage
	}
	if se.CanonicalRequest != "" && se.GatewayMessage == "" {
		msg += "\n\nThe Canonical String for this request should have been\n'" + se.CanonicalRequest + "'\n\nThe String-to-Sign should have been\n'" + se.StringToSign + "'\n"
	}
	status := se.HTTPStatus
	if status == 0 {
		status = http.StatusForbidden
	}
	typ := se.GatewayType
	if typ == "" || typ == sigv4.GatewayInternalFailure {
		return errInternal()
	}
	return &apiError{Status: status, Type: typ, Message: msg, Code: se.Code}
}

// writeError writes e in API Gateway's shape.
func writeError(w http.ResponseWriter, requestID string, e *apiError) {
	body := struct {
		Message string `json:"message"`
		Encoded string `json:"encodedAuthorizationMessage,omitempty"`
	}{e.Message, e.Encoded}
	b, err := json.Marshal(body)
	if err != nil {
		b = []byte(`{"message":"Internal server error"}`)
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(b)))
	h.Set("X-Amzn-Requestid", requestID)
	h.Set("X-Amzn-Errortype", e.Type)
	w.WriteHeader(e.Status)
	w.Write(b)
}
