package agent

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"net/http"
	"strconv"
)

// ContainerPath is where the container credentials endpoint answers:
// AWS_CONTAINER_CREDENTIALS_FULL_URI=http://ADDR/v1/credentials.
const ContainerPath = "/v1/credentials"

// containerCredentials is the container credentials provider's document (ECS task role,
// EKS Pod Identity): what botocore's ContainerProvider and aws-sdk-go-v2's endpointcreds
// parse.
type containerCredentials struct {
	AccessKeyID     string `json:"AccessKeyId"`
	SecretAccessKey string `json:"SecretAccessKey"`
	Token           string `json:"Token"`
	Expiration      string `json:"Expiration"`
	RoleArn         string `json:"RoleArn"`
	AccountID       string `json:"AccountId,omitempty"`
}

// ContainerHandler serves the container credentials endpoint: GET /v1/credentials with
// Authorization: the agent's ContainerToken (AWS_CONTAINER_AUTHORIZATION_TOKEN).
func (a *Agent) ContainerHandler() http.Handler {
	want := sha256.Sum256([]byte(a.container))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		if proxied(r) {
			containerError(w, http.StatusForbidden, "Forbidden", "Requests through a proxy are refused.")
			return
		}
		if r.URL.Path != ContainerPath {
			containerError(w, http.StatusNotFound, "NotFound", "No credentials at this path.")
			return
		}
		if r.Method != http.MethodGet {
			containerError(w, http.StatusMethodNotAllowed, "MethodNotAllowed", "Use GET.")
			return
		}
		auth := r.Header.Get("Authorization")
		if auth == "" {
			containerError(w, http.StatusUnauthorized, "Unauthorized", "The Authorization header is required.")
			return
		}
		// Digests of equal length, compared in constant time: neither the token's
		// content nor its length leaks through timing.
		got := sha256.Sum256([]byte(auth))
		if subtle.ConstantTimeCompare(got[:], want[:]) != 1 {
			containerError(w, http.StatusForbidden, "Forbidden", "The authorization token is not valid.")
			return
		}
		s := a.current()
		if s == nil {
			containerError(w, http.StatusServiceUnavailable, "CredentialsUnavailable", "No unexpired credentials: the agent could not reach STS; retry later.")
			return
		}
		b, err := json.Marshal(containerCredentials{
			AccessKeyID: s.creds.AccessKeyID, SecretAccessKey: s.creds.SecretAccessKey, Token: s.creds.Token,
			Expiration: awsTime(s.creds.Expiration), RoleArn: s.creds.RoleArn, AccountID: s.creds.AccountID,
		})
		if err != nil {
			containerError(w, http.StatusInternalServerError, "InternalError", "Encoding failed.")
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", strconv.Itoa(len(b)))
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(b)
	})
}

// containerError answers in the shape aws-sdk-go-v2's endpointcreds reads ({"code",
// "message"}).
func containerError(w http.ResponseWriter, status int, code, msg string) {
	b, _ := json.Marshal(map[string]string{"code": code, "message": msg})
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}
