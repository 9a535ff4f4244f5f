package identity

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// TestLogComponent: the service's log records name it in a component attribute, not in
// their message, so one process's components can be told apart by a log query.
func TestLogComponent(t *testing.T) {
	st := newFakeStore()
	st.keys["AKIAMALFORMED"] = AccessKey{ID: "AKIAMALFORMED", User: "alice"} // too short, no secret
	var buf bytes.Buffer
	s, err := New(Config{Account: testAccount, Now: newClock(time.Now()).Now, Logger: slog.New(slog.NewTextHandler(&buf, nil))}, st.deps())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := buf.String(); !strings.Contains(got, `msg="skipping malformed access key" component=identity access_key_id=AKIAMALFORMED`) {
		t.Errorf("log: %q", got)
	}
}
