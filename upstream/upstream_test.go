package upstream

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/portcullis-proxy/portcullis/auth"
	"github.com/portcullis-proxy/portcullis/upstream/upstreamtest"
)

var spoofTests = []struct {
	name   string
	header string
}{
	{"canonical user", "X-Forwarded-User"},
	{"lower email", "x-forwarded-email"},
	{"underscores groups", "X_Forwarded_Groups"},
	{"mixed preferred username", "x-Forwarded-PREFERRED-username"},
	{"access token", "X-Forwarded-Access-Token"},
	{"upper assertion", "X-PORTCULLIS-ASSERTION"},
	{"other portcullis name", "X-Portcullis-Anything"},
	{"underscore auth request user", "x_auth_request_user"},
	{"auth request email", "X-Auth-Request-Email"},
	{"auth request groups mixed", "X-Auth_Request-Groups"},
	{"auth request preferred username", "X-Auth-Request-Preferred-Username"},
	{"auth request access token", "X-AUTH-REQUEST-ACCESS-TOKEN"},
}

func TestSpoofedIdentityHeadersNeverReachBackend(t *testing.T) {
	eachProtocol(t, func(t *testing.T, p protocol) {
		backend := upstreamtest.NewBackend(t)
		for _, signedIn := range []bool{true, false} {
			var id *auth.Identity
			if signedIn {
				id = alice()
			}
			u := newTestUpstream(t, backend.URL(), func(c *Config, _ *Options) {
				c.Forward = []string{"user", "email", "groups", "preferred_username", "access_token"}
			})
			front, client := newFrontend(t, p, withIdentity(id, u))
			for _, tt := range spoofTests {
				t.Run(tt.name+map[bool]string{true: " signed in", false: " anonymous"}[signedIn], func(t *testing.T) {
					req := newRequest(t, "GET", front.URL+"/x", map[string]string{tt.header: "evil"})
					res, _ := do(t, client, p, req)
					if res.StatusCode != http.StatusOK {
						t.Fatalf("status = %d, want 200", res.StatusCode)
					}
					got := backend.Last(t)
					if names := headerWithValue(got.Header, "evil"); len(names) > 0 {
						t.Errorf("backend received spoofed %q as %v", tt.header, names)
					}
					if !signedIn {
						for _, h := range []string{HeaderUser, HeaderEmail, HeaderGroups, HeaderPreferredUsername, HeaderAccessToken} {
							if v, ok := got.Header[h]; ok {
								t.Errorf("anonymous request: backend received %s: %q, want none", h, v)
							}
						}
						return
					}
					want := map[string]string{
						HeaderUser:              "alice",
						HeaderEmail:             "alice@example.com",
						HeaderGroups:            "admins,dev",
						HeaderPreferredUsername: "Alice A",
						HeaderAccessToken:       "access-token-value",
					}
					for h, w := range want {
						if g := got.Header[h]; !slices.Equal(g, []string{w}) {
							t.Errorf("backend %s = %q, want [%q]", h, g, w)
						}
					}
				})
			}
		}
	})
}

func TestForwardOptIns(t *testing.T) {
	assert := func(_ context.Context, id *auth.Identity, aud string) (string, error) {
		return "jwt." + aud + "." + id.User, nil
	}
	noID := alice()
	noID.IDToken = ""
	tests := []struct {
		name          string
		forward       []string
		id            *auth.Identity
		clientAuth    string
		wantAuth      []string // nil: no Authorization header
		wantAccess    []string
		wantAssertion []string
	}{
		{"default keeps client authorization", nil, alice(), "Basic dXNlcjpwYXNz", []string{"Basic dXNlcjpwYXNz"}, nil, nil},
		{"anonymous keeps client authorization", nil, nil, "Bearer client", []string{"Bearer client"}, nil, nil},
		{"access_token", []string{"user", "access_token"}, alice(), "Bearer client", []string{"Bearer client"}, []string{"access-token-value"}, nil},
		{"id_token replaces client authorization", []string{"id_token"}, alice(), "Bearer client", []string{"Bearer id-token-value"}, nil, nil},
		{"id_token sets authorization", []string{"id_token"}, alice(), "", []string{"Bearer id-token-value"}, nil, nil},
		{"id_token missing drops client authorization", []string{"id_token"}, noID, "Bearer client", nil, nil, nil},
		{"id_token anonymous drops client authorization", []string{"id_token"}, nil, "Bearer client", nil, nil, nil},
		{"assertion", []string{"user", "assertion"}, alice(), "", nil, nil, []string{"jwt.app.alice"}},
		{"assertion anonymous", []string{"assertion"}, nil, "", nil, nil, nil},
	}
	eachProtocol(t, func(t *testing.T, p protocol) {
		backend := upstreamtest.NewBackend(t)
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				u := newTestUpstream(t, backend.URL(), func(c *Config, o *Options) {
					c.Forward = tt.forward
					o.Assert = assert
				})
				front, client := newFrontend(t, p, withIdentity(tt.id, u))
				hdr := map[string]string{}
				if tt.clientAuth != "" {
					hdr["Authorization"] = tt.clientAuth
				}
				res, _ := do(t, client, p, newRequest(t, "GET", front.URL+"/", hdr))
				if res.StatusCode != http.StatusOK {
					t.Fatalf("status = %d, want 200", res.StatusCode)
				}
				got := backend.Last(t).Header
				if g := got["Authorization"]; !slices.Equal(g, tt.wantAuth) {
					t.Errorf("Authorization = %q, want %q", g, tt.wantAuth)
				}
				if g := got[HeaderAccessToken]; !slices.Equal(g, tt.wantAccess) {
					t.Errorf("%s = %q, want %q", HeaderAccessToken, g, tt.wantAccess)
				}
				if g := got[HeaderAssertion]; !slices.Equal(g, tt.wantAssertion) {
					t.Errorf("%s = %q, want %q", HeaderAssertion, g, tt.wantAssertion)
				}
			})
		}
	})
}

