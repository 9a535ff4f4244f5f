package store_test

import (
	"net/url"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/phantom-perimeter/phantom/internal/store"
)

// FuzzRedactURL holds RedactURL to what the driver reads: whatever password pgx finds in
// a connection string is absent from the redacted string, and the redacted string, read
// by pgx, carries no password but the placeholder.
func FuzzRedactURL(f *testing.F) {
	for _, s := range []string{
		"postgres://phantom:s3cret@db:5432/phantom?sslmode=require",
		"postgresql://db/x?user=u&password=s3cret&sslmode=verify-full",
		"postgres://db/x?pass%77ord=s3cret",
		"postgres://u:s3cret@h1:5432,h2:5433/x",
		"postgres://u:s3c/ret@h/x",
		"postgres://h?a:s3cret@y/db",
		"postgres://[::1]:5432/x?password=s3cret",
		"postgres://[a?b]/x?password=s3cret",
		"postgres://u:p%40ss@h/x",
		"host=db user=u password=s3cret dbname=x",
		`host=db password='it\'s s3cret' dbname=x`,
		"host=db password = s3cret",
		"mysql://root:s3cret@db/x",
		"sqlite",
	} {
		f.Add(s)
	}
	// The environment must not supply a password of its own.
	f.Setenv("PGPASSWORD", "")
	f.Setenv("PGPASSFILE", "/nonexistent/phantom-test-pgpass")
	f.Setenv("PGSERVICEFILE", "/nonexistent/phantom-test-pgservice")
	f.Fuzz(func(t *testing.T, s string) {
		got := store.RedactURL(s)
		if cfg, err := pgconn.ParseConfig(s); err == nil && len(cfg.Password) >= 4 &&
			strings.Count(s, cfg.Password) == 1 && !strings.Contains("(unparsable URL, redacted)(unparsable connection string, redacted)", cfg.Password) {
			// The password appears once in the input, so finding it in the output means it
			// was copied there (not that it is also, say, the user name).
			if strings.Contains(got, cfg.Password) {
				t.Errorf("RedactURL(%q) = %q keeps the password %q", s, got, cfg.Password)
			}
			if esc := url.QueryEscape(cfg.Password); esc != cfg.Password && strings.Contains(got, esc) {
				t.Errorf("RedactURL(%q) = %q keeps the escaped password", s, got)
			}
		}
		if cfg, err := pgconn.ParseConfig(got); err == nil && cfg.Password != "" && cfg.Password != "xxxxx" {
			t.Errorf("RedactURL(%q) = %q, which pgx reads as password %q", s, got, cfg.Password)
		}
	})
}
