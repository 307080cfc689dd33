package auth

import (
	"html"
	"strings"
)

// HrefValue returns u ready for a double-quoted href or action attribute
// of a page Portcullis writes: a path on this site ("/…", but not "//…" or
// "/\…", which browsers read as another host) or an absolute http(s) URL,
// HTML-escaped; anything else (javascript:, data:, a relative or
// scheme-relative URL, a URL with control characters, which browsers drop
// or strip) becomes "#". Every page's links go through it, so the rule is
// written once.
func HrefValue(u string) string {
	for i := 0; i < len(u); i++ {
		if c := u[i]; c < 0x20 || c == 0x7f {
			return "#"
		}
	}
	switch {
	case strings.HasPrefix(u, "/"):
		if len(u) > 1 && (u[1] == '/' || u[1] == '\\') {
			return "#"
		}
	case len(u) >= 5 && strings.EqualFold(u[:5], "http:"),
		len(u) >= 6 && strings.EqualFold(u[:6], "https:"):
	default:
		return "#"
	}
	return html.EscapeString(u)
}
