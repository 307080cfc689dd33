package upstream

import (
	"net/http"
	"strings"
)

// errorText gives the JSON error code and page texts for the statuses this
// package answers with itself. Nothing request-specific goes in them, so no
// token, cookie or internal address can leak through an error page.
func errorText(status int) (code, title, text string) {
	if status == http.StatusInternalServerError {
		return "server_error", "Something went wrong",
			"Portcullis could not forward this request. Please try again in a moment."
	}
	return "bad_gateway", "Bad gateway",
		"The application behind this address is not answering. Please try again in a moment."
}

// isBrowser reports whether r asked for HTML, as DESIGN.md defines a browser.
func isBrowser(r *http.Request) bool {
	for _, v := range r.Header.Values("Accept") {
		if strings.Contains(v, "text/html") {
			return true
		}
	}
	return false
}

// writeError answers with an HTML page for browsers and {"error":"…"} for
// everything else.
func writeError(w http.ResponseWriter, r *http.Request, status int) {
	code, title, text := errorText(status)
	h := w.Header()
	// A half-copied upstream response may have left headers behind.
	for k := range h {
		delete(h, k)
	}
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	if isBrowser(r) {
		h.Set("Content-Type", "text/html; charset=utf-8")
		w.WriteHeader(status)
		// The texts are constants with no markup characters.
		_, _ = w.Write([]byte(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>` + title + `</title>
<style>body{font-family:system-ui,sans-serif;max-width:36rem;margin:4rem auto;padding:0 1rem;color:#222}h1{font-size:1.5rem}</style>
</head><body><h1>` + title + `</h1><p>` + text + `</p></body></html>
`))
		return
	}
	h.Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(`{"error":"` + code + `"}` + "\n"))
}
