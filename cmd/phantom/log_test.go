package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"
)

// TestNewLogger: --log-format text|json and --log-level, else $PHANTOM_LOG_FORMAT and
// $PHANTOM_LOG_LEVEL, else text at info; anything else is a usage error (exit 2).
func TestNewLogger(t *testing.T) {
	t.Setenv("PHANTOM_LOG_FORMAT", "")
	t.Setenv("PHANTOM_LOG_LEVEL", "")
	var buf bytes.Buffer
	log, err := newLogger(&buf, logFlags{})
	if err != nil {
		t.Fatal(err)
	}
	log.Debug("hidden")
	log.Info("shown", "key_id", "k1")
	if got := buf.String(); strings.Contains(got, "hidden") || !strings.Contains(got, `level=INFO msg=shown key_id=k1`) {
		t.Errorf("default text at info: %q", got)
	}

	buf.Reset()
	t.Setenv("PHANTOM_LOG_FORMAT", "json")
	t.Setenv("PHANTOM_LOG_LEVEL", "debug")
	if log, err = newLogger(&buf, logFlags{}); err != nil {
		t.Fatal(err)
	}
	log.Debug("shown", "chain", "sts")
	var rec map[string]any
	if err := json.Unmarshal(buf.Bytes(), &rec); err != nil || rec["level"] != "DEBUG" || rec["msg"] != "shown" || rec["chain"] != "sts" {
		t.Errorf("json from the environment: %q %v", buf.String(), err)
	}

	buf.Reset()
	if log, err = newLogger(&buf, logFlags{format: "text", level: "warn"}); err != nil {
		t.Fatal(err)
	}
	log.Info("hidden")
	log.Warn("shown")
	if got := buf.String(); strings.Contains(got, "hidden") || !strings.Contains(got, "level=WARN msg=shown") {
		t.Errorf("flags over the environment: %q", got)
	}

	for _, lf := range []logFlags{{format: "xml"}, {level: "loud"}, {level: "info+4"}} {
		_, err := newLogger(io.Discard, lf)
		var ee *exitError
		if !errors.As(err, &ee) || ee.code != 2 {
			t.Errorf("%+v: %v, want a usage error", lf, err)
		}
	}
}
