package main

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// publicBackendConfig is the example with its upstream replaced by url and
// made public, so load needs no sign-in.
func publicBackendConfig(t *testing.T, port int, url string) string {
	return strings.Replace(exampleOnPort(t, port), "    url: builtin:echo", "    url: "+url+"\n    public: [\"/\"]", 1)
}

// SIGTERM (ctx cancel in main) stops accepting, lets a long download in
// flight finish completely, and serve returns nil (exit 0).
func TestDrainFinishesLongDownload(t *testing.T) {
	const chunks, chunk = 64, 64 << 10 // 4 MiB over ~1.3 s
	started := make(chan struct{})
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", fmt.Sprint(chunks*chunk))
		buf := make([]byte, chunk)
		for i := range chunks {
			w.Write(buf)
			w.(http.Flusher).Flush()
			if i == 0 {
				close(started)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}))
	defer backend.Close()
	in := startServe(t, func(p int) string { return publicBackendConfig(t, p, backend.URL) }, nil)

	resp, err := http.Get(in.base + "/big")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	<-started
	in.cancel() // what SIGTERM does in main
	n, err := io.Copy(io.Discard, resp.Body)
	if err != nil || n != chunks*chunk {
		t.Fatalf("download during drain: %d bytes, %v; want all %d", n, err, chunks*chunk)
	}
	select {
	case err := <-in.done:
		if err != nil {
			t.Fatalf("serve returned %v after drain, want nil (exit 0)", err)
		}
		in.done <- nil // for the cleanup
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not return after the drain")
	}
	if _, err := http.Get(in.base + "/again"); err == nil {
		t.Error("a new connection was accepted after shutdown")
	}
}

// Reloads while clients keep sending requests drop none of them.
func TestReloadUnderLoad(t *testing.T) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok")
	}))
	defer backend.Close()
	in := startServe(t, func(p int) string { return publicBackendConfig(t, p, backend.URL) }, map[string]string{"PORTCULLIS_SESSION_SECRET": newSecret()})

	stop := make(chan struct{})
	var ok, failed atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := &http.Client{Timeout: 10 * time.Second}
			for {
				select {
				case <-stop:
					return
				default:
				}
				resp, err := c.Get(in.base + "/load")
				if err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
				if err != nil || resp.StatusCode != 200 {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, fmt.Sprint(err, resp))
					continue
				}
				ok.Add(1)
			}
		}()
	}
	for i := range 5 {
		time.Sleep(150 * time.Millisecond)
		in.reload <- os.Interrupt
		waitFor(t, func() bool { return strings.Count(in.logs.String(), "config reloaded") >= i+1 })
	}
	close(stop)
	wg.Wait()
	if failed.Load() != 0 {
		t.Fatalf("%d of %d requests failed during reloads; first: %v", failed.Load(), failed.Load()+ok.Load(), firstErr.Load())
	}
	if ok.Load() < 20 {
		t.Fatalf("only %d requests completed during the reloads", ok.Load())
	}
}
