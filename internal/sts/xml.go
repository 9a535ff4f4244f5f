package sts

import (
	"bytes"
	"encoding/xml"
	"net/http"
	"strconv"
	"time"
)

// xmlns is the namespace of every STS response ("AWS STS API Reference", Version 2011-06-15).
const xmlns = "https://sts.amazonaws.com/doc/2011-06-15/"

// apiError is an error in STS's wire form. Code and Message are AWS's; Status is the HTTP
// status AWS answers with. Messages never contain secrets.
type apiError struct {
	Code    string
	Message string
	Status  int
	// Detail is appended to Message on the wire only, never in the audit event: the
	// canonical request of a signature mismatch, which can hold the session token.
	Detail string
}

func (e *apiError) Error() string { return e.Code + ": " + e.Message }

func validationError(msg string) *apiError {
	return &apiError{Code: "ValidationError", Message: msg, Status: http.StatusBadRequest}
}

func invalidParameter(msg string) *apiError {
	return &apiError{Code: "InvalidParameterValue", Message: msg, Status: http.StatusBadRequest}
}

func accessDenied(msg string) *apiError {
	return &apiError{Code: "AccessDenied", Message: msg, Status: http.StatusForbidden}
}

func internalFailure() *apiError {
	return &apiError{Code: "InternalFailure", Message: "The request processing has failed because of an unknown error, exception or failure.", Status: http.StatusInternalServerError}
}

type errorResponse struct {
	XMLName   xml.Name  `xml:"ErrorResponse"`
	Xmlns     string    `xml:"xmlns,attr"`
	Error     errorBody `xml:"Error"`
	RequestID string    `xml:"RequestId"`
}

type errorBody struct {
	Type    string `xml:"Type"`
	Code    string `xml:"Code"`
	Message string `xml:"Message"`
}

type responseMetadata struct {
	RequestID string `xml:"RequestId"`
}

type credentialsXML struct {
	AccessKeyID     string `xml:"AccessKeyId"`
	SecretAccessKey string `xml:"SecretAccessKey"`
	SessionToken    string `xml:"SessionToken"`
	Expiration      string `xml:"Expiration"`
}

func credXML(c SessionCredentials) credentialsXML {
	return credentialsXML{c.AccessKeyID, c.SecretAccessKey, c.SessionToken, isoTime(c.Expiration)}
}

// isoTime formats a timestamp as STS does: ISO 8601 UTC with a Z, e.g. 2011-07-15T23:28:33Z.
func isoTime(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05Z") }

type assumeRoleResponse struct {
	XMLName  xml.Name         `xml:"AssumeRoleResponse"`
	Xmlns    string           `xml:"xmlns,attr"`
	Result   assumeRoleResult `xml:"AssumeRoleResult"`
	Metadata responseMetadata `xml:"ResponseMetadata"`
}

type assumeRoleResult struct {
	Credentials      credentialsXML  `xml:"Credentials"`
	AssumedRoleUser  assumedRoleUser `xml:"AssumedRoleUser"`
	PackedPolicySize *int            `xml:"PackedPolicySize,omitempty"`
	SourceIdentity   string          `xml:"SourceIdentity,omitempty"`
}

type assumedRoleUser struct {
	AssumedRoleID string `xml:"AssumedRoleId"`
	Arn           string `xml:"Arn"`
}

type getSessionTokenResponse struct {
	XMLName  xml.Name         `xml:"GetSessionTokenResponse"`
	Xmlns    string           `xml:"xmlns,attr"`
	Result   sessionResult    `xml:"GetSessionTokenResult"`
	Metadata responseMetadata `xml:"ResponseMetadata"`
}

type sessionResult struct {
	Credentials credentialsXML `xml:"Credentials"`
}

type getCallerIdentityResponse struct {
	XMLName  xml.Name         `xml:"GetCallerIdentityResponse"`
	Xmlns    string           `xml:"xmlns,attr"`
	Result   callerResult     `xml:"GetCallerIdentityResult"`
	Metadata responseMetadata `xml:"ResponseMetadata"`
}

type callerResult struct {
	Arn     string `xml:"Arn"`
	UserID  string `xml:"UserId"`
	Account string `xml:"Account"`
}

// writeXML answers with status and v marshalled, as text/xml like STS.
func writeXML(w http.ResponseWriter, requestID string, status int, v any) {
	var b bytes.Buffer
	enc := xml.NewEncoder(&b)
	if err := enc.Encode(v); err != nil {
		// Only our own types are encoded; this cannot fail on them.
		status = http.StatusInternalServerError
		b.Reset()
		b.WriteString(`<ErrorResponse xmlns="` + xmlns + `"><Error><Type>Receiver</Type><Code>InternalFailure</Code><Message>response encoding failed</Message></Error><RequestId>` + requestID + `</RequestId></ErrorResponse>`)
	}
	b.WriteByte('\n')
	h := w.Header()
	h.Set("Content-Type", "text/xml")
	h.Set("Content-Length", strconv.Itoa(b.Len()))
	h.Set("X-Amzn-Requestid", requestID)
	w.WriteHeader(status)
	_, _ = w.Write(b.Bytes())
}

func writeError(w http.ResponseWriter, requestID string, e *apiError) {
	typ := "Sender"
	if e.Status >= 500 {
		typ = "Receiver"
	}
	writeXML(w, requestID, e.Status, &errorResponse{Xmlns: xmlns, Error: errorBody{typ, e.Code, e.Message + e.Detail}, RequestID: requestID})
}
