package esl

import "strings"

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
	need := false
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || strings.IndexByte(unsafeBytes, c) >= 0 {
			need = true
			break
		}
	}
	if !need {
		return s
	}
	const hex = "0123456789ABCDEF"
	b := make([]byte, 0, len(s)+16)
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '%' && i+2 < len(s) && isUpperHex(s[i+1]) && isUpperHex(s[i+2]) {
			b = append(b, c)
			continue
		}
		if c < 0x20 || c > 0x7e || strings.IndexByte(unsafeBytes, c) >= 0 {
			b = append(b, '%', hex[c>>4], hex[c&15])
			continue
		}
		b = append(b, c)
	}
	return string(b)
}

func isUpperHex(c byte) bool { return ('0' <= c && c <= '9') || ('A' <= c && c <= 'F') }
