package esl

import (
	"bytes"
	"strings"
)

// URLDecode undoes FreeSWITCH's url-encoding: %XX (either case) becomes the byte; anything else, including
// '+' and a '%' not followed by two hex digits, stays as it is.
func URLDecode(s string) string {
	i := strings.IndexByte(s, '%')
	if i < 0 {
		return s
	}
	b := make([]byte, 0, len(s))
	b = append(b, s[:i]...)
	for ; i < len(s); i++ {
		c := s[i]
		if c == '%' && i+2 < len(s) {
			hi, ok1 := unhex(s[i+1])
			lo, ok2 := unhex(s[i+2])
			if ok1 && ok2 {
				b = append(b, hi<<4|lo)
				i += 2
				continue
			}
		}
		b = append(b, c)
	}
	return string(b)
}

// writeURLDecode writes URLDecode(b) to w.
func writeURLDecode(w *strings.Builder, b []byte) {
	for {
		i := bytes.IndexByte(b, '%')
		if i < 0 {
			w.Write(b)
			return
		}
		w.Write(b[:i])
		b = b[i:]
		if len(b) >= 3 {
			hi, ok1 := unhex(b[1])
			lo, ok2 := unhex(b[2])
			if ok1 && ok2 {
				w.WriteByte(hi<<4 | lo)
				b = b[3:]
				continue
			}
		}
		w.WriteByte('%')
		b = b[1:]
	}
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

const unsafeBytes = "\r\n #%&+:;<=>?@[\\]^`{|}\""

// URLEncode encodes s as FreeSWITCH's switch_url_encode does: control bytes, bytes above 0x7E and
// `\r\n #%&+:;<=>?@[\]^`{|}"` become %XX in upper-case hex, except a '%' already followed by two upper-case
// hex digits, which is kept.
func URLEncode(s string) string {
	if !needsEncoding(s) {
		return s
	}
	return string(AppendURLEncode(make([]byte, 0, len(s)+16), s))
}

// AppendURLEncode appends URLEncode(s) to dst without building an intermediate string.
func AppendURLEncode(dst []byte, s string) []byte {
	if !needsEncoding(s) {
		return append(dst, s...)
	}
	const hex = "0123456789ABCDEF"
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '%' && i+2 < len(s) && isUpperHex(s[i+1]) && isUpperHex(s[i+2]) {
			dst = append(dst, c)
			continue
		}
		if unsafeByte(c) {
			dst = append(dst, '%', hex[c>>4], hex[c&15])
			continue
		}
		dst = append(dst, c)
	}
	return dst
}

func needsEncoding(s string) bool {
	for i := 0; i < len(s); i++ {
		if unsafeByte(s[i]) {
			return true
		}
	}
	return false
}

// unsafeTable marks the bytes URLEncode escapes.
var unsafeTable = func() (t [256]bool) {
	for c := 0; c < 256; c++ {
		t[c] = c < 0x20 || c > 0x7e || strings.IndexByte(unsafeBytes, byte(c)) >= 0
	}
	return t
}()

func unsafeByte(c byte) bool { return unsafeTable[c] }

func isUpperHex(c byte) bool { return ('0' <= c && c <= '9') || ('A' <= c && c <= 'F') }
