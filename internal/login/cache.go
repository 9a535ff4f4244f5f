package login

import (
	"crypto/sha1"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"time"

	"github.com/phantom-perimeter/phantom/internal/atomicfile"
	"github.com/phantom-perimeter/phantom/internal/sso"
)

// CacheEnv overrides the cache directory; DefaultCacheDir is under the home directory,
// beside the AWS CLI's own caches (~/.aws/sso/cache, ~/.aws/cli/cache) but not in them, so
// `aws sso logout` leaves Phantom's sign-ins alone.
const (
	CacheEnv        = "PHANTOM_SSO_CACHE"
	DefaultCacheDir = ".aws/phantom/sso/cache"
)

// sessionNameRe is what an --sso-session name may be.
var sessionNameRe = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,64}$`)

// Entry is one signed-in session in the cache: where it signs in and the tokens and
// credentials it holds. Secrets (tokens, the secret key) are in a 0600 file in a 0700
// directory, as the AWS CLI keeps its SSO tokens.
type Entry struct {
	STSURL      string   `json:"stsUrl"`
	CABundle    string   `json:"caBundle,omitempty"` // absolute path, "" for the system's roots
	Issuer      string   `json:"issuer"`
	ClientID    string   `json:"clientId"`
	Scopes      []string `json:"scopes"`
	Account     string   `json:"account"`
	Region      string   `json:"region"`
	RoleARN     string   `json:"roleArn"`
	SessionName string   `json:"roleSessionName"`
	// Duration is the DurationSeconds asked of STS; 0 for STS's default.
	Duration int32 `json:"durationSeconds,omitempty"`

	IDToken          string    `json:"idToken"`
	IDTokenExpiresAt time.Time `json:"idTokenExpiresAt"`
	RefreshToken     string    `json:"refreshToken,omitempty"`

	Credentials *Credentials `json:"credentials,omitempty"`
}

// Credentials are a role session in credential_process's shape ("Sourcing credentials
// with an external process"); the field order is the documented one.
type Credentials struct {
	Version         int
	AccessKeyID     string `json:"AccessKeyId"`
	SecretAccessKey string
	SessionToken    string
	Expiration      time.Time
}

// CacheDir is $PHANTOM_SSO_CACHE, else ~/.aws/phantom/sso/cache.
func CacheDir(getenv func(string) string) (string, error) {
	if d := getenv(CacheEnv); d != "" {
		return d, nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("no home directory for the sign-in cache (set %s): %w", CacheEnv, err)
	}
	return filepath.Join(home, DefaultCacheDir), nil
}

// cacheFile is the file of a session: the SHA-1 of its name, as the AWS CLI names its SSO
// cache files.
func cacheFile(dir, session string) (string, error) {
	if !sessionNameRe.MatchString(session) {
		return "", fmt.Errorf("session name %q is not 1 to 64 of letters, digits and ._-", session)
	}
	sum := sha1.Sum([]byte(session))
	return filepath.Join(dir, hex.EncodeToString(sum[:])+".json"), nil
}

// ErrNotSignedIn is a session with no cache entry.
var ErrNotSignedIn = errors.New("not signed in")

// Load reads a session's entry.
func Load(dir, session string) (*Entry, error) {
	path, err := cacheFile(dir, session)
	if err != nil {
		return nil, err
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, ErrNotSignedIn
	}
	if err != nil {
		return nil, fmt.Errorf("read the sign-in cache: %w", err)
	}
	e, err := ParseEntry(b)
	if err != nil {
		return nil, fmt.Errorf("the sign-in cache %s: %w", path, err)
	}
	return e, nil
}

// ParseEntry reads a cache file, refusing one that could send tokens anywhere but an
// https STS and provider (a file edited by someone else).
func ParseEntry(b []byte) (*Entry, error) {
	var e Entry
	if len(b) > 1<<20 {
		return nil, errors.New("larger than 1 MiB")
	}
	if err := json.Unmarshal(b, &e); err != nil {
		return nil, err
	}
	switch {
	case checkHTTPS(e.STSURL) != nil:
		return nil, errors.New("stsUrl is not an https URL")
	case sso.CheckURL(e.Issuer) != nil:
		return nil, errors.New("issuer is not an https URL")
	case e.ClientID == "" || e.RoleARN == "" || e.SessionName == "" || e.IDToken == "":
		return nil, errors.New("clientId, roleArn, roleSessionName or idToken is missing")
	case e.CABundle != "" && !filepath.IsAbs(e.CABundle):
		return nil, errors.New("caBundle is not an absolute path")
	}
	return &e, nil
}

// Save writes a session's entry: the directory 0700, the file 0600, atomically.
func Save(dir, session string, e *Entry) error {
	path, err := cacheFile(dir, session)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create the sign-in cache: %w", err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return fmt.Errorf("the sign-in cache %s: %w", dir, err)
	}
	b, err := json.MarshalIndent(e, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.Write(path, append(b, '\n'), 0o600)
}

// Remove deletes a session's entry (sign out); a missing one is not an error.
func Remove(dir, session string) error {
	path, err := cacheFile(dir, session)
	if err != nil {
		return err
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}
