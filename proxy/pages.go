package proxy

import (
	"encoding/json"
	"html"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/portcullis-proxy/portcullis/auth"
)

// page answers a browser with a small HTML page and anything else with JSON
// {"error": …}. Neither ever carries request secrets.
func (h *Handler) page(w http.ResponseWriter, r *http.Request, status int, title, msg string) {
	if !isBrowser(r) {
		writeJSON(w, status, map[string]string{"error": errorCode(status), "error_description": msg})
		return
	}
	var link, linkText string
	if status == http.StatusForbidden {
		link, linkText = pathSignOut, "Sign in as someone else"
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	if _, err := io.WriteString(w, pageHTML(status, title, msg, link, linkText)); err != nil {
		h.log.DebugContext(r.Context(), "write error page", "err", err)
	}
}

// pageHTML builds the page by plain Go code rather than html/template
// (whose execution keeps every exported method of the binary alive for
// reflection): every value goes through html.EscapeString, and the link
// through auth.HrefValue.
func pageHTML(status int, title, msg, link, linkText string) string {
	var b strings.Builder
	b.Grow(len(pageHead) + len(pageStyle) + 512)
	b.WriteString(pageHead)
	b.WriteString(html.EscapeString(title))
	b.WriteString(" · Portcullis</title>\n")
	b.WriteString(pageStyle)
	b.WriteString("  <h1>")
	b.WriteString(html.EscapeString(title))
	b.WriteString("</h1>\n  <p>")
	b.WriteString(html.EscapeString(msg))
	b.WriteString("</p>\n")
	if link != "" {
		b.WriteString(`  <p><a href="`)
		b.WriteString(auth.HrefValue(link))
		b.WriteString(`">`)
		b.WriteString(html.EscapeString(linkText))
		b.WriteString("</a></p>\n")
	}
	b.WriteString(`  <p class="code">HTTP `)
	b.WriteString(strconv.Itoa(status))
	b.WriteString("</p>\n</main>\n</body>\n</html>\n")
	return b.String()
}

const pageHead = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>`

const pageStyle = `<style>
  body { font: 16px/1.5 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0; background: #f4f5f7; color: #1d2330; }
  main { max-width: 34rem; margin: 12vh auto; background: #fff; padding: 2rem 2.25rem; border-radius: 10px; box-shadow: 0 1px 4px rgba(0,0,0,.12); }
  h1 { font-size: 1.35rem; margin: 0 0 .75rem; }
  p { margin: .5rem 0; }
  .code { color: #6b7280; font-size: .875rem; }
  a { color: #1f5fbf; }
</style>
</head>
<body>
<main role="main">
`

func errorCode(status int) string {
	switch status {
	case http.StatusBadRequest:
		return "bad_request"
	case http.StatusUnauthorized:
		return "unauthenticated"
	case http.StatusForbidden:
		return "forbidden"
	case http.StatusNotFound:
		return "not_found"
	case http.StatusMethodNotAllowed:
		return "method_not_allowed"
	}
	return "error"
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// The fixed JSON answers of the gate, encoded once: unauthenticated API
// traffic is the cheapest kind to send in a flood.
const (
	unauthenticatedJSON = `{"error":"unauthenticated"}` + "\n"
	invalidTokenJSON    = `{"error":"invalid_token","error_description":"the bearer token is not valid here"}` + "\n"
)

// writeJSONBody is writeJSON for a body encoded in advance.
func writeJSONBody(w http.ResponseWriter, status int, body string) {
	h := w.Header()
	h["Content-Type"] = []string{"application/json"}
	h["X-Content-Type-Options"] = []string{"nosniff"}
	w.WriteHeader(status)
	_, _ = io.WriteString(w, body)
}
