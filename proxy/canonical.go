package proxy

import (
	"errors"
	"fmt"
	"strings"
)

// errBadPath is the 400 answer for a path whose meaning is ambiguous.
var errBadPath = errors.New("proxy: ambiguous or malformed request path")

// errEncodedSlash is the errBadPath for %2F or %5C: the one ambiguity an
// upstream may opt in to (allow_encoded_slashes).
var errEncodedSlash = fmt.Errorf("%w: encoded slash or backslash", errBadPath)

// canonicalPath returns the one form of an escaped request path that
// routing, public matching and forwarding all use (DESIGN.md "Canonical
// path"): percent-encoded unreserved characters are decoded, other escapes
// are kept with upper-case hex, "." and ".." segments are resolved (also
// when encoded), and repeated slashes are merged. It refuses encoded "/" or
// "\", a raw "\", NUL and control characters raw or encoded, malformed
// escapes, and a "." or ".." segment carrying ";" parameters — each of
// these means different things to different servers, and the upstream must
// never see a path the gate did not judge.
//
// The result is escaped (suitable for URL.RawPath) and always starts with "/".
func canonicalPath(raw string) (string, error) { return canonicalize(raw, false) }

// canonicalize is canonicalPath; with keepSlashes, %2F and %5C are kept
// (upper-cased) as literal parts of their segment instead of refused. Such
// a path is routed as written, never split or resolved at them; what the
// upstream makes of them is the upstream's business, which is why the gate
// never treats such a path as public.
func canonicalize(raw string, keepSlashes bool) (string, error) {
	if raw == "" {
		return "/", nil
	}
	if raw[0] != '/' {
		return "", fmt.Errorf("%w: does not start with /", errBadPath)
	}
	if isCanonical(raw) {
		return raw, nil
	}
	segs := make([]string, 0, 8)
	var seg strings.Builder
	trailing := false
	i := 1
	for {
		// Read one segment: raw[i:j].
		j := strings.IndexByte(raw[i:], '/')
		end := j < 0
		if end {
			j = len(raw)
		} else {
			j += i
		}
		seg.Reset()
		for k := i; k < j; k++ {
			c := raw[k]
			switch {
			case c == '%':
				if k+2 >= j {
					return "", fmt.Errorf("%w: truncated escape", errBadPath)
				}
				hi, ok1 := unhex(raw[k+1])
				lo, ok2 := unhex(raw[k+2])
				if !ok1 || !ok2 {
					return "", fmt.Errorf("%w: malformed escape", errBadPath)
				}
				v := hi<<4 | lo
				switch {
				case (v == '/' || v == '\\') && !keepSlashes:
					return "", errEncodedSlash
				case v < 0x20 || v == 0x7f:
					return "", fmt.Errorf("%w: encoded control character", errBadPath)
				case isUnreserved(v):
					seg.WriteByte(v)
				default:
					seg.WriteByte('%')
					seg.WriteByte(upperhex[v>>4])
					seg.WriteByte(upperhex[v&15])
				}
				k += 2
			case c == '\\':
				return "", fmt.Errorf("%w: backslash", errBadPath)
			case c < 0x20 || c == 0x7f:
				return "", fmt.Errorf("%w: control character", errBadPath)
			default:
				seg.WriteByte(c)
			}
		}
		s := seg.String()
		switch {
		case s == "":
			trailing = true // "//" merges; a final "/" is kept
		case s == ".":
			trailing = true
		case s == "..":
			if len(segs) > 0 {
				segs = segs[:len(segs)-1]
			}
			trailing = true
		case isDotParams(s):
			return "", fmt.Errorf("%w: dot segment with parameters", errBadPath)
		case keepSlashes && hasDotPiece(s):
			// Kept %2F/%5C are not separators here, but an upstream
			// that decodes them would resolve these pieces.
			return "", fmt.Errorf("%w: dot segment behind an encoded slash", errBadPath)
		default:
			segs = append(segs, s)
			trailing = false
		}
		if end {
			break
		}
		i = j + 1
	}
	n := 1
	for _, s := range segs {
		n += len(s) + 1
	}
	var b strings.Builder
	b.Grow(n)
	for _, s := range segs {
		b.WriteByte('/')
		b.WriteString(s)
	}
	if trailing || len(segs) == 0 {
		b.WriteByte('/')
	}
	return b.String(), nil
}

// isDotParams reports a "." or ".." segment carrying parameters, with the
// ";" raw or encoded (%3B): an upstream that decodes before stripping
// parameters would read "..%3B" as "..".
func isDotParams(s string) bool {
	rest := strings.TrimPrefix(strings.TrimPrefix(s, "."), ".")
	if len(rest) == len(s) {
		return false
	}
	return strings.HasPrefix(rest, ";") || strings.HasPrefix(rest, "%3B")
}

// hasDotPiece reports whether a segment kept with encoded slashes has a
// "." or ".." piece (possibly with parameters) between them.
func hasDotPiece(s string) bool {
	if !strings.Contains(s, "%2F") && !strings.Contains(s, "%5C") {
		return false
	}
	for _, piece := range strings.FieldsFunc(strings.NewReplacer("%2F", "/", "%5C", "/").Replace(s), func(r rune) bool { return r == '/' }) {
		if piece == "." || piece == ".." || isDotParams(piece) {
			return true
		}
	}
	return false
}

// decodeSlashes turns kept %2F and %5C into real slashes: the path an
// upstream that decodes them would see.
func decodeSlashes(p string) string {
	return strings.NewReplacer("%2F", "/", "%5C", "/").Replace(p)
}

// isCanonical is the fast path: most paths contain nothing to normalise.
func isCanonical(p string) bool {
	prevSlash := false
	for i := 0; i < len(p); i++ {
		c := p[i]
		switch {
		case c == '/':
			if prevSlash {
				return false
			}
			prevSlash = true
			continue
		case c == '.':
			if prevSlash {
				return false // "/." or "/..": maybe a dot segment
			}
		case c == '%' || c == '\\' || c < 0x20 || c == 0x7f:
			return false
		}
		prevSlash = false
	}
	return true
}

const upperhex = "0123456789ABCDEF"

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

// isUnreserved reports RFC 3986 §2.3 unreserved characters.
func isUnreserved(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		c == '-' || c == '.' || c == '_' || c == '~'
}
