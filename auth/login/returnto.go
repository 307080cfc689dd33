package login

import (
	"net"
	"net/url"
	"strings"
)

// maxDecodeRounds bounds how many layers of percent-encoding CleanReturnTarget
// peels off; anything still changing after that is refused rather than
// guessed at.
const maxDecodeRounds = 8

// CleanReturnTarget returns rd when it is a safe place to send the browser
// after sign-in or sign-out, and "/" otherwise. It never returns an error:
// a bad rd is replaced silently (DESIGN.md "Return targets").
//
// rd is accepted when it is either
//   - a path on this site: it starts with a single "/", and
//     neither it nor any percent-decoding of it (decoded repeatedly, so
//     %252F counts as "/") starts with "//" or "/\", contains a backslash or a
//     control character, or becomes scheme-relative once "." and ".."
//     segments are removed; or
//   - an absolute http or https URL without userinfo whose host is one of
//     allowedHosts (compared case-insensitively, a trailing dot ignored; an
//     entry with a port must match the port too).
//
// The returned value is re-serialised by net/url, so what is checked is what
// the Location header carries. Callers MUST pass every rd that ends up in a
// redirect through this function (open redirects, RFC 9700 §4.11).
func CleanReturnTarget(rd string, allowedHosts []string) string {
	if rd == "" || !cleanLayers(rd) {
		return "/"
	}
	u, err := url.Parse(rd)
	if err != nil || u.Opaque != "" || u.User != nil {
		return "/"
	}
	if u.Scheme == "" && u.Host == "" {
		if !strings.HasPrefix(rd, "/") || !localPathOK(rd) {
			return "/"
		}
		out := u.String()
		if !strings.HasPrefix(out, "/") || strings.HasPrefix(out, "//") {
			return "/"
		}
		return out
	}
	scheme := strings.ToLower(u.Scheme)
	if scheme != "http" && scheme != "https" || u.Host == "" {
		return "/"
	}
	// A raw rd must spell its scheme and "//" literally; "https:/\host" and
	// friends were refused above, this catches "https:/host" style oddities.
	if !strings.HasPrefix(strings.ToLower(rd), scheme+"://") {
		return "/"
	}
	if !hostAllowed(u, allowedHosts) {
		return "/"
	}
	u.Scheme = scheme
	return u.String()
}

// cleanLayers reports whether s and every percent-decoding of it is free of
// backslashes, control characters and whitespace that browsers strip, and
// whether, for a local path, no layer turns into a scheme-relative URL.
func cleanLayers(s string) bool {
	local := strings.HasPrefix(s, "/")
	return everyLayer(s, func(layer string) bool { return layerOK(layer, local) })
}

// everyLayer reports whether ok holds for s and for each successive
// percent-decoding of it, until decoding changes nothing. A value that
// does not decode, or still changes after maxDecodeRounds, fails.
func everyLayer(s string, ok func(layer string) bool) bool {
	for range maxDecodeRounds {
		if !ok(s) {
			return false
		}
		d, err := url.PathUnescape(s)
		if err != nil {
			return false
		}
		if d == s {
			return true
		}
		s = d
	}
	return false
}

func layerOK(s string, local bool) bool {
	for _, r := range s {
		if r < 0x20 || r == 0x7f || r == '\\' || (r >= 0x80 && r <= 0x9f) ||
			r == '\u2028' || r == '\u2029' || r == '\ufeff' {
			return false
		}
	}
	if local {
		if !strings.HasPrefix(s, "/") || strings.HasPrefix(s, "//") {
			return false
		}
	}
	return true
}

// localPathOK refuses a path that becomes "//host" once dot segments are
// removed ("/.//evil.com"), in any decoding.
func localPathOK(rd string) bool {
	return everyLayer(rd, func(layer string) bool {
		if i := strings.IndexAny(layer, "?#"); i >= 0 {
			layer = layer[:i]
		}
		return !strings.HasPrefix(removeDotSegments(layer), "//")
	})
}

// removeDotSegments is RFC 3986 §5.2.4 without collapsing empty segments,
// which is exactly what makes "/.//x" dangerous.
func removeDotSegments(p string) string {
	var out []string
	segs := strings.Split(p, "/")
	for i, seg := range segs {
		switch seg {
		case ".":
			if i == len(segs)-1 {
				out = append(out, "")
			}
		case "..":
			if len(out) > 1 {
				out = out[:len(out)-1]
			}
			if i == len(segs)-1 {
				out = append(out, "")
			}
		default:
			out = append(out, seg)
		}
	}
	return strings.Join(out, "/")
}

func hostAllowed(u *url.URL, allowed []string) bool {
	host := normHost(u.Hostname())
	port := u.Port()
	if host == "" {
		return false
	}
	for _, a := range allowed {
		ah, ap := a, ""
		if h, p, err := net.SplitHostPort(a); err == nil {
			ah, ap = h, p
		}
		ah = normHost(strings.Trim(ah, "[]"))
		if ah == "" || ah != host {
			continue
		}
		if ap != "" && ap != port {
			continue
		}
		return true
	}
	return false
}

func normHost(h string) string {
	return strings.TrimSuffix(strings.ToLower(h), ".")
}
