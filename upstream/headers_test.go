package upstream

import (
	"net/http"
	"slices"
	"testing"

	"github.com/portcullis-proxy/portcullis/auth"
)

func TestIsIdentityHeader(t *testing.T) {
	tests := []struct {
		name string
		want bool
	}{
		{"X-Forwarded-User", true},
		{"x-forwarded-email", true},
		{"X_FORWARDED_GROUPS", true},
		{"X-Forwarded_Preferred-Username", true},
		{"x-forwarded-access-token", true},
		{"X-Portcullis-Assertion", true},
		{"x_portcullis_whatever", true},
		{"X-Portcullis", true},
		{"X-Auth-Request-User", true},
		{"x_auth_request_email", true},
		{"X-Auth-Request-Groups", true},
		{"X-Auth-Request-Preferred-Username", true},
		{"X-Auth-Request-Access-Token", true},
		{"X-Forwarded-For", false},
		{"X-Forwarded-Host", false},
		{"X-Forwarded-Proto", false},
		{"X-Forwarded-Users", false},
		{"X-Forwarded-Use", false},
		{"X-Portcullisx", false},
		{"X-Auth-Request-Redirect", false},
		{"Authorization", false},
		{"Accept", false},
		{"Xx-Forwarded-User", false},
		{"", false},
	}
	for _, tt := range tests {
		if got := isIdentityHeader(tt.name); got != tt.want {
			t.Errorf("isIdentityHeader(%q) = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestStripIdentityHeadersAllocatesNothing(t *testing.T) {
	h := typicalHeader()
	if n := testing.AllocsPerRun(100, func() { StripIdentityHeaders(h) }); n != 0 {
		t.Errorf("StripIdentityHeaders allocates %v times per call, want 0", n)
	}
}

func TestSetIdentityHeaders(t *testing.T) {
	tests := []struct {
		name        string
		mod         func(*auth.Identity)
		forward     Forward
		want        map[string][]string // every header expected in h afterwards
		wantDropped Forward
	}{
		{"default", nil, DefaultForward, map[string][]string{
			HeaderUser: {"alice"}, HeaderEmail: {"alice@example.com"}, HeaderGroups: {"admins,dev"},
			HeaderPreferredUsername: {"Alice A"}, "Authorization": {"Basic client"},
		}, 0},
		{"user only", nil, ForwardUser, map[string][]string{HeaderUser: {"alice"}, "Authorization": {"Basic client"}}, 0},
		{"tokens", nil, ForwardAccessToken | ForwardIDToken, map[string][]string{
			HeaderAccessToken: {"access-token-value"}, "Authorization": {"Bearer id-token-value"},
		}, 0},
		{"empty fields not sent", func(id *auth.Identity) { id.Email = ""; id.Groups = nil }, ForwardUser | ForwardEmail | ForwardGroups,
			map[string][]string{HeaderUser: {"alice"}, "Authorization": {"Basic client"}}, 0},
		{"CRLF in user dropped", func(id *auth.Identity) { id.User = "alice\r\nX-Forwarded-User: root" }, ForwardUser | ForwardEmail,
			map[string][]string{HeaderEmail: {"alice@example.com"}, "Authorization": {"Basic client"}}, ForwardUser},
		{"NUL in email dropped", func(id *auth.Identity) { id.Email = "a\x00@example.com" }, ForwardEmail,
			map[string][]string{"Authorization": {"Basic client"}}, ForwardEmail},
		{"surrounding space dropped", func(id *auth.Identity) { id.User = "admin " }, ForwardUser,
			map[string][]string{"Authorization": {"Basic client"}}, ForwardUser},
		{"bad groups left out", func(id *auth.Identity) { id.Groups = []string{"dev", "a,admins", "ops\n", "", "qa"} }, ForwardGroups,
			map[string][]string{HeaderGroups: {"dev,qa"}, "Authorization": {"Basic client"}}, ForwardGroups},
		{"only bad groups", func(id *auth.Identity) { id.Groups = []string{"x\ry"} }, ForwardGroups,
			map[string][]string{"Authorization": {"Basic client"}}, ForwardGroups},
		{"id_token with newline removes authorization", func(id *auth.Identity) { id.IDToken = "a\nb" }, ForwardIDToken,
			map[string][]string{}, ForwardIDToken},
		{"utf-8 kept", func(id *auth.Identity) { id.User = "zoë" }, ForwardUser,
			map[string][]string{HeaderUser: {"zoë"}, "Authorization": {"Basic client"}}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id := alice()
			if tt.mod != nil {
				tt.mod(id)
			}
			h := http.Header{"Authorization": {"Basic client"}}
			dropped := SetIdentityHeaders(h, id, tt.forward)
			if dropped != tt.wantDropped {
				t.Errorf("SetIdentityHeaders dropped = %v, want %v", dropped, tt.wantDropped)
			}
			if len(h) != len(tt.want) {
				t.Errorf("SetIdentityHeaders(%v) set %v, want %v", tt.forward, h, tt.want)
			}
			for k, v := range tt.want {
				if !slices.Equal(h[k], v) {
					t.Errorf("SetIdentityHeaders(%v)[%s] = %q, want %q", tt.forward, k, h[k], v)
				}
			}
		})
	}
}

// An email the issuer did not verify is never forwarded: it may be anyone's.
func TestUnverifiedEmailNotForwarded(t *testing.T) {
	id := alice()
	id.EmailVerified = false
	h := http.Header{}
	SetIdentityHeaders(h, id, DefaultForward)
	SetAuthRequestHeaders(h, id, DefaultForward)
	if h.Get(HeaderEmail) != "" || h.Get(HeaderAuthRequestEmail) != "" {
		t.Fatalf("unverified email forwarded: %v", h)
	}
	if h.Get(HeaderUser) != "alice" {
		t.Fatalf("user not forwarded: %v", h)
	}
}

func TestSetIdentityHeadersValuesAreIndependent(t *testing.T) {
	h := http.Header{}
	SetIdentityHeaders(h, alice(), DefaultForward)
	h.Add(HeaderUser, "second")
	if g := h[HeaderEmail]; !slices.Equal(g, []string{"alice@example.com"}) {
		t.Errorf("appending to %s changed %s to %q", HeaderUser, HeaderEmail, g)
	}
}

func TestSetAuthRequestHeaders(t *testing.T) {
	h := http.Header{}
	SetAuthRequestHeaders(h, alice(), DefaultForward|ForwardAccessToken|ForwardIDToken)
	want := map[string]string{
		HeaderAuthRequestUser: "alice", HeaderAuthRequestEmail: "alice@example.com", HeaderAuthRequestGroups: "admins,dev",
		HeaderAuthRequestPreferredUsername: "Alice A", HeaderAuthRequestAccessToken: "access-token-value",
	}
	if len(h) != len(want) {
		t.Errorf("SetAuthRequestHeaders set %v, want %v", h, want)
	}
	for k, v := range want {
		if g := h.Get(k); g != v {
			t.Errorf("SetAuthRequestHeaders[%s] = %q, want %q", k, g, v)
		}
	}
	if SetAuthRequestHeaders(h, nil, DefaultForward); len(h) != len(want) {
		t.Error("SetAuthRequestHeaders(nil identity) changed h")
	}
}

func TestParseForward(t *testing.T) {
	tests := []struct {
		in      []string
		want    Forward
		wantErr bool
	}{
		{nil, DefaultForward, false},
		{[]string{}, 0, false},
		{[]string{"id_token", "assertion"}, ForwardIDToken | ForwardAssertion, false},
		{[]string{"User"}, 0, true},
	}
	for _, tt := range tests {
		got, err := ParseForward(tt.in)
		if got != tt.want || (err != nil) != tt.wantErr {
			t.Errorf("ParseForward(%q) = %v, %v; want %v, error %v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
	if g := DefaultForward.String(); g != "user,email,groups,preferred_username" {
		t.Errorf("DefaultForward.String() = %q", g)
	}
}

// typicalHeader is a browser request's headers after the proxy removed the
// session cookie: twelve names, none of them ours.
func typicalHeader() http.Header {
	return http.Header{
		"Accept":                    {"text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"},
		"Accept-Encoding":           {"gzip, deflate, br"},
		"Accept-Language":           {"en-GB,en;q=0.9"},
		"Cache-Control":             {"no-cache"},
		"Cookie":                    {"theme=dark"},
		"Pragma":                    {"no-cache"},
		"Referer":                   {"https://app.example.com/"},
		"Sec-Fetch-Dest":            {"document"},
		"Sec-Fetch-Mode":            {"navigate"},
		"Sec-Fetch-Site":            {"same-origin"},
		"Upgrade-Insecure-Requests": {"1"},
		"User-Agent":                {"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36"},
	}
}

func BenchmarkStripIdentityHeaders(b *testing.B) {
	h := typicalHeader()
	b.ReportAllocs()
	for b.Loop() {
		StripIdentityHeaders(h)
	}
}

func BenchmarkStripIdentityHeadersSpoofed(b *testing.B) {
	base := typicalHeader()
	base["X-Forwarded-User"] = []string{"evil"}
	base["x_portcullis_assertion"] = []string{"evil"}
	h := make(http.Header, len(base))
	b.ReportAllocs()
	for b.Loop() {
		for k, v := range base {
			h[k] = v
		}
		StripIdentityHeaders(h)
	}
}

func BenchmarkSetIdentityHeaders(b *testing.B) {
	id := alice()
	h := typicalHeader()
	b.ReportAllocs()
	for b.Loop() {
		SetIdentityHeaders(h, id, DefaultForward)
	}
}
