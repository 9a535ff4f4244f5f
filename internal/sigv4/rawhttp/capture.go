package rawhttp

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
)

// Capture formats ParseCapture recognizes.
const (
	FormatRaw        = "raw"         // the request as sent
	FormatCurlV      = "curl -v"     // "> " lines on stderr: headers only
	FormatTraceASCII = "trace-ascii" // curl --trace-ascii: headers and body
	FormatTrace      = "trace"       // curl --trace: hex dumps, every byte exact
)

// maxCaptureLines bounds how many lines of a capture are looked at: a debug log of one
// request is a few hundred (a --trace of a large upload a few thousand per MB).
const maxCaptureLines = 1 << 20

// ParseCapture reads the first request of a client's debug output and parses it as Parse
// does: curl -v's "> " lines (which show the headers but never the body, so a request
// with a body is refused with the advice to use --trace-ascii), curl --trace-ascii and
// --trace dumps (the "=> Send header" block and the "=> Send data" blocks after it), or
// a raw request. HTTP/2 and HTTP/3 captures work alike: curl shows their headers in
// HTTP/1.1's layout with an "HTTP/2" request line. It also returns which format it read.
//
// --trace-ascii prints bytes outside printable ASCII (and line feeds without a carriage
// return) as '.', so a body holding them cannot be recovered from it; --trace keeps them.
func ParseCapture(data []byte) (*http.Request, []byte, string, error) {
	format, raw, err := extract(data)
	if err != nil {
		return nil, nil, format, err
	}
	if format == FormatCurlV {
		if h, ok := bodyHeader(raw); ok {
			return nil, nil, format, fmt.Errorf("rawhttp: curl -v shows the headers of a request with a body (%s) but not the body: capture it with curl --trace-ascii FILE instead", h)
		}
	}
	r, body, err := Parse(raw)
	if err != nil {
		return nil, nil, format, err
	}
	return r, body, format, nil
}

// bodyHeader returns the header line of raw that announces a body (a Content-Length
// other than 0, or a Transfer-Encoding).
func bodyHeader(raw []byte) (string, bool) {
	_, rest, _ := nextLine(raw)
	for len(rest) > 0 {
		var line []byte
		line, rest, _ = nextLine(rest)
		if len(line) == 0 {
			break
		}
		name, value, _ := strings.Cut(string(line), ":")
		value = strings.TrimSpace(value)
		switch {
		case strings.EqualFold(name, "Content-Length") && value != "0",
			strings.EqualFold(name, "Transfer-Encoding"):
			return string(line), true
		}
	}
	return "", false
}

// extract finds the request in data and returns it as raw bytes.
func extract(data []byte) (string, []byte, error) {
	first := firstLine(data)
	switch {
	case hasAnyPrefix(first, "== Info:", "=> ", "<= "):
		format := traceFormat(data)
		raw, err := fromTrace(data, format == FormatTrace)
		return format, raw, err
	case hasAnyPrefix(first, "* ", "> ", "< ", "{ [", "} [") || first == ">":
		raw, err := fromVerbose(data)
		return FormatCurlV, raw, err
	}
	return FormatRaw, data, nil
}

func firstLine(data []byte) string {
	data = bytes.TrimLeft(data, "\r\n")
	line, _, _ := nextLine(data)
	return string(line)
}

