package upstream

import (
	"bytes"
	"encoding/json"
	"html"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
)

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
	return &echoHandler{}
}

type echoHandler struct{}

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
	page := newEchoView(req).html()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")
	_, _ = io.WriteString(w, page)
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

// html renders the page by plain Go code rather than html/template (whose
// execution keeps every exported method of the binary alive for
// reflection); every value goes through html.EscapeString.
func (v echoView) html() string {
	var b strings.Builder
	b.Grow(len(echoHead) + 2048)
	b.WriteString(echoHead)
	if v.SignedIn {
		b.WriteString("<section class=\"who\" id=\"identity\">\n<p>Signed in as <strong id=\"user\">")
		if users := v.Req.Headers[HeaderUser]; len(users) > 0 {
			b.WriteString(html.EscapeString(users[0]))
		}
		b.WriteString("</strong></p>\n<table>\n")
		writeEchoRows(&b, v.Identity, ", ")
		b.WriteString("</table>\n</section>\n")
	} else {
		b.WriteString(`<section class="who anon" id="identity"><p>Not signed in: this request carried no identity headers.</p></section>` + "\n")
	}
	b.WriteString("<h2>Request</h2>\n<table>\n")
	for _, f := range [...]struct{ name, id, val string }{
		{"Method", "method", v.Req.Method},
		{"Host", "host", v.Req.Host},
		{"Path", "path", v.Req.Path},
		{"Query", "query", v.Req.Query},
	} {
		b.WriteString("<tr><th>" + f.name + `</th><td id="` + f.id + `">`)
		b.WriteString(html.EscapeString(f.val))
		b.WriteString("</td></tr>\n")
	}
	b.WriteString("</table>\n<h2>Headers received</h2>\n<table id=\"headers\">\n")
	writeEchoRows(&b, v.Headers, "<br>")
	b.WriteString("</table>\n</body>\n</html>\n")
	return b.String()
}

// writeEchoRows writes one table row per header, its values joined by sep.
func writeEchoRows(b *strings.Builder, hs []echoHeader, sep string) {
	for _, h := range hs {
		b.WriteString("<tr><th>")
		b.WriteString(html.EscapeString(h.Name))
		b.WriteString("</th><td>")
		for i, s := range h.Values {
			if i > 0 {
				b.WriteString(sep)
			}
			b.WriteString(html.EscapeString(s))
		}
		b.WriteString("</td></tr>\n")
	}
}

const echoHead = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Portcullis echo</title>
<style>
body{font-family:system-ui,sans-serif;max-width:56rem;margin:2rem auto;padding:0 1rem;color:#222}
h1{font-size:1.4rem}h2{font-size:1.1rem;margin-top:2rem}
.who{border:2px solid #2b6;border-radius:.5rem;padding:1rem 1.25rem;background:#f3fbf5}
.anon{border-color:#c93;background:#fdf8ee}
table{border-collapse:collapse;width:100%}th,td{text-align:left;vertical-align:top;padding:.3rem .6rem;border-bottom:1px solid #ddd}
th{white-space:nowrap;font-weight:600}td{font-family:ui-monospace,monospace;word-break:break-all}
</style>
</head>
<body>
<h1>Portcullis echo</h1>
`

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
