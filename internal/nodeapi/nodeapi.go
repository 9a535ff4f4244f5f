// Package nodeapi is the wire contract of the node API, the JSON API STS serves to the
// workload agent of an enrolled host (internal/sts serves it, internal/agent calls it),
// and the layout of an enrolled node's directory (`phantom node enroll --out DIR` writes
// it, the agent reads and renews it). Both sides import these declarations, so they
// cannot drift. It holds types and constants only: what each call means, who may make it
// and how it is audited are STS's (internal/sts/node.go).
//
//	POST /phantom/node/enroll       {"token","csr"}                 no client certificate
//	POST /phantom/node/renew        {"csr"}                         node certificate (mTLS)
//	POST /phantom/node/credentials  {"durationSeconds"?}            node certificate (mTLS)
//	POST /phantom/node/watch        {"accessKeyId","sessionToken"}  node certificate (mTLS);
//	                                answers with a stream of JSON lines (WatchEvent)
//
// Refusals are AWS's JSON protocol error shape (Error).
package nodeapi

// Paths of the node API on the STS listener.
const (
	PathPrefix      = "/phantom/node/"
	EnrollPath      = PathPrefix + "enroll"
	RenewPath       = PathPrefix + "renew"
	CredentialsPath = PathPrefix + "credentials"
	WatchPath       = PathPrefix + "watch"
)

// Request is the body of every node API call; each call sets its own members (STS
// refuses the others).
type Request struct {
	Token           string `json:"token,omitempty"`           // enroll: the join token
	CSR             string `json:"csr,omitempty"`             // enroll, renew: PEM CERTIFICATE REQUEST
	DurationSeconds *int64 `json:"durationSeconds,omitempty"` // credentials: the session length asked for
	AccessKeyID     string `json:"accessKeyId,omitempty"`     // watch: the session watched
	SessionToken    string `json:"sessionToken,omitempty"`    // watch
}

// Certificate is what enroll and renew answer.
type Certificate struct {
	Certificate string `json:"certificate"` // the node's certificate (PEM)
	CA          string `json:"ca"`          // the perimeter CA bundle (PEM)
	Node        string `json:"node"`
	Expiration  string `json:"expiration"` // the certificate's NotAfter, RFC 3339
}

// Credentials is what credentials answers. The field names are the container-credentials
// provider's, so the agent passes them through to SDKs.
type Credentials struct {
	AccessKeyID     string `json:"AccessKeyId"`
	SecretAccessKey string `json:"SecretAccessKey"`
	Token           string `json:"Token"`
	Expiration      string `json:"Expiration"` // RFC 3339
	RoleArn         string `json:"RoleArn"`
	AccountID       string `json:"AccountId"`
	// ProxyPassword is the node's egress proxy password.
	ProxyPassword string `json:"ProxyPassword"`
	Node          string `json:"Node"`
	Region        string `json:"Region"`
	// The node's place in the spec's network, when the spec gives it.
	VPC       string `json:"Vpc,omitempty"`
	PrivateIP string `json:"PrivateIp,omitempty"`
	Endpoint  string `json:"Endpoint,omitempty"`
}

// WatchEvent is one line of the watch stream (application/x-ndjson).
type WatchEvent struct {
	Event  string `json:"event"`
	Reason string `json:"reason,omitempty"` // for EventRefresh: why the session no longer works
}

// Watch events.
const (
	// EventHeartbeat comes every heartbeat interval; the stream goes on.
	EventHeartbeat = "heartbeat"
	// EventRefresh: the session no longer works; the stream ends.
	EventRefresh = "refresh"
	// EventRevoked: the node itself was removed; the stream ends.
	EventRevoked = "revoked"
	// EventReconnect: the stream reached its longest duration and ends.
	EventReconnect = "reconnect"
)

// WatchContentType is the watch stream's media type.
const WatchContentType = "application/x-ndjson"

// Error is a refusal's body, AWS's JSON protocol error shape.
type Error struct {
	Type    string `json:"__type"`
	Message string `json:"message"`
}

// The files of an enrolled node's directory.
const (
	CertFile     = "node.crt" // the node's client certificate (PEM, 0644)
	KeyFile      = "node.key" // its private key (PKCS #8 PEM, 0600)
	CABundleFile = "ca.crt"   // the perimeter CA bundle (PEM, 0644)
)
