package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/phantom-perimeter/phantom/internal/login"
)

type loginFlags struct {
	sts, caBundle, role, session string
	duration                     time.Duration
	deviceCode, noBrowser        bool
}

func newLoginCmd() *cobra.Command {
	var f loginFlags
	cmd := &cobra.Command{
		Use:   "login [--sts URL] [--ca-bundle FILE] [--role ARN] [--use-device-code]",
		Short: "Sign in through the perimeter's identity provider and get a role session (like aws sso login)",
		Long: `login signs you in through the OpenID Connect provider of the perimeter spec
(oidcProviders[].signIn), which STS publishes at https://STS/.well-known/phantom/sign-in:
by default in a browser (authorization code with PKCE, redirected to 127.0.0.1), or with
--use-device-code by entering a code on the provider's page from any device (RFC 8628).
The ID token is exchanged with STS AssumeRoleWithWebIdentity for a session of your role:
--role, or the one the token's role claim (signIn.roleClaim) names; the role's trust
policy decides, and the token's https://aws.amazon.com/tags claim becomes session tags.

The ID token, the refresh token and the session are cached in $PHANTOM_SSO_CACHE (default
~/.aws/phantom/sso/cache; 0700, files 0600) under --sso-session. Every AWS tool then gets
sessions from phantom credentials --login, which renews them from the cache (and the
provider's refresh token) without signing in again:

  [profile phantom]
  region = REGION
  credential_process = phantom credentials --login --sso-session default

The STS is --sts or $PHANTOM_STS_URL, its CA --ca-bundle or $AWS_CA_BUNDLE. Failures exit
253 (configuration), 254 (STS refused the session, e.g. the trust policy) or 255.`,
		Example: `  phantom login --sts https://127.0.0.1:8444 --ca-bundle phantom-data/ca.pem
  phantom login --use-device-code --role arn:aws:iam::123456789012:role/developer
  aws sts get-caller-identity --profile phantom --endpoint-url "$PHANTOM_STS_URL"`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return runLogin(ctx, cmd.ErrOrStderr(), f)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.sts, "sts", "", "Phantom's STS URL (default $PHANTOM_STS_URL)")
	fl.StringVar(&f.caBundle, "ca-bundle", "", "PEM file of the CA that signed the STS certificate (default $AWS_CA_BUNDLE)")
	fl.StringVar(&f.role, "role", "", "role ARN or name to take (default: the one your sign-in lists)")
	fl.StringVar(&f.session, "sso-session", "default", "name of the cached sign-in, for credentials --login --sso-session")
	fl.DurationVar(&f.duration, "duration", 0, "session duration, 15m to 12h and at most the role's maximum (default: STS's, 1h)")
	fl.BoolVar(&f.deviceCode, "use-device-code", false, "sign in by entering a code on the provider's page (RFC 8628), from any device")
	fl.BoolVar(&f.noBrowser, "no-browser", false, "print the URL instead of opening a browser")
	return cmd
}

func runLogin(ctx context.Context, stderr io.Writer, f loginFlags) error {
	stsURL := cmp.Or(f.sts, os.Getenv("PHANTOM_STS_URL"))
	if stsURL == "" {
		return awsFail(stderr, exitUsage, "phantom login: no STS URL: pass --sts https://HOST:PORT or set PHANTOM_STS_URL")
	}
	if f.duration != 0 && (f.duration < 15*time.Minute || f.duration > 12*time.Hour) {
		return awsFail(stderr, exitUsage, "phantom login: --duration %s is outside STS's 15m to 12h", f.duration)
	}
	dir, err := login.CacheDir(os.Getenv)
	if err != nil {
		return awsFail(stderr, exitConfig, "phantom login: %v", err)
	}
	o := login.Options{
		STSURL: stsURL, CABundle: cmp.Or(f.caBundle, os.Getenv("AWS_CA_BUNDLE")), Role: f.role, Session: f.session,
		CacheDir: dir, Duration: f.duration, DeviceCode: f.deviceCode, Out: stderr,
	}
	if !f.noBrowser {
		o.Browser = openBrowser
	}
	e, err := login.Login(ctx, o)
	var se *login.STSError
	switch {
	case errors.As(err, &se):
		return awsFail(stderr, exitService, "%v", se)
	case err != nil:
		return awsFail(stderr, exitConfig, "phantom login: %v", err)
	}
	fmt.Fprintf(stderr, "\nSigned in as %s (session %s of %s) until %s.\nCached as --sso-session %s; a profile for every AWS tool:\n\n  [profile phantom]\n  region = %s\n  credential_process = phantom credentials --login --sso-session %s\n",
		e.SessionName, e.SessionName, e.RoleARN, e.Credentials.Expiration.Format(time.RFC3339), f.session, e.Region, f.session)
	return nil
}

// openBrowser opens url in the person's browser ($BROWSER, else the desktop's opener);
// the URL is printed anyway, so a failure only means the person opens it.
func openBrowser(url string) error {
	name, args := os.Getenv("BROWSER"), []string{url}
	if name == "" {
		switch runtime.GOOS {
		case "darwin":
			name = "open"
		case "windows":
			name, args = "rundll32", []string{"url.dll,FileProtocolHandler", url}
		default:
			name = "xdg-open"
		}
	}
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
	if err := cmd.Start(); err != nil {
		return err
	}
	go cmd.Wait()
	return nil
}

func newLogoutCmd() *cobra.Command {
	var session string
	cmd := &cobra.Command{
		Use:   "logout [--sso-session NAME]",
		Short: "Forget a phantom login: its tokens and cached session",
		Long: `logout deletes the cached sign-in of --sso-session (default "default") from
$PHANTOM_SSO_CACHE (default ~/.aws/phantom/sso/cache): its ID token, refresh token and role
session. phantom credentials --login fails for it afterwards until you sign in again. The
session STS issued stays valid until it expires; revoke the role's sessions
(phantom iam revoke-sessions) to end it at once. Signing out of a session that is not
signed in is not an error.`,
		Example: `  phantom logout
  phantom logout --sso-session work`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			dir, err := login.CacheDir(os.Getenv)
			if err == nil {
				err = login.Remove(dir, session)
			}
			if err != nil {
				return awsFail(cmd.ErrOrStderr(), exitConfig, "phantom logout: %v", err)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&session, "sso-session", "default", "name of the cached sign-in")
	return cmd
}