func TestAssertionFailureFailsClosed(t *testing.T) {
	eachProtocol(t, func(t *testing.T, p protocol) {
		backend := upstreamtest.NewBackend(t)
		log, logs := newLogger()
		u := newTestUpstream(t, backend.URL(), func(c *Config, o *Options) {
			c.Forward = []string{"user", "assertion"}
			o.Assert = func(context.Context, *auth.Identity, string) (string, error) {
				return "", errors.New("signing key unavailable")
			}
			o.Logger = log
		})
		front, client := newFrontend(t, p, withIdentity(alice(), u))
		res, body := do(t, client, p, newRequest(t, "GET", front.URL+"/", nil))
		if res.StatusCode != http.StatusInternalServerError || strings.TrimSpace(body) != `{"error":"server_error"}` {
			t.Errorf("answer = %d %q, want 500 {\"error\":\"server_error\"}", res.StatusCode, body)
		}
		if n := len(backend.Requests()); n != 0 {
			t.Errorf("backend received %d requests, want 0", n)
		}
		if !strings.Contains(logs.String(), "signing key unavailable") {
			t.Errorf("log = %q, want the signing error", logs.String())
		}
	})
}

func TestPathQueryAndHost(t *testing.T) {
	f := false
	tests := []struct {
		name      string
		base      string
		preserve  *bool
		target    string
		wantPath  string
		wantQuery string
		wantURI   string
		frontHost bool // want the frontend's Host, else the backend's
	}{
		{"root", "", nil, "/a/b?x=1&y=2", "/a/b", "x=1&y=2", "/a/b?x=1&y=2", true},
		{"base path", "/base", nil, "/a/b?x=1", "/base/a/b", "x=1", "/base/a/b?x=1", true},
		{"base path trailing slash", "/base/", nil, "/a", "/base/a", "", "/base/a", true},
		{"encoded hash and semicolon stay literal", "", nil, "/a%23b;c/d", "/a#b;c/d", "", "/a%23b;c/d", true},
		{"encoded space", "", nil, "/a%20b", "/a b", "", "/a%20b", true},
		{"query kept raw", "", nil, "/q?a=%2F&b", "/q", "a=%2F&b", "/q?a=%2F&b", true},
		{"preserve_host false", "", &f, "/", "/", "", "/", false},
	}
	eachProtocol(t, func(t *testing.T, p protocol) {
		backend := upstreamtest.NewBackend(t)
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				u := newTestUpstream(t, backend.URL()+tt.base, func(c *Config, _ *Options) { c.PreserveHost = tt.preserve })
				front, client := newFrontend(t, p, u)
				res, _ := do(t, client, p, newRequest(t, "GET", front.URL+tt.target, nil))
				if res.StatusCode != http.StatusOK {
					t.Fatalf("status = %d, want 200", res.StatusCode)
				}
				got := backend.Last(t)
				if got.Path != tt.wantPath || got.RawQuery != tt.wantQuery || got.RequestURI != tt.wantURI {
					t.Errorf("GET %s: backend got path %q query %q uri %q, want %q %q %q",
						tt.target, got.Path, got.RawQuery, got.RequestURI, tt.wantPath, tt.wantQuery, tt.wantURI)
				}
				wantHost := strings.TrimPrefix(backend.URL(), "http://")
				if tt.frontHost {
					wantHost = strings.TrimPrefix(strings.TrimPrefix(front.URL, "http://"), "https://")
				}
				if got.Host != wantHost {
					t.Errorf("backend Host = %q, want %q", got.Host, wantHost)
				}
			})
		}
	})
}

