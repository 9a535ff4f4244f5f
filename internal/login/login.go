// Package login signs a person in to the perimeter from a terminal, as `aws sso login`
// does for IAM Identity Center: it reads how to sign in from STS (sso.SignInConfigPath),
// runs the device authorization grant (RFC 8628) or the browser flow with PKCE on a
// loopback redirect (RFC 8252) against the provider, exchanges the ID token with STS
// AssumeRoleWithWebIdentity for a session of the person's role, and keeps tokens and
// session in a cache (cache.go) from which `phantom credentials --login` serves every AWS
// tool through credential_process, refreshing with the refresh token while it is valid.
//
// It owns the flows and the cache; the OAuth client is internal/sso, the decision STS's.
package login

import (
	"context"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"html"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	awssts "github.com/aws/aws-sdk-go-v2/service/sts"

	"github.com/phantom-perimeter/phantom/internal/sso"
)

// Options configures Login.
type Options struct {
	STSURL string
	// CABundle is the PEM file of the CA that signed STS's certificate ("" for the
	// system's roots); kept in the cache as an absolute path.
	CABundle string
	// Role is the role ARN (or name) to take; "" takes the one the token's role claim lists.
	Role string
	// Session names the cache entry (--sso-session).
	Session  string
	CacheDir string
	// Duration asks STS for this session length; 0 is STS's default (1h, capped by the role).
	Duration time.Duration
	// DeviceCode uses the device authorization grant instead of the browser.
	DeviceCode bool
	// Browser opens a URL in the person's browser; nil only prints it.
	Browser func(url string) error
	// Out receives the instructions for the person (stderr).
	Out io.Writer
	// ProviderHTTP reaches the provider; nil: sso.NewHTTPClient(nil).
	ProviderHTTP *http.Client
	// Timeout bounds the wait for the person (default 10 minutes).
	Timeout time.Duration
	Now     func() time.Time
}

// Login signs the person in and caches the session; it returns the cache entry.
func Login(ctx context.Context, o Options) (*Entry, error) {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Timeout == 0 {
		o.Timeout = 10 * time.Minute
	}
	if err := checkHTTPS(o.STSURL); err != nil {
		return nil, fmt.Errorf("the STS URL: %w", err)
	}
	if _, err := cacheFile(o.CacheDir, o.Session); err != nil {
		return nil, err
	}
	bundle := o.CABundle
	if bundle != "" {
		abs, err := filepath.Abs(bundle)
		if err != nil {
			return nil, err
		}
		bundle = abs
	}
	stsHTTP, err := stsClient(bundle)
	if err != nil {
		return nil, err
	}
	cfg, err := fetchSignIn(ctx, stsHTTP, o.STSURL)
	if err != nil {
		return nil, err
	}
	hc := o.ProviderHTTP
	if hc == nil {
		hc = sso.NewHTTPClient(nil)
	}
	p, err := sso.Discover(ctx, hc, cfg.Issuer)
	if err != nil {
		return nil, err
	}
	c := &sso.Client{Provider: p, ClientID: cfg.ClientID, Scopes: cfg.Scopes, HTTP: hc, Now: o.Now}
	wait, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	var tok *sso.Token
	if o.DeviceCode {
		tok, err = deviceSignIn(wait, c, o)
	} else {
		tok, err = browserSignIn(wait, c, o)
	}
	if err != nil {
		return nil, err
	}
	claims, err := sso.Claims(tok.IDToken)
	if err != nil {
		return nil, err
	}
	role, err := chooseRole(claims, cfg.RoleClaim, cfg.Account, o.Role)
	if err != nil {
		return nil, err
	}
	e := &Entry{
		STSURL: o.STSURL, CABundle: bundle, Issuer: cfg.Issuer, ClientID: cfg.ClientID, Scopes: cfg.Scopes,
		Account: cfg.Account, Region: cfg.Region, RoleARN: role, SessionName: sso.SessionName(claims),
		Duration: int32(o.Duration / time.Second),
	}
	setTokens(e, tok, claims)
	if err := exchange(ctx, e); err != nil {
		return nil, err
	}
	if err := Save(o.CacheDir, o.Session, e); err != nil {
		return nil, err
	}
	return e, nil
}

// setTokens keeps a token answer's ID token (and refresh token, when the provider sent
// one) in the entry.
func setTokens(e *Entry, tok *sso.Token, claims map[string]any) {
	e.IDToken = tok.IDToken
	e.IDTokenExpiresAt, _ = sso.Expiry(claims)
	if tok.RefreshToken != "" {
		e.RefreshToken = tok.RefreshToken
	}
}

