package main

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/spf13/cobra"
)

// opsListenHelp documents --ops-listen on every long-running command.
const opsListenHelp = "serve GET /metrics (Prometheus), /healthz and /readyz (503 with the reason until the listeners serve, while the perimeter state is stale or while the audit log cannot be written) over HTTPS with a perimeter-CA certificate on this address (default: off)"

// logFlags are the root command's --log-format and --log-level.
type logFlags struct{ format, level string }

// addLogFlags adds --log-format and --log-level to every command.
func addLogFlags(root *cobra.Command) {
	pf := root.PersistentFlags()
	pf.String("log-format", "", "log format: text or json (default $PHANTOM_LOG_FORMAT, else text)")
	pf.String("log-level", "", "log level: debug, info, warn or error (default $PHANTOM_LOG_LEVEL, else info)")
}

// logFlagsOf reads the log flags a command inherited from the root.
func logFlagsOf(cmd *cobra.Command) logFlags {
	var lf logFlags
	lf.format, _ = cmd.Flags().GetString("log-format")
	lf.level, _ = cmd.Flags().GetString("log-level")
	return lf
}

// newLogger is every command's structured logger on w: the flag, else the environment
// variable, else text at info. A value it does not know is a usage error (exit 2).
func newLogger(w io.Writer, lf logFlags) (*slog.Logger, error) {
	format := firstNonEmpty(lf.format, os.Getenv("PHANTOM_LOG_FORMAT"), "text")
	level := firstNonEmpty(lf.level, os.Getenv("PHANTOM_LOG_LEVEL"), "info")
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil || strings.ContainsAny(level, "+-") {
		return nil, &exitError{code: 2, err: fmt.Errorf("log level %q: use debug, info, warn or error", level)}
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch strings.ToLower(format) {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, &exitError{code: 2, err: fmt.Errorf("log format %q: use text or json", format)}
}

// firstNonEmpty returns the first non-empty string.
func firstNonEmpty(vs ...string) string {
	for _, v := range vs {
		if v != "" {
			return v
		}
	}
	return ""
}

// auditAnchorsEnv supplies --audit-anchors.
const auditAnchorsEnv = "PHANTOM_AUDIT_ANCHORS"

// auditAnchorsHelp documents --audit-anchors on every command that writes audit chains.
const auditAnchorsHelp = "also anchor every audit digest in this PostgreSQL schema (postgres://…; repeatable; default $" + auditAnchorsEnv + ", space-separated): ideally on another host, with a login that may only insert anchors (phantom audit anchors grant)"

// auditAnchorURLs is --audit-anchors, else the environment variable's words.
func auditAnchorURLs(flag []string) []string {
	if len(flag) > 0 {
		return flag
	}
	return strings.Fields(os.Getenv(auditAnchorsEnv))
}
