package proxy

import (
	"embed"
	"encoding/json"
	"html/template"
	"io"
	"net/http"
)

//go:embed templates/page.html
var templateFS embed.FS

// pageTemplate is parsed once; it is read-only after start.
var pageTemplate = template.Must(template.ParseFS(templateFS, "templates/page.html"))

type pageData struct {
	Title, Message string
	Link, LinkText string
	Status         int
}

// page answers a browser with a small HTML page and anything else with JSON
// {"error": …}. Neither ever carries request secrets.
func (h *Handler) page(w http.ResponseWriter, r *http.Request, status int, title, msg string) {
	if !isBrowser(r) {
		writeJSON(w, status, map[string]string{"error": errorCode(status), "error_description": msg})
		return
	}
	d := pageData{Title: title, Message: msg, Status: status}
	if status == http.StatusForbidden {
		d.Link, d.LinkText = pathSignOut, "Sign in as someone else"
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	if err := pageTemplate.Execute(w, d); err != nil {
		h.log.ErrorContext(r.Context(), "render error page", "err", err)
	}
}

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