func hasAnyPrefix(s string, prefixes ...string) bool {
	for _, p := range prefixes {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}

// fromVerbose takes the first run of "> " lines: curl -v prints each request header line
// (with its CRLF) after "> ", and the blank line that ends them as ">" or "> ".
func fromVerbose(data []byte) ([]byte, error) {
	var out bytes.Buffer
	started := false
	for n := 0; len(data) > 0; n++ {
		if n > maxCaptureLines {
			return nil, fmt.Errorf("rawhttp: more than %d lines before the request ends", maxCaptureLines)
		}
		var line []byte
		line, data, _ = nextLine(data)
		if len(line) == 0 || line[0] != '>' {
			if started {
				break
			}
			continue
		}
		started = true
		line = bytes.TrimPrefix(line[1:], []byte(" "))
		out.Write(line)
		out.WriteString("\r\n")
		if len(line) == 0 {
			break // the blank line after the headers
		}
	}
	if !started {
		return nil, errors.New("rawhttp: no request in the curl -v output (no lines starting with \"> \")")
	}
	return out.Bytes(), nil
}

// traceFormat tells --trace from --trace-ascii by the first dump line of the first sent
// header: --trace lays out sixteen hex bytes before the text.
func traceFormat(data []byte) string {
	for _, b := range traceBlocks(data, 1) {
		if b.kind == "Send header" && len(b.lines) > 0 {
			if _, ok := hexLine(b.lines[0].text); ok {
				return FormatTrace
			}
			break
		}
	}
	return FormatTraceASCII
}

// traceBlock is one "=> Send header, N bytes (0xN)" section of a curl trace and its dump
// lines ("OFFSET: text").
type traceBlock struct {
	kind  string // "Send header", "Send data", "Recv header", "Send SSL data", …
	size  int
	lines []traceLine
}

type traceLine struct {
	offset int
	text   string
}

// traceBlocks splits a trace into its blocks, stopping after limit "Send header" blocks
// have ended (0: no limit).
func traceBlocks(data []byte, limit int) []traceBlock {
	var blocks []traceBlock
	headers := 0
	for n := 0; len(data) > 0 && n <= maxCaptureLines; n++ {
		var line []byte
		line, data, _ = nextLine(data)
		s := string(line)
		if kind, size, ok := blockHeader(s); ok {
			if kind == "Send header" {
				headers++
				if limit > 0 && headers > limit {
					break
				}
			}
			blocks = append(blocks, traceBlock{kind: kind, size: size})
			continue
		}
		if strings.HasPrefix(s, "== Info:") || len(blocks) == 0 {
			continue
		}
		off, text, ok := dumpLine(s)
		if !ok {
			continue
		}
		b := &blocks[len(blocks)-1]
		b.lines = append(b.lines, traceLine{off, text})
	}
	return blocks
}

// blockHeader parses "=> Send header, 391 bytes (0x187)" and "<= Recv data, 12 bytes (0xc)".
func blockHeader(s string) (kind string, size int, ok bool) {
	if !hasAnyPrefix(s, "=> ", "<= ") {
		return "", 0, false
	}
	kind, rest, ok := strings.Cut(s[3:], ", ")
	if !ok {
		return "", 0, false
	}
	n, _, ok := strings.Cut(rest, " bytes")
	if !ok {
		return "", 0, false
	}
	size, err := strconv.Atoi(n)
	if err != nil || size < 0 {
		return "", 0, false
	}
	return kind, size, true
}

// dumpLine parses "0031: text": a hexadecimal offset, a colon and a space.
func dumpLine(s string) (int, string, bool) {
	hexOff, text, ok := strings.Cut(s, ": ")
	if !ok || len(hexOff) < 4 || len(hexOff) > 8 {
		if strings.HasSuffix(s, ":") && len(s) >= 5 && len(s) <= 9 {
			hexOff, text = s[:len(s)-1], "" // an empty line whose trailing space was lost
		} else {
			return 0, "", false
		}
	}
	off, err := strconv.ParseUint(hexOff, 16, 32)
	if err != nil {
		return 0, "", false
	}
	return int(off), text, true
}

// hexLine decodes the hex part of a --trace dump line: sixteen "xx " columns (blank past
// the last byte), then the bytes as text.
func hexLine(text string) ([]byte, bool) {
	const width = 16
	if len(text) < width*3 {
		return nil, false
	}
	var out []byte
	for i := 0; i < width; i++ {
		col := text[i*3 : i*3+3]
		if col == "   " {
			// Past the last byte: the rest of the columns are blank too.
			if strings.TrimSpace(text[i*3:width*3]) != "" {
				return nil, false
			}
			break
		}
		if col[2] != ' ' {
			return nil, false
		}
		v, err := strconv.ParseUint(col[:2], 16, 8)
		if err != nil {
			return nil, false
		}
		out = append(out, byte(v))
	}
	return out, len(out) > 0
}

// fromTrace rebuilds the first request of a trace: its "Send header" block and the "Send
// data" blocks that follow it.
func fromTrace(data []byte, hex bool) ([]byte, error) {
	var out bytes.Buffer
	found := false
	for _, b := range traceBlocks(data, 1) {
		switch {
		case b.kind == "Send header":
			found = true
		case b.kind == "Send data" && found:
		default:
			continue
		}
		raw, err := b.bytes(hex)
		if err != nil {
			return nil, err
		}
		out.Write(raw)
	}
	if !found {
		return nil, errors.New("rawhttp: no request in the curl trace (no \"=> Send header\" block)")
	}
	return out.Bytes(), nil
}

// bytes rebuilds a block's bytes. A --trace (hex) line holds its bytes in hex. A
// --trace-ascii line holds up to 64 characters and ends early at a CRLF, which it leaves
// out: the next line's offset (or, for the last, the block's size) says whether one was
// there (curl's tool_cb_dbg.c dump()).
func (b traceBlock) bytes(hex bool) ([]byte, error) {
	var out []byte
	for i, l := range b.lines {
		if l.offset != len(out) {
			return nil, fmt.Errorf("rawhttp: the trace's %s block jumps to offset %#x at %#x: lines are missing", b.kind, l.offset, len(out))
		}
		if hex {
			h, ok := hexLine(l.text)
			if !ok {
				return nil, fmt.Errorf("rawhttp: the trace's %s block has a line at offset %#x that is not a --trace hex dump", b.kind, l.offset)
			}
			out = append(out, h...)
			continue
		}
		out = append(out, l.text...)
		next := b.size
		if i+1 < len(b.lines) {
			next = b.lines[i+1].offset
		}
		switch next - len(out) {
		case 0:
		case 2:
			out = append(out, '\r', '\n')
		default:
			return nil, fmt.Errorf("rawhttp: the trace's %s block does not add up at offset %#x (%d bytes shown, the next at %#x)", b.kind, l.offset, len(l.text), next)
		}
	}
	if len(out) != b.size {
		return nil, fmt.Errorf("rawhttp: the trace's %s block shows %d of its %d bytes", b.kind, len(out), b.size)
	}
	return out, nil
}