func TestXForwarded(t *testing.T) {
	tests := []struct {
		name      string
		trusted   bool
		wantFor   func(client string) string
		wantHost  func(front string) string
		wantProto func(scheme string) string
		wantReal  bool
	}{
		{"untrusted peer", false,
			func(c string) string { return c },
			func(f string) string { return f },
			func(s string) string { return s },
			false},
		{"trusted peer", true,
			func(c string) string { return "203.0.113.9, 198.51.100.1, " + c },
			func(string) string { return "app.example" },
			func(string) string { return "https" },
			true},
	}
	eachProtocol(t, func(t *testing.T, p protocol) {
		backend := upstreamtest.NewBackend(t)
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				u := newTestUpstream(t, backend.URL(), func(_ *Config, o *Options) {
					o.TrustedProxy = func(r *http.Request) bool { return tt.trusted && r.RemoteAddr != "" }
				})
				front, client := newFrontend(t, p, u)
				req := newRequest(t, "GET", front.URL+"/", map[string]string{
					"X-Forwarded-Host":   "app.example",
					"X-Forwarded-Proto":  "https",
					"X-Real-Ip":          "203.0.113.9",
					"X-Original-URL":     "/admin",
					"X-Rewrite-URL":      "/admin",
					"X-Forwarded-Uri":    "/admin",
					"X-Forwarded-Prefix": "/evil",
					"x_original_method":  "DELETE",
					"X_Forwarded_Path":   "/evil",
				})
				req.Header["X-Forwarded-For"] = []string{"203.0.113.9", "198.51.100.1"}
				if p.h2 {
					req.Header.Set("X-Forwarded-Proto", "https")
				}
				do(t, client, p, req)
				got := backend.Last(t).Header
				fu, _ := url.Parse(front.URL)
				clientIP := "127.0.0.1"
				if g, w := got.Get("X-Forwarded-For"), tt.wantFor(clientIP); g != w {
					t.Errorf("X-Forwarded-For = %q, want %q", g, w)
				}
				if g, w := got.Get("X-Forwarded-Host"), tt.wantHost(fu.Host); g != w {
					t.Errorf("X-Forwarded-Host = %q, want %q", g, w)
				}
				scheme := "http"
				if p.h2 {
					scheme = "https"
				}
				if !tt.trusted {
					// Make the untrusted case able to fail over h1: the
					// client claimed https on a plain connection.
					if g := got.Get("X-Forwarded-Proto"); g != scheme {
						t.Errorf("X-Forwarded-Proto = %q, want %q", g, scheme)
					}
				} else if g, w := got.Get("X-Forwarded-Proto"), tt.wantProto(scheme); g != w {
					t.Errorf("X-Forwarded-Proto = %q, want %q", g, w)
				}
				for _, h := range []string{"X-Real-Ip", "X-Original-Url", "X-Rewrite-Url", "X-Forwarded-Uri", "X-Forwarded-Prefix", "X_original_method", "X_forwarded_path"} {
					if _, ok := got[h]; ok != tt.wantReal {
						t.Errorf("%s forwarded = %v, want %v (only from a trusted peer)", h, ok, tt.wantReal)
					}
				}
			})
		}
	})
}

