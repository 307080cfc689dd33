package main

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
)

// inProcess returns a RoundTripper that serves requests for the built-in
// issuer's host by calling its handler directly. The proxy is then an
// ordinary OAuth client of its own issuer — the same authorization-code +
// PKCE flow any client uses — without depending on its public URL being
// reachable (or its TLS certificate trusted) from inside its own container.
func inProcess(issuerURL string, h http.Handler) http.RoundTripper {
	u, _ := url.Parse(issuerURL)
	return &handlerTransport{host: strings.ToLower(u.Host), h: h}
}

type handlerTransport struct {
	host string
	h    http.Handler
}

func (t *handlerTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if strings.ToLower(req.URL.Host) != t.host {
		return nil, fmt.Errorf("in-process issuer transport: refusing request to %q (only %q is served)", req.URL.Host, t.host)
	}
	in := req.Clone(req.Context())
	in.RequestURI = req.URL.RequestURI()
	in.Host = req.URL.Host
	in.RemoteAddr = "127.0.0.1:0"
	if in.Body == nil {
		in.Body = http.NoBody
	}
	rec := &recorder{header: http.Header{}, code: http.StatusOK}
	t.h.ServeHTTP(rec, in)
	return &http.Response{
		Status:        fmt.Sprintf("%d %s", rec.code, http.StatusText(rec.code)),
		StatusCode:    rec.code,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        rec.header,
		Body:          io.NopCloser(bytes.NewReader(rec.body.Bytes())),
		ContentLength: int64(rec.body.Len()),
		Request:       req,
	}, nil
}

// recorder is a minimal ResponseWriter buffering one response.
type recorder struct {
	header      http.Header
	body        bytes.Buffer
	code        int
	wroteHeader bool
}

func (r *recorder) Header() http.Header { return r.header }

func (r *recorder) WriteHeader(code int) {
	if !r.wroteHeader {
		r.code, r.wroteHeader = code, true
	}
}

func (r *recorder) Write(b []byte) (int, error) {
	r.WriteHeader(http.StatusOK)
	return r.body.Write(b)
}