// fetchSignIn reads STS's sign-in settings.
func fetchSignIn(ctx context.Context, hc *http.Client, stsURL string) (*sso.SignInConfig, error) {
	u := strings.TrimSuffix(stsURL, "/") + sso.SignInConfigPath
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("read how to sign in from %s: %w", u, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode == http.StatusNotFound {
		return nil, fmt.Errorf("%s has no sign-in provider: the spec needs oidcProviders[].signIn", stsURL)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("read how to sign in from %s: status %d", u, resp.StatusCode)
	}
	return sso.ParseSignInConfig(body)
}

func deviceSignIn(ctx context.Context, c *sso.Client, o Options) (*sso.Token, error) {
	d, err := c.StartDevice(ctx)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(o.Out, "To sign in, open %s in a browser and enter the code: %s\n", d.VerificationURI, d.UserCode)
	if d.VerificationURIComplete != "" {
		fmt.Fprintf(o.Out, "or open %s\n", d.VerificationURIComplete)
		if o.Browser != nil {
			_ = o.Browser(d.VerificationURIComplete) // the printed URL is the fallback
		}
	}
	fmt.Fprintln(o.Out, "Waiting for the sign-in to be approved...")
	return c.PollDevice(ctx, d)
}

// browserSignIn runs the code flow with PKCE: the provider redirects the browser to a
// listener on 127.0.0.1 (RFC 8252 §7.3), which takes one answer whose state matches.
func browserSignIn(ctx context.Context, c *sso.Client, o Options) (*sso.Token, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listen for the sign-in redirect: %w", err)
	}
	redirect := "http://" + ln.Addr().String() + "/callback"
	verifier, challenge := sso.NewPKCE()
	state, nonce := sso.RandomToken(), sso.RandomToken()
	type result struct {
		code string
		err  error
	}
	done := make(chan result, 1)
	srv := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/callback" || r.Method != http.MethodGet {
			http.NotFound(w, r)
			return
		}
		q := r.URL.Query()
		if subtle.ConstantTimeCompare([]byte(q.Get("state")), []byte(state)) != 1 {
			// Not the answer to our request (a stale tab, or a page trying to inject a code).
			http.Error(w, "This sign-in does not belong to the waiting phantom login.", http.StatusBadRequest)
			return
		}
		res := result{code: q.Get("code")}
		if e := q.Get("error"); e != "" || res.code == "" {
			res = result{err: fmt.Errorf("the provider refused the sign-in: %s %s", printable(e), printable(q.Get("error_description")))}
		}
		select {
		case done <- res:
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			io.WriteString(w, "<!doctype html><title>Phantom sign-in</title><p>"+html.EscapeString(pageText(res.err))+"</p>")
		default:
			http.Error(w, "This sign-in was answered already.", http.StatusConflict)
		}
	})}
	go srv.Serve(ln)
	defer srv.Close()

	authURL := c.AuthCodeURL(redirect, state, nonce, challenge)
	fmt.Fprintf(o.Out, "To sign in, open this URL in a browser on this machine:\n\n  %s\n\nWaiting for the sign-in...\n", authURL)
	if o.Browser != nil {
		_ = o.Browser(authURL)
	}
	var res result
	select {
	case <-ctx.Done():
		return nil, fmt.Errorf("no sign-in arrived: %w", ctx.Err())
	case res = <-done:
	}
	if res.err != nil {
		return nil, res.err
	}
	tok, err := c.Exchange(ctx, res.code, redirect, verifier)
	if err != nil {
		return nil, err
	}
	claims, err := sso.Claims(tok.IDToken)
	if err != nil {
		return nil, err
	}
	// The token answers this request (OpenID Connect Core §3.1.3.7: the nonce). STS
	// verifies the signature.
	if n, _ := claims["nonce"].(string); subtle.ConstantTimeCompare([]byte(n), []byte(nonce)) != 1 {
		return nil, errors.New("the ID token's nonce is not this sign-in's")
	}
	return tok, nil
}

func pageText(err error) string {
	if err != nil {
		return "Sign-in failed: " + err.Error()
	}
	return "Signed in. You may close this window and return to your terminal."
}

// chooseRole picks the role: flag (a name or ARN), which must be among the role claim's
// roles when the perimeter has a role claim, else the claim's only role.
func chooseRole(claims map[string]any, roleClaim, account, flag string) (string, error) {
	if flag != "" && !strings.HasPrefix(flag, "arn:") {
		flag = "arn:aws:iam::" + account + ":role/" + flag
	}
	if roleClaim == "" {
		if flag == "" {
			return "", errors.New("name the role to take with --role: the perimeter's sign-in provider lists no roles in its tokens")
		}
		return flag, nil
	}
	roles, err := sso.Roles(claims, roleClaim, account)
	if err != nil {
		return "", err
	}
	switch {
	case flag != "" && !slices.Contains(roles, flag):
		return "", fmt.Errorf("your sign-in does not list the role %s (claim %s lists: %s)", flag, roleClaim, listOrNone(roles))
	case flag != "":
		return flag, nil
	case len(roles) == 1:
		return roles[0], nil
	case len(roles) == 0:
		return "", fmt.Errorf("your sign-in lists no roles (claim %s): ask for one, or name it with --role", roleClaim)
	default:
		return "", fmt.Errorf("your sign-in lists several roles; pick one with --role: %s", strings.Join(roles, ", "))
	}
}

