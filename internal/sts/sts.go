// Package sts serves the AWS Security Token Service query API (Version 2011-06-15) over
// HTTP: it authenticates each call with SigV4 (service "sts"), decides AssumeRole with the
// role's trust policy and the caller's own policies, validates parameters as AWS does, and
// answers in the XML shapes AWS SDKs parse. It owns the protocol and the authorization
// decision; minting and sealing session credentials belongs to the Issuer (internal/identity),
// resolving access keys to the Credentials source, and the perimeter's roles, users and
// managed policies to the Directory (internal/config). Every call, allowed or denied,
// produces one audit event.
package sts

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/phantom-perimeter/phantom/internal/arn"
	"github.com/phantom-perimeter/phantom/internal/config"
	"github.com/phantom-perimeter/phantom/internal/requestid"
	"github.com/phantom-perimeter/phantom/internal/sigv4"
)

// Credentials resolves a SigV4 access key to the credential that signs with it and, for
// session credentials (ASIA…), the session's claims. Long-term keys return a nil *Session.
// Errors are sigv4's: ErrUnknownAccessKey, ErrInvalidToken, ErrExpiredToken (wrapped or not).
type Credentials interface {
	LookupSession(ctx context.Context, accessKeyID, sessionToken string) (sigv4.Credential, *Session, error)
}

// Session is what a session credential carries about itself.
type Session struct {
	// Role is the role ARN for an assumed-role session; "" for a GetSessionToken session,
	// whose principal (sigv4.Credential.Principal) is the user's ARN.
	Role              string
	SessionName       string
	SourceIdentity    string
	Tags              []Tag
	TransitiveTagKeys []string
	Policy            string   // inline session policy, "" when none
	PolicyARNs        []string // managed session policies
	IssuedAt          time.Time
	Expires           time.Time
	MFA               bool
	// MFAAt is when the user authenticated with MFA (aws:MultiFactorAuthAge); zero
	// without MFA.
	MFAAt time.Time
	// VPC is the network the session is bound to (aws:EC2InstanceSourceVPC); "" when none.
	VPC string
}

// Tag is a session tag.
type Tag struct{ Key, Value string }

// SessionSpec is a session to mint, fully decided: the Issuer does no authorization.
type SessionSpec struct {
	// Principal is the ARN the session acts as: the assumed-role session ARN
	// (arn:aws:sts::ACCOUNT:assumed-role/ROLE/SESSION) or, for GetSessionToken, the user ARN.
	Principal string
	// Role is the assumed role's ARN; "" for GetSessionToken.
	Role              string
	SessionName       string
	SourceIdentity    string
	Tags              []Tag    // including transitive tags inherited in a role chain
	TransitiveTagKeys []string // including inherited ones
	Policy            string   // inline session policy as sent (parsed and checked), "" when none
	PolicyARNs        []string
	IssuedAt          time.Time
	Expires           time.Time
	MFA               bool
	MFAAt             time.Time // when MFA authenticated the user; zero without MFA
	VPC               string
}

// SessionCredentials are minted credentials. SecretAccessKey and SessionToken are secrets:
// they go to the caller in the response body and nowhere else.
type SessionCredentials struct {
	AccessKeyID     string
	SecretAccessKey string
	SessionToken    string
	Expiration      time.Time
	// IssuedAt is the session's aws:TokenIssueTime, which revocations compare with; zero
	// when the issuer does not say.
	IssuedAt time.Time
}

// Issuer mints session credentials.
type Issuer interface {
	Issue(ctx context.Context, spec SessionSpec) (SessionCredentials, error)
}

// Directory looks up the perimeter's identities. *config.Spec satisfies it.
type Directory interface {
	RoleByARN(arn string) (*config.Role, bool)
	UserByARN(arn string) (*config.User, bool)
	ManagedPolicyByARN(arn string) (*config.ManagedPolicy, bool)
	// SignInProvider is the OIDC provider people sign in through, published at
	// sso.SignInConfigPath.
	SignInProvider() (*config.OIDCProvider, bool)
}

var _ Directory = (*config.Spec)(nil)

// Auditor records one event per call. An error fails the call closed (InternalFailure):
// credentials are never handed out unrecorded.
type Auditor interface {
	Record(ctx context.Context, ev *Event) error
}

// Metrics observes STS calls (internal/metrics). Labels stay bounded: action is one of
// the actions this package serves or "other" (MetricAction), result allow, deny or error,
// code the audit errorCode ("" when allowed).
type Metrics interface {
	Request(action, result, code string, d time.Duration)
}

