// Package jsonstr writes JSON strings byte for byte as encoding/json does, without
// reflection: for the hot paths that spell their own JSON (the gateway's identity
// assertion, the audit event of every request) and must stay identical to what
// json.Marshal writes of the same values. It owns no other part of JSON.
package jsonstr

import "unicode/utf8"

// Append appends s as a JSON string the way encoding/json writes it: HTML characters,
// U+2028 and U+2029 escaped, invalid UTF-8 replaced by U+FFFD.
func Append(b []byte, s string) []byte {
	const hexDigits = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		// Most strings (ARNs, addresses, names) have nothing to escape: skip eight such
		// bytes at a time, then one at a time, by table.
		for i+8 <= len(s) && plain8(s[i:i+8]) {
			i += 8
		}
		if i >= len(s) {
			break
		}
		if c := s[i]; c < utf8.RuneSelf {
			if plain[c] {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// plain marks the bytes written as they are: ASCII from 0x20 up but for '"', '\\' and
// the HTML characters '<', '>', '&' (none from 0x80 up: those are UTF-8 to check).
var plain = func() (t [256]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\' && c != '<' && c != '>' && c != '&'
	}
	return t
}()

// plain8 reports whether all eight bytes of s are plain: one branch for the eight.
func plain8(s string) bool {
	_ = s[7]
	return plain[s[0]] && plain[s[1]] && plain[s[2]] && plain[s[3]] &&
		plain[s[4]] && plain[s[5]] && plain[s[6]] && plain[s[7]]
}