func listOrNone(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}

// STSError is STS's refusal (an AWS error code), for the CLI's exit status.
type STSError struct {
	Code, Message string
}

func (e *STSError) Error() string {
	return fmt.Sprintf("An error occurred (%s) when calling the AssumeRoleWithWebIdentity operation: %s", e.Code, e.Message)
}

// STS exchanges ID tokens for role sessions with AssumeRoleWithWebIdentity (unsigned: the
// token is the credential), through aws-sdk-go-v2 as any AWS client would.
type STS struct {
	URL    string
	Region string
	HTTP   *http.Client // trusts the perimeter CA
}

// AssumeRoleWithWebIdentity returns a session of role for the token's person, and the
// session's ARN.
func (s *STS) AssumeRoleWithWebIdentity(ctx context.Context, role, session, token string, duration time.Duration) (*Credentials, string, error) {
	client := awssts.New(awssts.Options{
		Region:       s.Region,
		BaseEndpoint: aws.String(s.URL),
		HTTPClient:   s.HTTP,
		Credentials:  aws.AnonymousCredentials{},
	})
	in := &awssts.AssumeRoleWithWebIdentityInput{RoleArn: aws.String(role), RoleSessionName: aws.String(session), WebIdentityToken: aws.String(token)}
	if duration > 0 {
		in.DurationSeconds = aws.Int32(int32(duration / time.Second))
	}
	out, err := client.AssumeRoleWithWebIdentity(ctx, in)
	var ae interface {
		ErrorCode() string
		ErrorMessage() string
	}
	switch {
	case errors.As(err, &ae):
		return nil, "", &STSError{Code: ae.ErrorCode(), Message: ae.ErrorMessage()}
	case err != nil:
		return nil, "", fmt.Errorf("AssumeRoleWithWebIdentity at %s: %w", s.URL, err)
	case out.Credentials == nil || out.Credentials.Expiration == nil || out.AssumedRoleUser == nil:
		return nil, "", fmt.Errorf("AssumeRoleWithWebIdentity at %s returned no credentials", s.URL)
	}
	c := out.Credentials
	return &Credentials{
		Version:         1,
		AccessKeyID:     aws.ToString(c.AccessKeyId),
		SecretAccessKey: aws.ToString(c.SecretAccessKey),
		SessionToken:    aws.ToString(c.SessionToken),
		Expiration:      c.Expiration.UTC(),
	}, aws.ToString(out.AssumedRoleUser.Arn), nil
}

// exchange asks STS for a session with the entry's ID token and keeps it in the entry.
func exchange(ctx context.Context, e *Entry) error {
	hc, err := stsClient(e.CABundle)
	if err != nil {
		return err
	}
	s := &STS{URL: e.STSURL, Region: e.Region, HTTP: hc}
	c, _, err := s.AssumeRoleWithWebIdentity(ctx, e.RoleARN, e.SessionName, e.IDToken, time.Duration(e.Duration)*time.Second)
	if err != nil {
		return err
	}
	e.Credentials = c
	return nil
}

// stsClient is an HTTP client that trusts bundle's CA (the system's roots when "").
func stsClient(bundle string) (*http.Client, error) {
	var roots *x509.CertPool
	if bundle != "" {
		pem, err := os.ReadFile(bundle)
		if err != nil {
			return nil, fmt.Errorf("read the CA bundle: %w", err)
		}
		roots = x509.NewCertPool()
		if !roots.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("the CA bundle %s holds no certificate", bundle)
		}
	}
	return NewSTSHTTPClient(roots), nil
}

// NewSTSHTTPClient is the client aws-sdk-go-v2 reaches STS with: TLS 1.2 or later and the
// given roots (nil: the system's).
func NewSTSHTTPClient(roots *x509.CertPool) *http.Client {
	bc := awshttp.NewBuildableClient().WithTransportOptions(func(t *http.Transport) {
		t.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: roots}
	}).WithTimeout(30 * time.Second)
	return &http.Client{Transport: bc.GetTransport(), Timeout: 30 * time.Second}
}

func checkHTTPS(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "https" || u.Host == "" || u.User != nil {
		return fmt.Errorf("%q is not https://HOST:PORT (Phantom's STS serves only HTTPS)", printable(raw))
	}
	return nil
}

func printable(s string) string {
	if len(s) > 200 {
		s = s[:200]
	}
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return '?'
		}
		return r
	}, s)
}
