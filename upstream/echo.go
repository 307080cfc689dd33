package upstream

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"html/template"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
)

//go:embed echo.html
var echoPage string

// echoRequest is the JSON shape of builtin:echo (DESIGN.md "Output shapes").
type echoRequest struct {
	Method  string              `json:"method"`
	Host    string              `json:"host"`
	Path    string              `json:"path"`
	Query   string              `json:"query"`
	Headers map[string][]string `json:"headers"`
}

// Echo returns the builtin:echo backend: it answers with the request it
// received. With Accept: application/json the answer is
// {"method","host","path","query","headers":{"Name":["value"]}} (path exactly
// as received, header names canonical); otherwise it is an HTML page with the
// identity headers at the top.
//
// The JSON shows every header value, because tests and scripts check what
// an upstream really gets; the HTML page, which people screenshot and
// share, shows credential headers (Authorization, cookies, access token,
// assertion) only as their length.
func Echo() http.Handler {
	return &echoHandler{page: template.Must(template.New("echo").Parse(echoPage))}
}

type echoHandler struct{ page *template.Template }

func (e *echoHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	req := echoRequest{
		Method:  r.Method,
		Host:    r.Host,
		Path:    r.URL.Path,
		Query:   r.URL.RawQuery,
		Headers: make(map[string][]string, len(r.Header)),
	}
	if req.Host == "" {
		req.Host = r.URL.Host
	}
	for k, v := range r.Header {
		// ReverseProxy sets an empty User-Agent to stop the transport
		// adding Go's; on the wire that means no header at all.
		if k == "User-Agent" && len(v) == 1 && v[0] == "" {
			continue
		}
		ck := http.CanonicalHeaderKey(k)
		req.Headers[ck] = append(req.Headers[ck], v...)
	}
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	if strings.Contains(r.Header.Get("Accept"), "application/json") {
		h.Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(req)
		return
	}
	var buf bytes.Buffer
	if err := e.page.Execute(&buf, newEchoView(req)); err != nil {
		http.Error(w, "echo: rendering failed", http.StatusInternalServerError)
		return
	}
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")
	_, _ = buf.WriteTo(w)
}

type echoHeader struct {
	Name   string
	Values []string
}

type echoView struct {
	Req      echoRequest
	SignedIn bool
	Identity []echoHeader
	Headers  []echoHeader
}

func newEchoView(req echoRequest) echoView {
	v := echoView{Req: req}
	for _, name := range []string{HeaderUser, HeaderEmail, HeaderGroups, HeaderPreferredUsername} {
		if vals, ok := req.Headers[name]; ok {
			v.SignedIn = true
			v.Identity = append(v.Identity, echoHeader{name, vals})
		}
	}
	names := make([]string, 0, len(req.Headers))
	for k := range req.Headers {
		names = append(names, k)
	}
	slices.Sort(names)
	for _, k := range names {
		vals := req.Headers[k]
		if isCredentialHeader(k) {
			shown := make([]string, len(vals))
			for i, s := range vals {
				shown[i] = "[redacted, " + strconv.Itoa(len(s)) + " bytes]"
			}
			vals = shown
		}
		v.Headers = append(v.Headers, echoHeader{k, vals})
	}
	return v
}

func isCredentialHeader(canonical string) bool {
	switch canonical {
	case "Authorization", "Proxy-Authorization", "Cookie", HeaderAccessToken, HeaderAssertion:
		return true
	}
	return false
}

// echoTransport serves builtin:echo in process: the request has been through
// Rewrite exactly as for a network upstream, it just never leaves.
type echoTransport struct{ h http.Handler }

func (t echoTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Body != nil {
		// RoundTrip must close the body; echo does not read it.
		defer req.Body.Close()
	}
	w := &echoResponse{header: make(http.Header)}
	t.h.ServeHTTP(w, req)
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return &http.Response{
		Status:        strconv.Itoa(w.status) + " " + http.StatusText(w.status),
		StatusCode:    w.status,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        w.header,
		Body:          io.NopCloser(&w.body),
		ContentLength: int64(w.body.Len()),
		Request:       req,
	}, nil
}

// echoResponse collects what the echo handler writes.
type echoResponse struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (w *echoResponse) Header() http.Header { return w.header }

func (w *echoResponse) WriteHeader(status int) {
	if w.status == 0 {
		w.status = status
	}
}

func (w *echoResponse) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.body.Write(b)
}
