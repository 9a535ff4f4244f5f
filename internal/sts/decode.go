package sts

import (
	"encoding/xml"
	"net/http"

	"github.com/phantom-perimeter/phantom/internal/authzmsg"
	"github.com/phantom-perimeter/phantom/internal/policy"
)

// MessageOpener opens the encoded authorization messages denied calls carry.
// *authzmsg.Sealer satisfies it.
type MessageOpener interface {
	Open(encoded string) ([]byte, *authzmsg.Message, error)
}

var _ MessageOpener = (*authzmsg.Sealer)(nil)

type decodeResponse struct {
	XMLName  xml.Name         `xml:"DecodeAuthorizationMessageResponse"`
	Xmlns    string           `xml:"xmlns,attr"`
	Result   decodeResult     `xml:"DecodeAuthorizationMessageResult"`
	Metadata responseMetadata `xml:"ResponseMetadata"`
}

type decodeResult struct {
	DecodedMessage string `xml:"DecodedMessage"`
}

// decodeAuthorizationMessage answers DecodeAuthorizationMessage ("AWS STS API Reference"):
// the caller needs sts:DecodeAuthorizationMessage from its identity-based policies, since
// the decoded message can reveal policy details; then the message must open under the
// perimeter's key, or the call fails with InvalidAuthorizationMessageException.
func (h *Handler) decodeAuthorizationMessage(c *call, p params) (any, *apiError) {
	c.ev.ReadOnly = true
	enc, ok := p["EncodedMessage"]
	if ok {
		// The message is opaque and can be long; CloudTrail needs only that there was one.
		c.ev.RequestParameters = map[string]any{"encodedMessageLength": len(enc)}
	}
	if e := checkLength(enc, ok, "encodedMessage", 1, authzmsg.MaxEncodedLen); e != nil {
		return nil, e
	}
	const action = "sts:DecodeAuthorizationMessage"
	allowed := false
	if id := h.identitySet(c); id != nil {
		// The request context of any STS call; the AssumeRole-only keys it would add from an
		// empty request stay empty.
		req := policy.Request{Principal: c.caller.arn, PrincipalAccount: c.caller.account, Action: action, Resource: "*",
			Context: h.requestContext(c, &assumeRequest{}, nil, nil, "", c.caller.mfa())}
		allowed = id.Evaluate(&req).Effect == policy.Allow
	}
	if !allowed {
		return nil, accessDenied("User: " + c.caller.arn + " is not authorized to perform: " + action)
	}
	if h.cfg.Messages == nil {
		h.log.Error("sts DecodeAuthorizationMessage without a message key; refusing", "request_id", c.id)
		return nil, internalFailure()
	}
	decoded, _, err := h.cfg.Messages.Open(enc)
	if err != nil {
		return nil, &apiError{Code: "InvalidAuthorizationMessageException", Message: "The encoded authorization message is invalid or was not issued by this perimeter.", Status: http.StatusBadRequest}
	}
	return &decodeResponse{Xmlns: xmlns, Result: decodeResult{DecodedMessage: string(decoded)}, Metadata: responseMetadata{c.id}}, nil
}
