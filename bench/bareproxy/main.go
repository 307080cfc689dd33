// Command bareproxy is the benchmark's floor: a bare
// httputil.ReverseProxy (Rewrite with SetURL and SetXForwarded, the same
// hook Portcullis uses) with a tuned transport and a pooled 32 KiB copy
// buffer, and nothing else: no routing, no sessions, no identity headers.
// Portcullis can only be slower than this; the benchmark reports by how much.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"sync"
	"time"
)

// bufferPool hands ReverseProxy 32 KiB copy buffers, so streaming a body
// does not allocate one per request. It keeps array pointers, so that Put
// allocates nothing either (as Portcullis's own pool does).
type bufferPool struct{ p sync.Pool }

func newBufferPool() *bufferPool {
	return &bufferPool{p: sync.Pool{New: func() any { return new([32 << 10]byte) }}}
}

func (bp *bufferPool) Get() []byte { return bp.p.Get().(*[32 << 10]byte)[:] }

func (bp *bufferPool) Put(b []byte) {
	if len(b) == 32<<10 {
		bp.p.Put((*[32 << 10]byte)(b))
	}
}

func main() {
	listen := flag.String("listen", "127.0.0.1:8082", "address to listen on")
	to := flag.String("upstream", "http://127.0.0.1:8081", "URL to forward to")
	flag.Parse()

	target, err := url.Parse(*to)
	if err != nil || target.Host == "" {
		fmt.Fprintf(os.Stderr, "bareproxy: -upstream %q: not an absolute URL\n", *to)
		os.Exit(2)
	}
	d := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.SetXForwarded()
		},
		Transport: &http.Transport{
			Proxy:                 nil,
			DialContext:           d.DialContext,
			MaxIdleConns:          1024,
			MaxIdleConnsPerHost:   1024,
			IdleConnTimeout:       90 * time.Second,
			ExpectContinueTimeout: time.Second,
		},
		BufferPool: newBufferPool(),
		// wrk drops its connections mid-request when a run ends; logging
		// each of those would be noise, as it is in Portcullis (which logs
		// at warn in the benchmark).
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			if !errors.Is(err, context.Canceled) {
				fmt.Fprintf(os.Stderr, "bareproxy: %s %s: %v\n", r.Method, r.URL.Path, err)
			}
			w.WriteHeader(http.StatusBadGateway)
		},
	}
	srv := &http.Server{
		Addr:              *listen,
		Handler:           rp,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       120 * time.Second,
		ErrorLog:          log.New(os.Stderr, "bareproxy: ", 0),
	}
	if err := srv.ListenAndServe(); err != nil {
		fmt.Fprintf(os.Stderr, "bareproxy: %v\n", err)
		os.Exit(1)
	}
}
