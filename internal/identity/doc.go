// Package identity owns Phantom's credentials: generating access key ids and secret keys,
// sealing and opening self-contained session tokens (AES-256-GCM under a rotating key ring),
// holding users' long-term access keys and the session revocations in memory, and resolving
// the credential behind a signed request (it implements sigv4.CredentialSource) together with
// the session claims the request context is built from.
//
// It does not own storage: the store interfaces it needs are declared in store.go and
// implemented by internal/store; identity reads them only when it refreshes its in-memory
// snapshots, never on the request path. It does not speak HTTP (internal/sts serves the STS
// query API on top of it) and it does not authorize: the policy engine decides what a
// resolved principal may do.
//
// References: "Temporary security credentials in IAM" and "Revoking IAM role temporary
// security credentials" (AWS IAM User Guide), "AWS global condition context keys",
// NIST SP 800-38D (GCM) §8.2–8.3 on nonces.
package identity
