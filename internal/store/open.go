package store

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"time"
)

// OpenConfig selects and configures a backend by URL, for callers (cmd/phantom) that
// take the choice from a flag or the spec.
type OpenConfig struct {
	// URL is "" or "sqlite" for SQLite in DataDir, or a "postgres://…" or
	// "postgresql://…" URL for PostgreSQL.
	URL string
	// DataDir is SQLite's directory; PostgreSQL ignores it.
	DataDir string
	// MasterKey is the 32-byte perimeter master key.
	MasterKey []byte
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Open opens the store cfg.URL names. Its errors never contain the URL's password.
func Open(ctx context.Context, cfg OpenConfig) (Store, error) {
	switch {
	case cfg.URL == "" || cfg.URL == "sqlite":
		s, err := OpenSQLite(ctx, Config{DataDir: cfg.DataDir, MasterKey: cfg.MasterKey, Now: cfg.Now})
		if err != nil {
			return nil, err
		}
		return s, nil
	case IsPostgresURL(cfg.URL):
		return nil, fmt.Errorf("open store %s: postgres not yet supported by this build", RedactURL(cfg.URL))
	default:
		return nil, fmt.Errorf("open store: URL %q is neither \"sqlite\" nor a postgres:// or postgresql:// URL", RedactURL(cfg.URL))
	}
}

// IsPostgresURL reports whether u is a PostgreSQL connection URL (scheme postgres or
// postgresql, in any case, as libpq accepts).
func IsPostgresURL(u string) bool {
	i := strings.Index(u, "://")
	if i < 0 {
		return false
	}
	scheme := strings.ToLower(u[:i])
	return scheme == "postgres" || scheme == "postgresql"
}

// redacted replaces a password wherever RedactURL finds one.
const redacted = "xxxxx"

// secretParams are the connection parameters whose values are secrets: libpq's
// password, and sslpassword, which decrypts the client certificate's key.
var secretParams = map[string]bool{"password": true, "sslpassword": true}

// RedactURL returns u with every password replaced by "xxxxx", for logs and errors. It
// handles URLs (user:password@ and ?password=) and libpq keyword/value strings
// (password=…). Input it cannot parse is replaced whole, since where the password sits
// in it is unknown.
func RedactURL(u string) string {
	switch {
	case strings.Contains(u, "://"):
		return redactURL(u)
	case strings.Contains(u, "="):
		return redactKeywords(u)
	default:
		// One word ("sqlite", a path): no key a password could sit under.
		return u
	}
}

func redactURL(u string) string {
	p, err := url.Parse(u)
	if err != nil || p.Opaque != "" {
		return "(unparsable URL, redacted)"
	}
	if p.User != nil {
		if _, ok := p.User.Password(); ok {
			p.User = url.UserPassword(p.User.Username(), redacted)
		}
	}
	if p.RawQuery != "" {
		parts := strings.Split(p.RawQuery, "&")
		for i, part := range parts {
			k, _, _ := strings.Cut(part, "=")
			key, err := url.QueryUnescape(k)
			if err != nil || secretParams[strings.ToLower(strings.TrimSpace(key))] {
				// A key that does not unescape may still be read as "password" by a
				// more lenient parser: redact its value too.
				parts[i] = k + "=" + redacted
			}
		}
		p.RawQuery = strings.Join(parts, "&")
	}
	if p.Fragment != "" {
		// Nothing reads a fragment; it can only be a pasting mistake, maybe a password.
		p.Fragment = redacted
	}
	return p.String()
}

// redactKeywords redacts a libpq keyword/value connection string: key = value pairs
// separated by spaces, a value either single-quoted (with backslash escapes) or running
// to the next space (libpq's conninfo_parse).
func redactKeywords(s string) string {
	var out strings.Builder
	i := 0
	skipSpace := func() {
		for i < len(s) && isConnSpace(s[i]) {
			i++
		}
	}
	for {
		skipSpace()
		if i >= len(s) {
			return out.String()
		}
		start := i
		for i < len(s) && s[i] != '=' && !isConnSpace(s[i]) {
			i++
		}
		key := s[start:i]
		skipSpace()
		if key == "" || i >= len(s) || s[i] != '=' {
			return "(unparsable connection string, redacted)"
		}
		i++
		skipSpace()
		var val string
		if i < len(s) && s[i] == '\'' {
			vs := i
			i++
			closed := false
			for i < len(s) {
				if s[i] == '\\' {
					i += 2
					continue
				}
				if s[i] == '\'' {
					closed = true
					i++
					break
				}
				i++
			}
			if !closed || i > len(s) {
				return "(unparsable connection string, redacted)"
			}
			val = s[vs:i]
		} else {
			vs := i
			for i < len(s) && !isConnSpace(s[i]) {
				if s[i] == '\\' {
					i++
				}
				i++
			}
			if i > len(s) {
				return "(unparsable connection string, redacted)"
			}
			val = s[vs:i]
		}
		if out.Len() > 0 {
			out.WriteByte(' ')
		}
		out.WriteString(key)
		out.WriteByte('=')
		if secretParams[strings.ToLower(key)] {
			out.WriteString(redacted)
		} else {
			out.WriteString(val)
		}
	}
}

func isConnSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'
}
