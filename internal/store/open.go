package store

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/phantom-perimeter/phantom/internal/keys"
)

// OpenConfig selects and configures a backend by URL, for callers (cmd/phantom) that
// take the choice from a flag or the spec.
type OpenConfig struct {
	// URL is "" or "sqlite" for SQLite in DataDir, or a "postgres://…" or
	// "postgresql://…" URL for PostgreSQL.
	URL string
	// DataDir is SQLite's directory; PostgreSQL ignores it.
	DataDir string
	// MasterKey is the 32-byte perimeter master key. Keys, when set, replaces it: the
	// ring of the keys this process holds (a component's, from its key file).
	MasterKey []byte
	Keys      *keys.Ring
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Open opens the store cfg.URL names. Its errors never contain the URL's password.
func Open(ctx context.Context, cfg OpenConfig) (Store, error) {
	switch {
	case cfg.URL == "" || cfg.URL == "sqlite":
		s, err := OpenSQLite(ctx, Config{DataDir: cfg.DataDir, MasterKey: cfg.MasterKey, Keys: cfg.Keys, Now: cfg.Now})
		if err != nil {
			return nil, err
		}
		return s, nil
	case IsPostgresURL(cfg.URL):
		s, err := OpenPostgres(ctx, PostgresConfig{DSN: cfg.URL, MasterKey: cfg.MasterKey, Keys: cfg.Keys, Now: cfg.Now})
		if err != nil {
			return nil, err
		}
		return s, nil
	default:
		return nil, fmt.Errorf("open store: URL %q is neither \"sqlite\" nor a postgres:// or postgresql:// URL", RedactURL(cfg.URL))
	}
}

// IsPostgresURL reports whether u is a PostgreSQL connection URL: it starts with
// postgres:// or postgresql://, spelled in lower case exactly as libpq and pgx require
// (anything else they read as a keyword/value string).
func IsPostgresURL(u string) bool {
	return strings.HasPrefix(u, "postgres://") || strings.HasPrefix(u, "postgresql://")
}

// redacted replaces a password wherever RedactURL finds one.
const redacted = "xxxxx"

// secretParams are the connection parameters whose values are secrets: libpq's
// password, and sslpassword, which decrypts the client certificate's key.
var secretParams = map[string]bool{"password": true, "sslpassword": true}

// RedactURL returns u with every password replaced by "xxxxx", for logs and errors. It
// handles PostgreSQL URLs (user:password@ and ?password=), libpq keyword/value strings
// (password=…) and other URLs. Input it cannot parse with certainty is replaced whole,
// since where a password sits in it is unknown.
func RedactURL(u string) string {
	switch {
	case IsPostgresURL(u):
		return redactPostgresURL(u)
	case strings.Contains(u, "://"):
		return redactOtherURL(u)
	case strings.Contains(u, "="):
		return redactKeywords(u)
	default:
		// One word ("sqlite", a path): no key a password could sit under.
		return u
	}
}

const (
	unparsableURL     = "(unparsable URL, redacted)"
	unparsableConnStr = "(unparsable connection string, redacted)"
)

// redactPostgresURL follows the structure of libpq's URI parser, which pgx copies, rather
// than net/url's, because the two disagree on malformed input (libpq ends the userinfo
// at the first '@' before any '/', even past a '?'), and what counts is where the
// driver will find a password.
func redactPostgresURL(u string) string {
	prefix := "postgres://"
	if strings.HasPrefix(u, "postgresql://") {
		prefix = "postgresql://"
	}
	p := u[len(prefix):]
	if strings.IndexByte(p, 0) >= 0 {
		return unparsableURL
	}
	var b strings.Builder
	b.WriteString(prefix)
	if i := strings.IndexAny(p, "@/"); i >= 0 && p[i] == '@' {
		user, _, hasPassword := strings.Cut(p[:i], ":")
		b.WriteString(user)
		if hasPassword {
			b.WriteString(":" + redacted)
		}
		b.WriteByte('@')
		p = p[i+1:]
	}
	// Another '@' means a malformed URL in which a password may have been stranded
	// (an unescaped '/' in it ends the userinfo early: postgres://u:pa/ss@h).
	if strings.IndexByte(p, '@') >= 0 {
		return unparsableURL
	}
	qi, ok := postgresQueryStart(p)
	if !ok {
		return unparsableURL
	}
	if qi < 0 {
		b.WriteString(p)
		return b.String()
	}
	b.WriteString(p[:qi+1])
	for i, pair := range strings.Split(p[qi+1:], "&") {
		if i > 0 {
			b.WriteByte('&')
		}
		rawKey, _, hasValue := strings.Cut(pair, "=")
		key, err := url.PathUnescape(rawKey)
		switch {
		case !hasValue:
			b.WriteString(redacted) // malformed: it may be a password without its key
		case err != nil || secretParams[strings.ToLower(strings.TrimSpace(key))]:
			b.WriteString(rawKey + "=" + redacted)
		default:
			b.WriteString(pair)
		}
	}
	return b.String()
}

// postgresQueryStart returns the index of the '?' that starts p's query (p being what
// follows the userinfo), or -1, skipping hosts, bracketed IPv6 addresses, ports and the
// database name as libpq does.
func postgresQueryStart(p string) (int, bool) {
	i := 0
	for {
		if i < len(p) && p[i] == '[' {
			end := strings.IndexByte(p[i:], ']')
			if end < 0 {
				return 0, false
			}
			i += end + 1
		} else {
			i += indexOrEnd(p[i:], ":/?,")
		}
		if i < len(p) && p[i] == ':' {
			i++
			i += indexOrEnd(p[i:], "/?,")
		}
		if i < len(p) && p[i] == ',' {
			i++
			continue
		}
		break
	}
	if i < len(p) && p[i] == '/' {
		i += indexOrEnd(p[i:], "?")
	}
	if i < len(p) && p[i] == '?' {
		return i, true
	}
	return -1, true
}

func indexOrEnd(s, chars string) int {
	if i := strings.IndexAny(s, chars); i >= 0 {
		return i
	}
	return len(s)
}

// redactOtherURL redacts a URL of another scheme (named in an error that refuses it).
func redactOtherURL(u string) string {
	p, err := url.Parse(u)
	if err != nil || p.Opaque != "" {
		return unparsableURL
	}
	if p.User != nil {
		if _, ok := p.User.Password(); ok {
			p.User = url.UserPassword(p.User.Username(), redacted)
		}
	}
	if p.RawQuery != "" || p.ForceQuery || p.Fragment != "" {
		// Not ours to interpret: keep only where it points.
		p.RawQuery, p.ForceQuery, p.Fragment = "", false, ""
		return p.String() + "?" + redacted
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
			return unparsableConnStr
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
				return unparsableConnStr
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
				return unparsableConnStr
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