// Config is validated once, by New.
type Config struct {
	Account string // the perimeter's 12-digit account id
	Region  string // the SigV4 scope region STS accepts, e.g. us-east-1
	// MaxSkew bounds SigV4 request time skew; 0 means sigv4's default (5m).
	MaxSkew time.Duration
	// MaxBodyBytes bounds request bodies; 0 means 64 KiB (a maximal AssumeRole is ~20 KiB).
	MaxBodyBytes int64
	// Directory returns the current spec; it is called once per request so a reloaded
	// spec (config.Watcher.Current) applies to the next call.
	Directory func() Directory
	Now       func() time.Time // nil: time.Now
	Logger    *slog.Logger     // nil: slog.Default()
	// RequestID returns a new request id; nil: random UUIDv4.
	RequestID func() string
	// Messages opens encoded authorization messages for DecodeAuthorizationMessage
	// (internal/authzmsg); nil refuses that action with InternalFailure.
	Messages MessageOpener
	// WebIdentity returns the verifier of AssumeRoleWithWebIdentity tokens for the current
	// spec's OIDC providers; nil (or a nil result) refuses every token.
	WebIdentity func() WebIdentityVerifier
	// Nodes serves the node API under nodeapi.PathPrefix (enrollment, certificate renewal and
	// node-bound credentials for the workload agent, node.go); nil answers 404 there.
	Nodes *NodeConfig
	// Components serves the component API under ComponentPathPrefix (enrollment,
	// renewal and audit writer certification for components whose hosts hold no CA key,
	// component.go); nil answers 404 there.
	Components *ComponentConfig
	// Metrics, when set, observes every call.
	Metrics Metrics
	// MFA verifies the SerialNumber and TokenCode of GetSessionToken and AssumeRole
	// (internal/mfa); nil refuses every call that passes them.
	MFA MFAVerifier
}

// MFAVerifier takes a code from a user's MFA device, once (*mfa.Verifier). It returns
// when the code's time step began; a refused code is an *mfa.Refusal, anything else a
// failure of the store.
type MFAVerifier interface {
	Verify(ctx context.Context, user, serial, code string) (time.Time, error)
}

// Handler is the STS endpoint. It is safe for concurrent use.
type Handler struct {
	cfg      Config
	verifier *sigv4.Verifier
	creds    Credentials
	issuer   Issuer
	audit    Auditor
	now      func() time.Time
	log      *slog.Logger
	newID    func() string
	watches  watchers // node watch streams, one per node
}

// DefaultMaxBodyBytes bounds an STS request body.
const DefaultMaxBodyBytes = 64 << 10

// New validates cfg and builds the handler.
func New(cfg Config, creds Credentials, issuer Issuer, auditor Auditor) (*Handler, error) {
	var problems []error
	if !arn.ValidAccount(cfg.Account) {
		problems = append(problems, fmt.Errorf("account id %q is not 12 digits", cfg.Account))
	}
	if cfg.Directory == nil {
		problems = append(problems, errors.New("a directory is required"))
	}
	if creds == nil || issuer == nil || auditor == nil {
		problems = append(problems, errors.New("credentials, issuer and auditor are all required"))
	}
	if cfg.MaxBodyBytes < 0 {
		problems = append(problems, fmt.Errorf("max body bytes %d is negative", cfg.MaxBodyBytes))
	}
	if cfg.MaxBodyBytes == 0 {
		cfg.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Nodes != nil {
		if err := cfg.Nodes.validate(); err != nil {
			problems = append(problems, err)
		}
	}
	if cfg.Components != nil {
		if err := cfg.Components.validate(); err != nil {
			problems = append(problems, err)
		}
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("new sts handler: %w", errors.Join(problems...))
	}
	h := &Handler{cfg: cfg, creds: creds, issuer: issuer, audit: auditor, now: cfg.Now, log: cfg.Logger, newID: cfg.RequestID}
	if h.log == nil {
		h.log = slog.Default()
	}
	if h.newID == nil {
		h.newID = requestid.New
	}
	v, err := sigv4.New(sigv4.Config{
		Region:       cfg.Region,
		Service:      "sts",
		MaxSkew:      cfg.MaxSkew,
		MaxBodyBytes: cfg.MaxBodyBytes,
		Now:          cfg.Now,
	}, credSource{creds})
	if err != nil {
		return nil, fmt.Errorf("new sts handler: %w", err)
	}
	h.verifier = v
	return h, nil
}

// credSource adapts Credentials to sigv4.CredentialSource and hands the session claims of
// the one lookup Verify makes back to the request that asked, through the context.
type credSource struct{ c Credentials }

type sessionSlot struct{ s *Session }

type slotKey struct{}

func (c credSource) LookupCredential(ctx context.Context, id, token string) (sigv4.Credential, error) {
	cred, sess, err := c.c.LookupSession(ctx, id, token)
	if err != nil {
		return sigv4.Credential{}, err
	}
	if slot, ok := ctx.Value(slotKey{}).(*sessionSlot); ok {
		slot.s = sess
	}
	return cred, nil
}

var _ http.Handler = (*Handler)(nil)
