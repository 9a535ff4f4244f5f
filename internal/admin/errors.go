package admin

import (
	"errors"
	"fmt"
)

// AWS error codes the administrative operations return (IAM API Reference, "Common
// Errors" and each action's Errors section; STS's for join tokens).
const (
	CodeNoSuchEntity         = "NoSuchEntity"
	CodeLimitExceeded        = "LimitExceeded"
	CodeValidationError      = "ValidationError"
	CodeInvalidClientTokenID = "InvalidClientTokenId"
	CodeExpiredToken         = "ExpiredToken"
)

// ServiceErrorExitCode is the exit status the AWS CLI (v2) uses when the service returned
// an error; the CLI uses it for every *Error.
const ServiceErrorExitCode = 254

// AccessKeysPerUser is IAM's quota of access keys per user ("IAM and AWS STS quotas").
const AccessKeysPerUser = 2

// Error is an administrative failure with the AWS error code and message IAM would give.
// Messages hold names and access key ids (which are not secret), never secrets.
type Error struct {
	Code    string
	Message string
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

// CLIMessage renders err the way the AWS CLI prints a service error, for operation op
// (for example "CreateAccessKey"), and reports whether err is an *Error.
func CLIMessage(op string, err error) (string, bool) {
	var e *Error
	if !errors.As(err, &e) {
		return "", false
	}
	return fmt.Sprintf("An error occurred (%s) when calling the %s operation: %s", e.Code, op, e.Message), true
}

func noSuchUser(name string) error {
	return &Error{CodeNoSuchEntity, fmt.Sprintf("The user with name %s cannot be found.", name)}
}

func noSuchRole(name string) error {
	return &Error{CodeNoSuchEntity, fmt.Sprintf("The role with name %s cannot be found.", name)}
}

func noSuchNode(name string) error {
	return &Error{CodeNoSuchEntity, fmt.Sprintf("The node with name %s cannot be found in the perimeter spec.", name)}
}

func noSuchKey(id string) error {
	return &Error{CodeNoSuchEntity, fmt.Sprintf("The Access Key with id %s cannot be found.", id)}
}

// validation builds IAM's "1 validation error detected" message for one parameter.
func validation(value, param, constraint string) error {
	return &Error{CodeValidationError, fmt.Sprintf("1 validation error detected: Value '%s' at '%s' failed to satisfy constraint: %s", value, param, constraint)}
}