func TestBadGateway(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "http://" + ln.Addr().String()
	ln.Close()
	tests := []struct {
		name     string
		accept   string
		wantType string
		check    func(body string) bool
	}{
		{"browser", "text/html,application/xhtml+xml;q=0.9", "text/html; charset=utf-8",
			func(b string) bool { return strings.Contains(b, "<h1>Bad gateway</h1>") }},
		{"api", "application/json", "application/json",
			func(b string) bool {
				var v map[string]string
				return json.Unmarshal([]byte(b), &v) == nil && len(v) == 1 && v["error"] == "bad_gateway"
			}},
		{"no accept", "", "application/json",
			func(b string) bool { return strings.TrimSpace(b) == `{"error":"bad_gateway"}` }},
	}
	eachProtocol(t, func(t *testing.T, p protocol) {
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				log, logs := newLogger()
				u := newTestUpstream(t, dead, func(_ *Config, o *Options) { o.Logger = log })
				front, client := newFrontend(t, p, withIdentity(alice(), u))
				hdr := map[string]string{"Authorization": "Bearer very-secret-token"}
				if tt.accept != "" {
					hdr["Accept"] = tt.accept
				}
				res, body := do(t, client, p, newRequest(t, "GET", front.URL+"/x?code=secret-code", hdr))
				if res.StatusCode != http.StatusBadGateway {
					t.Errorf("status = %d, want 502", res.StatusCode)
				}
				if g := res.Header.Get("Content-Type"); g != tt.wantType {
					t.Errorf("Content-Type = %q, want %q", g, tt.wantType)
				}
				if !tt.check(body) {
					t.Errorf("body = %q, not the expected error page", body)
				}
				l := logs.String()
				if !strings.Contains(l, "upstream=app") || !strings.Contains(l, "connection refused") {
					t.Errorf("log = %q, want upstream=app and the dial error", l)
				}
				for _, secret := range []string{"very-secret-token", "secret-code", "access-token-value", "id-token-value"} {
					if strings.Contains(l, secret) || strings.Contains(body, secret) {
						t.Errorf("log or page contains %q", secret)
					}
				}
			})
		}
	})
}

func TestClientCancelIsQuiet(t *testing.T) {
	release := make(chan struct{})
	backend := upstreamtest.NewBackend(t)
	backend.Handle(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(release)
		<-r.Context().Done()
	}))
	log, logs := newLogger()
	done := make(chan struct{})
	u := newTestUpstream(t, backend.URL(), func(_ *Config, o *Options) { o.Logger = log })
	front := newFrontendDone(t, u, done)
	ctx, cancel := context.WithCancel(t.Context())
	req, _ := http.NewRequestWithContext(ctx, "GET", front.URL+"/", nil)
	go func() { <-release; cancel() }()
	if _, err := front.Client().Do(req); err == nil {
		t.Fatal("request succeeded, want it canceled")
	}
	<-done
	if l := logs.String(); l != "" {
		t.Errorf("log = %q, want nothing for a client that went away", l)
	}
}

// newFrontendDone serves h over HTTP/1.1 and closes done when the first
// request's handler has returned.
func newFrontendDone(t *testing.T, h http.Handler, done chan struct{}) *httptest.Server {
	t.Helper()
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer close(done)
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(s.Close)
	return s
}

// TestConnectionHeaderCannotHideIdentity: ReverseProxy drops every header
// a client names in Connection (HTTP/1.1 hop-by-hop); naming ours must not
// hide a field of the identity, the assertion or the ID token from the
// upstream. A client's own Authorization it names stays dropped.
func TestConnectionHeaderCannotHideIdentity(t *testing.T) {
	assert := func(_ context.Context, id *auth.Identity, aud string) (string, error) {
		return "jwt." + aud + "." + id.User, nil
	}
	backend := upstreamtest.NewBackend(t)
	hide := "X-Forwarded-User, x-forwarded-email, X-Forwarded-Groups, X-Forwarded-Preferred-Username, " +
		"X-Forwarded-Access-Token, X-Portcullis-Assertion, Authorization"
	for _, tt := range []struct {
		name     string
		forward  []string
		wantAuth []string
	}{
		{"id_token", []string{"user", "email", "groups", "preferred_username", "access_token", "assertion", "id_token"}, []string{"Bearer id-token-value"}},
		{"client authorization", []string{"user", "email", "groups", "preferred_username", "access_token", "assertion"}, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			u := newTestUpstream(t, backend.URL(), func(c *Config, o *Options) {
				c.Forward = tt.forward
				o.Assert = assert
			})
			p := protocols[0]
			front, client := newFrontend(t, p, withIdentity(alice(), u))
			req := newRequest(t, "GET", front.URL+"/", map[string]string{"Connection": hide, "Authorization": "Bearer client"})
			if res, _ := do(t, client, p, req); res.StatusCode != http.StatusOK {
				t.Fatalf("status = %d, want 200", res.StatusCode)
			}
			got := backend.Last(t).Header
			for h, want := range map[string]string{HeaderUser: "alice", HeaderEmail: "alice@example.com", HeaderGroups: "admins,dev",
				HeaderPreferredUsername: "Alice A", HeaderAccessToken: "access-token-value", HeaderAssertion: "jwt.app.alice"} {
				if g := got[h]; !slices.Equal(g, []string{want}) {
					t.Errorf("%s = %q, want [%q]", h, g, want)
				}
			}
			if g := got["Authorization"]; !slices.Equal(g, tt.wantAuth) {
				t.Errorf("Authorization = %q, want %q", g, tt.wantAuth)
			}
		})
	}
}
