package upstream

import (
	"bufio"
	"crypto/sha1"
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/portcullis-proxy/portcullis/upstream/upstreamtest"
)

// wsAccept is the Sec-WebSocket-Accept for key (RFC 6455 §4.2.2).
func wsAccept(key string) string {
	h := sha1.Sum([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	return base64.StdEncoding.EncodeToString(h[:])
}

// wsEchoBackend completes a websocket handshake and echoes raw bytes back:
// enough to show the upgrade and both directions pass through.
func wsEchoBackend(w http.ResponseWriter, r *http.Request) {
	if !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
		http.Error(w, "want a websocket upgrade", http.StatusBadRequest)
		return
	}
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return
	}
	defer conn.Close()
	fmt.Fprintf(brw, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n",
		wsAccept(r.Header.Get("Sec-WebSocket-Key")))
	if brw.Flush() != nil {
		return
	}
	_, _ = io.Copy(conn, brw)
}

// TestWebSocket runs over HTTP/1.1 only, plain and TLS: ReverseProxy does
// not carry RFC 8441 websockets over HTTP/2, and browsers fall back to
// HTTP/1.1 for them.
func TestWebSocket(t *testing.T) {
	for _, useTLS := range []bool{false, true} {
		t.Run(map[bool]string{false: "h1", true: "h1-tls"}[useTLS], func(t *testing.T) {
			backend := upstreamtest.NewBackend(t)
			backend.Handle(http.HandlerFunc(wsEchoBackend))
			u := newTestUpstream(t, backend.URL(), nil)
			front := httptest.NewUnstartedServer(withIdentity(alice(), u))
			var conn net.Conn
			var err error
			if useTLS {
				front.StartTLS()
				roots := front.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs
				conn, err = tls.Dial("tcp", front.Listener.Addr().String(),
					&tls.Config{RootCAs: roots, ServerName: "example.com", NextProtos: []string{"http/1.1"}})
			} else {
				front.Start()
				conn, err = net.Dial("tcp", front.Listener.Addr().String())
			}
			t.Cleanup(front.Close)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			const key = "dGhlIHNhbXBsZSBub25jZQ=="
			fmt.Fprintf(conn, "GET /ws HTTP/1.1\r\nHost: app.example\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
				"Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\nX-Forwarded-User: evil\r\n\r\n", key)
			br := bufio.NewReader(conn)
			res, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatalf("reading handshake answer: %v", err)
			}
			if res.StatusCode != http.StatusSwitchingProtocols {
				t.Fatalf("handshake status = %d, want 101", res.StatusCode)
			}
			if g, w := res.Header.Get("Sec-WebSocket-Accept"), wsAccept(key); g != w {
				t.Errorf("Sec-WebSocket-Accept = %q, want %q", g, w)
			}
			for _, msg := range []string{"hello", "second message"} {
				if _, err := io.WriteString(conn, msg); err != nil {
					t.Fatal(err)
				}
				got := make([]byte, len(msg))
				if _, err := io.ReadFull(br, got); err != nil {
					t.Fatalf("reading echo: %v", err)
				}
				if string(got) != msg {
					t.Errorf("echo = %q, want %q", got, msg)
				}
			}
			if g := backend.Last(t).Header.Values(HeaderUser); len(g) != 1 || g[0] != "alice" {
				t.Errorf("backend %s on upgrade = %q, want [alice]", HeaderUser, g)
			}
		})
	}
}

func TestServerSentEvents(t *testing.T) {
	eachProtocol(t, func(t *testing.T, p protocol) {
		release := make(chan struct{})
		finishedEarly := make(chan bool, 1)
		backend := upstreamtest.NewBackend(t)
		backend.Handle(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/event-stream")
			io.WriteString(w, "data: first\n\n")
			http.NewResponseController(w).Flush()
			// Hold the stream open until the client has seen the first
			// event. The timer only breaks a deadlock when the proxy
			// buffers; it is not a timing assertion.
			select {
			case <-release:
				finishedEarly <- false
			case <-time.After(30 * time.Second):
				finishedEarly <- true
			case <-r.Context().Done():
				finishedEarly <- false
				return
			}
			io.WriteString(w, "data: second\n\n")
		}))
		u := newTestUpstream(t, backend.URL(), nil)
		front, client := newFrontend(t, p, u)
		res, err := client.Do(newRequest(t, "GET", front.URL+"/events", map[string]string{"Accept": "text/event-stream"}))
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		br := bufio.NewReader(res.Body)
		first, err := br.ReadString('\n')
		if err != nil || first != "data: first\n" {
			t.Fatalf("first line = %q, %v; want %q", first, err, "data: first\n")
		}
		close(release)
		if <-finishedEarly {
			t.Fatal("the first event reached the client only after the backend finished: the stream is buffered")
		}
		rest, err := io.ReadAll(br)
		if err != nil || string(rest) != "\ndata: second\n\n" {
			t.Errorf("rest = %q, %v; want %q", rest, err, "\ndata: second\n\n")
		}
	})
}
