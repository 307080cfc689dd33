// Command upstream is the load benchmark's backend: the smallest fast HTTP
// server we can write with the standard library, so that what the benchmark
// measures is the proxy in front of it and not the application.
//
// Every path answers a small fixed JSON body, except /download, which
// streams -download-mib MiB from one reused buffer (no allocation per
// write, no disk).
package main

import (
	"flag"
	"fmt"
	"log"
	"net/http"
	"os"
	"strconv"
	"time"
)

// smallBody is what every path but /download answers: about the size of a
// small API response.
const smallBody = `{"ok":true,"server":"bench-upstream","note":"a small fixed body so the proxy, not the app, is measured"}` + "\n"

func main() {
	listen := flag.String("listen", "127.0.0.1:8081", "address to listen on")
	mib := flag.Int64("download-mib", 100, "size of /download in MiB")
	flag.Parse()

	body := []byte(smallBody)
	bodyLen := strconv.Itoa(len(body))
	// 256 KiB chunks keep syscalls per MiB low; the content is not zero so
	// nothing along the way can cheat on it.
	chunk := make([]byte, 256<<10)
	for i := range chunk {
		chunk[i] = byte('a' + i%26)
	}
	total := *mib << 20

	mux := http.NewServeMux()
	mux.HandleFunc("/download", func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Type", "application/octet-stream")
		h.Set("Content-Length", strconv.FormatInt(total, 10))
		if r.Method == http.MethodHead {
			return
		}
		for left := total; left > 0; {
			n := min(left, int64(len(chunk)))
			if _, err := w.Write(chunk[:n]); err != nil {
				return // client went away
			}
			left -= n
		}
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h["Content-Type"] = []string{"application/json"}
		h["Content-Length"] = []string{bodyLen}
		w.Write(body)
	})

	srv := &http.Server{
		Addr:              *listen,
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       120 * time.Second,
		ErrorLog:          log.New(os.Stderr, "upstream: ", 0),
	}
	if err := srv.ListenAndServe(); err != nil {
		fmt.Fprintf(os.Stderr, "upstream: %v\n", err)
		os.Exit(1)
	}
}
