package store_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/phantom-perimeter/phantom/internal/store"
)

func TestOpenSQLiteByURL(t *testing.T) {
	for _, u := range []string{"", "sqlite"} {
		t.Run(u, func(t *testing.T) {
			dir := t.TempDir()
			s, err := store.Open(t.Context(), store.OpenConfig{URL: u, DataDir: dir, MasterKey: newMasterKey(t)})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			sq, ok := s.(*store.SQLite)
			if !ok {
				t.Fatalf("Open(%q) returned %T, want *store.SQLite", u, s)
			}
			if !strings.HasPrefix(sq.Path(), dir) {
				t.Errorf("database at %s, want it in %s", sq.Path(), dir)
			}
		})
	}
}

func TestOpenRefusesUnknownURL(t *testing.T) {
	for _, u := range []string{"mysql://root:hunter2secret@db/phantom", "sqlite3", "SQLITE", "file:///tmp/x.db"} {
		t.Run(u, func(t *testing.T) {
			s, err := store.Open(t.Context(), store.OpenConfig{URL: u, DataDir: t.TempDir(), MasterKey: newMasterKey(t)})
			if err == nil {
				s.Close()
				t.Fatal("Open accepted it")
			}
			if strings.Contains(err.Error(), "hunter2secret") {
				t.Errorf("error %q contains the password", err)
			}
		})
	}
}

func TestOpenWithoutMasterKey(t *testing.T) {
	_, err := store.Open(t.Context(), store.OpenConfig{DataDir: t.TempDir()})
	if err == nil {
		t.Fatal("Open without a master key succeeded")
	}
	if errors.Is(err, store.ErrWrongMasterKey) {
		t.Errorf("no key reported as a wrong key: %v", err)
	}
}

func TestIsPostgresURL(t *testing.T) {
	tests := []struct {
		url  string
		want bool
	}{
		{"postgres://u:p@h/db", true},
		{"postgresql://h/db", true},
		{"POSTGRES://h/db", false},      // libpq and pgx match the prefix case-sensitively
		{"host=h dbname=db", false},     // keyword/value: not a URL
		{"postgres:/h/db", false},       // no authority
		{"xpostgres://h/db", false},     //
		{"sqlite", false},               //
		{"", false},                     //
		{"mysql://postgres://x", false}, // the scheme is what comes first
	}
	for _, tc := range tests {
		if got := store.IsPostgresURL(tc.url); got != tc.want {
			t.Errorf("IsPostgresURL(%q) = %v, want %v", tc.url, got, tc.want)
		}
	}
}

func TestRedactURL(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"user and password", "postgres://phantom:s3cret@db:5432/phantom?sslmode=require",
			"postgres://phantom:xxxxx@db:5432/phantom?sslmode=require"},
		{"no password", "postgres://phantom@db/phantom", "postgres://phantom@db/phantom"},
		{"empty password", "postgres://phantom:@db/phantom", "postgres://phantom:xxxxx@db/phantom"},
		{"escaped password", "postgres://u:p%40ss%2Fw@db/x", "postgres://u:xxxxx@db/x"},
		{"password parameter", "postgresql://db/x?user=u&password=s3cret&sslmode=verify-full",
			"postgresql://db/x?user=u&password=xxxxx&sslmode=verify-full"},
		{"escaped parameter name", "postgres://db/x?pass%77ord=s3cret", "postgres://db/x?pass%77ord=xxxxx"},
		{"sslpassword parameter", "postgres://db/x?sslpassword=s3cret", "postgres://db/x?sslpassword=xxxxx"},
		{"several hosts", "postgres://u:s3cret@h1:5432,h2:5433/x", "postgres://u:xxxxx@h1:5432,h2:5433/x"},
		{"stranded password", "postgres://u:s3c/ret@h/x", "(unparsable URL, redacted)"},
		{"userinfo after a question mark", "postgres://h?a:s3cret@y/db", "postgres://h?a:xxxxx@y/db"},
		{"IPv6 host", "postgres://[::1]:5432/x?password=s3cret", "postgres://[::1]:5432/x?password=xxxxx"},
		{"question mark in brackets", "postgres://[a?b]/x?password=s3cret", "postgres://[a?b]/x?password=xxxxx"},
		{"unterminated bracket", "postgres://[::1/x?password=s3cret", "(unparsable URL, redacted)"},
		{"pair without value", "postgres://h/x?s3cret", "postgres://h/x?xxxxx"},
		{"other scheme", "mysql://root:s3cret@db/x", "mysql://root:xxxxx@db/x"},
		{"other scheme with query", "mysql://db/x?pw=s3cret", "mysql://db/x?xxxxx"},
		{"keyword/value", "host=db user=u password=s3cret dbname=x", "host=db user=u password=xxxxx dbname=x"},
		{"keyword/value quoted", "host=db password = 'it''s s3cret' dbname=x", "(unparsable connection string, redacted)"},
		{"keyword/value escaped quote", `host=db password='it\'s s3cret' dbname=x`, "host=db password=xxxxx dbname=x"},
		{"keyword/value unterminated", "host=db password='s3cret", "(unparsable connection string, redacted)"},
		{"sqlite", "sqlite", "sqlite"},
		{"empty", "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := store.RedactURL(tc.in)
			if got != tc.want {
				t.Errorf("RedactURL(%q) = %q, want %q", tc.in, got, tc.want)
			}
			if strings.Contains(got, "s3c") {
				t.Errorf("RedactURL(%q) = %q keeps the password", tc.in, got)
			}
		})
	}
}
