// Package sessiontest is the conformance suite every session store of
// auth/session must pass, plus the small helpers (secrets, a settable clock)
// tests of other packages need to build a session.Manager. It is imported
// only from _test.go files.
package sessiontest

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"github.com/portcullis-proxy/portcullis/auth/authtest"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/portcullis-proxy/portcullis/auth"
	"github.com/portcullis-proxy/portcullis/auth/session"
)

// NewManager builds the Manager under test. The suite sets everything in
// cfg but the store; the factory adds its store settings (cfg.Store), calls
// session.New (failing t on error) and closes the Manager when t ends —
// MustNew does the last two.
type NewManager func(t *testing.T, cfg session.Config, opts session.Options) *session.Manager

// MustNew calls session.New, fails t on error and closes the Manager when
// t ends.
func MustNew(t testing.TB, cfg session.Config, opts session.Options) *session.Manager {
	t.Helper()
	m, err := session.New(cfg, opts)
	if err != nil {
		t.Fatalf("session.New: %v", err)
	}
	t.Cleanup(func() {
		if err := m.Close(); err != nil {
			t.Errorf("Close() = %v, want nil", err)
		}
	})
	return m
}

// Secret returns a new random session secret, as `portcullis secret` does.
func Secret() auth.Secret {
	b := make([]byte, 32)
	rand.Read(b)
	return auth.Secret(base64.StdEncoding.EncodeToString(b))
}

// Clock is a settable clock for session.Options.Now (the shared test clock).
type Clock = authtest.Clock

// NewClock returns a clock stopped at t.
func NewClock(t time.Time) *Clock { return authtest.NewClock(t) }

// t0 is where every suite clock starts: a whole second, so that times
// survive the wire format's Unix seconds unchanged.
var t0 = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

// suite carries the factory into the subtests.
type suite struct {
	newManager NewManager
}

// manager builds a Manager with the given secrets and lifetime (0: the
// default), on a clock the caller controls.
func (s suite) manager(t *testing.T, clock *Clock, lifetime time.Duration, secrets ...auth.Secret) *session.Manager {
	t.Helper()
	return s.newManager(t, session.Config{Secrets: secrets, Lifetime: lifetime}, session.Options{Now: clock.Now})
}

// Run runs the conformance suite against the store newManager configures:
// a round trip through a real httptest.Server and cookie jar; cookie
// attributes and the 4 KB per-cookie budget; an 8 KB session split into
// chunks and joined back, and shrunk without leaving chunks behind;
// truncated, swapped, tampered, garbage and unknown-key cookies (all
// ErrNoSession, never a panic); lifetime and ExpiresAt on an injected
// clock; key rotation and re-sealing; Clear (for a server-side store, also
// that a copy of the cookie is dead afterwards); that a new sign-in on a
// browser carrying someone else's cookie gets its own session;
// StripCookies; Seal/Open with maxAge; concurrent Loads; and that repeat
// Loads of one cookie (served from the decoded-session cache) give private
// copies, end at the session's expiry on the same Manager, never let a
// tampered copy in, and for a server-side store end at Clear.
func Run(t *testing.T, newManager NewManager) {
	s := suite{newManager: newManager}
	t.Run("RoundTripOverServer", s.testRoundTrip)
	t.Run("CookieAttributes", s.testCookieAttributes)
	t.Run("Chunked8KB", s.testChunked)
	t.Run("TruncatedChunks", s.testTruncated)
	t.Run("ClearRemovesEverything", s.testClear)
	t.Run("Tampered", s.testTampered)
	t.Run("Garbage", s.testGarbage)
	t.Run("UnknownKey", s.testUnknownKey)
	t.Run("Expired", s.testExpired)
	t.Run("Rotation", s.testRotation)
	t.Run("NewIdentityDoesNotReuseSession", s.testNewIdentity)
	t.Run("StripCookies", s.testStripCookies)
	t.Run("SealOpen", s.testSealOpen)
	t.Run("ConcurrentLoad", s.testConcurrentLoad)
	t.Run("RepeatLoads", s.testRepeatLoads)
}

// sampleData returns a session with every field set and n groups.
func sampleData(sub string, groups int) *session.Data {
	d := &session.Data{
		Identity: auth.Identity{
			Issuer:            "https://issuer.example.com",
			Subject:           sub,
			User:              "user-" + sub,
			Email:             sub + "@example.com",
			EmailVerified:     true,
			PreferredUsername: "pref-" + sub,
			Name:              "Name " + sub,
		},
		IDToken:      "id-token-" + sub,
		AccessToken:  "access-token-" + sub,
		RefreshToken: "refresh-token-" + sub,
		AccessExpiry: t0.Add(10 * time.Minute),
	}
	for i := range groups {
		d.Identity.Groups = append(d.Identity.Groups, fmt.Sprintf("cn=group-number-%04d,ou=groups", i))
	}
	return d
}

// checkSame fails t unless got carries what want (as saved) carried.
func checkSame(t *testing.T, got, want *session.Data) {
	t.Helper()
	g, w := got.Identity, want.Identity
	if g.Issuer != w.Issuer || g.Subject != w.Subject || g.User != w.User || g.Email != w.Email ||
		g.EmailVerified != w.EmailVerified || g.PreferredUsername != w.PreferredUsername || g.Name != w.Name ||
		!slices.Equal(g.Groups, w.Groups) {
		t.Errorf("Load().Identity = %+v, want %+v", g, w)
	}
	if got.IDToken != want.IDToken || got.AccessToken != want.AccessToken || got.RefreshToken != want.RefreshToken {
		t.Errorf("Load() tokens differ from the saved ones")
	}
	if !got.AccessExpiry.Equal(want.AccessExpiry) || !got.CreatedAt.Equal(want.CreatedAt) || !got.ExpiresAt.Equal(want.ExpiresAt) {
		t.Errorf("Load() times = %v %v %v, want %v %v %v", got.AccessExpiry, got.CreatedAt, got.ExpiresAt,
			want.AccessExpiry, want.CreatedAt, want.ExpiresAt)
	}
	if g.Method != auth.MethodSession {
		t.Errorf("Load().Identity.Method = %q, want %q", g.Method, auth.MethodSession)
	}
	if g.AccessToken.Reveal() != want.AccessToken || g.IDToken.Reveal() != want.IDToken {
		t.Errorf("Load().Identity tokens not filled from the session")
	}
}

// saveCookies saves d with m on a request carrying cookies and returns the
// response's Set-Cookie headers.
func saveCookies(t *testing.T, m *session.Manager, d *session.Data, cookies ...*http.Cookie) []*http.Cookie {
	t.Helper()
	rec := httptest.NewRecorder()
	if err := m.Save(rec, requestWith(cookies), d); err != nil {
		t.Fatalf("Save() = %v, want nil", err)
	}
	return rec.Result().Cookies()
}

// requestWith returns a request carrying the live cookies among cookies,
// as a browser would send them after applying Set-Cookie headers.
func requestWith(cookies []*http.Cookie) *http.Request {
	r := httptest.NewRequest(http.MethodGet, "http://app.example.com/", nil)
	for _, c := range live(cookies) {
		r.AddCookie(&http.Cookie{Name: c.Name, Value: c.Value})
	}
	return r
}

// live applies a sequence of Set-Cookie headers like a jar: a later cookie
// replaces an earlier one of the same name, and deleted ones disappear.
func live(cookies []*http.Cookie) []*http.Cookie {
	var out []*http.Cookie
	for _, c := range cookies {
		out = slices.DeleteFunc(out, func(o *http.Cookie) bool { return o.Name == c.Name })
		if c.MaxAge >= 0 && c.Value != "" {
			out = append(out, c)
		}
	}
	return out
}

func loadWith(m *session.Manager, cookies []*http.Cookie) (*session.Data, error) {
	return m.Load(requestWith(cookies))
}

// ---- a real server with a cookie jar ----

type harness struct {
	t      *testing.T
	m      *session.Manager
	srv    *httptest.Server
	client *http.Client
	url    *url.URL

	mu     sync.Mutex
	toSave *session.Data
	loaded *session.Data
}

func newHarness(t *testing.T, m *session.Manager) *harness {
	h := &harness{t: t, m: m}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /save", func(w http.ResponseWriter, r *http.Request) {
		h.mu.Lock()
		d := h.toSave
		h.mu.Unlock()
		if err := m.Save(w, r, d); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("GET /load", func(w http.ResponseWriter, r *http.Request) {
		d, err := m.Load(r)
		if err != nil {
			if !errors.Is(err, session.ErrNoSession) {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			http.Error(w, "not signed in", http.StatusUnauthorized)
			return
		}
		h.mu.Lock()
		h.loaded = d
		h.mu.Unlock()
		w.WriteHeader(http.StatusOK)
	})
	mux.HandleFunc("POST /clear", func(w http.ResponseWriter, r *http.Request) {
		m.Clear(w, r)
		w.WriteHeader(http.StatusNoContent)
	})
	h.srv = httptest.NewServer(mux)
	t.Cleanup(h.srv.Close)
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	h.client = h.srv.Client()
	h.client.Jar = jar
	h.url, _ = url.Parse(h.srv.URL)
	return h
}

func (h *harness) do(method, path string) *http.Response {
	h.t.Helper()
	req, err := http.NewRequestWithContext(h.t.Context(), method, h.srv.URL+path, nil)
	if err != nil {
		h.t.Fatal(err)
	}
	resp, err := h.client.Do(req)
	if err != nil {
		h.t.Fatalf("%s %s: %v", method, path, err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode >= 500 {
		h.t.Fatalf("%s %s = %d %s", method, path, resp.StatusCode, body)
	}
	return resp
}

func (h *harness) save(d *session.Data) {
	h.t.Helper()
	h.mu.Lock()
	h.toSave = d
	h.mu.Unlock()
	if resp := h.do(http.MethodPost, "/save"); resp.StatusCode != http.StatusNoContent {
		h.t.Fatalf("POST /save = %d, want 204", resp.StatusCode)
	}
}

// load returns the session the server loaded, or nil when it answered 401.
func (h *harness) load() *session.Data {
	h.t.Helper()
	resp := h.do(http.MethodGet, "/load")
	if resp.StatusCode == http.StatusUnauthorized {
		return nil
	}
	if resp.StatusCode != http.StatusOK {
		h.t.Fatalf("GET /load = %d, want 200 or 401", resp.StatusCode)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.loaded
}

// sessionCookies returns the jar's cookies that belong to the session.
func (h *harness) sessionCookies() []*http.Cookie {
	var out []*http.Cookie
	for _, c := range h.client.Jar.Cookies(h.url) {
		if c.Name == h.m.CookieName() || strings.HasPrefix(c.Name, h.m.CookieName()+"_") {
			out = append(out, c)
		}
	}
	return out
}

// ---- the tests ----

func (s suite) testRoundTrip(t *testing.T) {
	clock := NewClock(t0)
	m := s.manager(t, clock, time.Hour, Secret())
	h := newHarness(t, m)
	if d := h.load(); d != nil {
		t.Fatalf("Load() without a cookie = %v, want ErrNoSession", d)
	}
	want := sampleData("alice", 3)
	h.save(want)
	if !want.CreatedAt.Equal(t0) || !want.ExpiresAt.Equal(t0.Add(time.Hour)) {
		t.Errorf("Save() set CreatedAt, ExpiresAt = %v, %v, want %v, %v", want.CreatedAt, want.ExpiresAt, t0, t0.Add(time.Hour))
	}
	got := h.load()
	if got == nil {
		t.Fatal("Load() after Save = ErrNoSession, want the session")
	}
	checkSame(t, got, want)
	if !got.Identity.Expiry.Equal(want.ExpiresAt) {
		t.Errorf("Load().Identity.Expiry = %v, want ExpiresAt %v", got.Identity.Expiry, want.ExpiresAt)
	}
	// Saving again (a token refresh) keeps the session times.
	got.AccessToken = "refreshed"
	clock.Advance(time.Minute)
	h.save(got)
	again := h.load()
	if again == nil || again.AccessToken != "refreshed" || !again.CreatedAt.Equal(t0) {
		t.Errorf("Load() after a second Save = %v, want the refreshed session created at %v", again, t0)
	}
}

func (s suite) testCookieAttributes(t *testing.T) {
	tests := []struct {
		name     string
		secure   bool
		sameSite string
		want     http.SameSite
	}{
		{"default", false, "", http.SameSiteLaxMode},
		{"secure lax", true, "lax", http.SameSiteLaxMode},
		{"strict", false, "strict", http.SameSiteStrictMode},
		{"none", true, "none", http.SameSiteNoneMode},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := NewClock(t0)
			m := s.newManager(t, session.Config{Secrets: []auth.Secret{Secret()}, SameSite: tt.sameSite, Lifetime: 2 * time.Hour},
				session.Options{Secure: tt.secure, Now: clock.Now})
			if m.Secure() != tt.secure {
				t.Errorf("Secure() = %v, want %v", m.Secure(), tt.secure)
			}
			for _, groups := range []int{1, 300} {
				cookies := saveCookies(t, m, sampleData("a", groups))
				if len(live(cookies)) == 0 {
					t.Fatal("Save() set no cookie")
				}
				for _, c := range live(cookies) {
					if c.Secure != tt.secure || !c.HttpOnly || c.Path != "/" || c.SameSite != tt.want {
						t.Errorf("cookie %s: Secure=%v HttpOnly=%v Path=%q SameSite=%v, want %v true \"/\" %v",
							c.Name, c.Secure, c.HttpOnly, c.Path, c.SameSite, tt.secure, tt.want)
					}
					if c.MaxAge != 7200 {
						t.Errorf("cookie %s: MaxAge = %d, want 7200 (the remaining lifetime)", c.Name, c.MaxAge)
					}
					if n := len(c.Name) + len(c.Value); n > 4096 {
						t.Errorf("cookie %s: name+value = %d bytes, want ≤ 4096", c.Name, n)
					}
				}
			}
		})
	}
}

func (s suite) testChunked(t *testing.T) {
	m := s.manager(t, NewClock(t0), 0, Secret())
	h := newHarness(t, m)
	big := sampleData("bob", 300)
	if n := len(strings.Join(big.Identity.Groups, "")); n < 8192 {
		t.Fatalf("test data has %d bytes of groups, want ≥ 8192", n)
	}
	h.save(big)
	got := h.load()
	if got == nil {
		t.Fatal("Load() of an 8 KB session = ErrNoSession, want the session")
	}
	checkSame(t, got, big)
	for _, c := range h.sessionCookies() {
		if n := len(c.Name) + len(c.Value); n > 4096 {
			t.Errorf("cookie %s: name+value = %d bytes, want ≤ 4096", c.Name, n)
		}
	}

	// A smaller session replaces the big one completely: the browser keeps
	// exactly the cookies a fresh session of that size would have.
	for _, groups := range []int{120, 1} {
		h.save(sampleData("bob", groups))
		fresh := live(saveCookies(t, m, sampleData("bob", groups)))
		if got, want := cookieNames(h.sessionCookies()), cookieNames(fresh); !slices.Equal(got, want) {
			t.Errorf("cookies after shrinking to %d groups = %v, want %v (left-over chunks must be expired)", groups, got, want)
		}
		if got := h.load(); got == nil || len(got.Identity.Groups) != groups {
			t.Errorf("Load() after shrinking = %v, want the session with %d groups", got, groups)
		}
	}
}

func cookieNames(cs []*http.Cookie) []string {
	var names []string
	for _, c := range cs {
		names = append(names, c.Name)
	}
	slices.Sort(names)
	return names
}

func (s suite) testTruncated(t *testing.T) {
	m := s.manager(t, NewClock(t0), 0, Secret())
	cookies := live(saveCookies(t, m, sampleData("carol", 300)))
	if _, err := loadWith(m, cookies); err != nil {
		t.Fatalf("Load() of the full session = %v, want nil", err)
	}
	for i := range cookies {
		rest := slices.Delete(slices.Clone(cookies), i, i+1)
		if len(rest) == 0 {
			continue
		}
		if _, err := loadWith(m, rest); !errors.Is(err, session.ErrNoSession) {
			t.Errorf("Load() without cookie %s = %v, want ErrNoSession", cookies[i].Name, err)
		}
	}
	if len(cookies) > 1 {
		// Swapping two chunks breaks the MAC.
		swapped := slices.Clone(cookies)
		swapped[len(swapped)-1].Value, swapped[len(swapped)-2].Value = cookies[len(cookies)-2].Value, cookies[len(cookies)-1].Value
		if _, err := loadWith(m, swapped); !errors.Is(err, session.ErrNoSession) {
			t.Errorf("Load() with swapped chunks = %v, want ErrNoSession", err)
		}
	}
}

func (s suite) testClear(t *testing.T) {
	m := s.manager(t, NewClock(t0), 0, Secret())
	h := newHarness(t, m)
	h.save(sampleData("dave", 300))
	stolen := h.sessionCookies()
	if h.load() == nil {
		t.Fatal("Load() after Save = ErrNoSession, want the session")
	}
	if resp := h.do(http.MethodPost, "/clear"); resp.StatusCode != http.StatusNoContent {
		t.Fatalf("POST /clear = %d, want 204", resp.StatusCode)
	}
	if left := h.sessionCookies(); len(left) != 0 {
		t.Errorf("cookies after Clear = %v, want none", cookieNames(left))
	}
	if d := h.load(); d != nil {
		t.Errorf("Load() after Clear = %v, want ErrNoSession", d)
	}
	if m.StoreType() == session.StoreRedis {
		if _, err := loadWith(m, stolen); !errors.Is(err, session.ErrNoSession) {
			t.Errorf("Load() with a copy of the cookie taken before Clear = %v, want ErrNoSession (server-side store)", err)
		}
	}

	// Clear also expires stray chunks and works without any session.
	rec := httptest.NewRecorder()
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.Header.Set("Cookie", m.CookieName()+"_1=x; "+m.CookieName()+"_7=y; other=z; "+m.CookieName()+"_login_abc=w")
	m.Clear(rec, r)
	expired := map[string]bool{}
	for _, c := range rec.Result().Cookies() {
		if c.MaxAge >= 0 {
			t.Errorf("Clear() set cookie %s with MaxAge %d, want it expired", c.Name, c.MaxAge)
		}
		expired[c.Name] = true
	}
	for _, n := range []string{m.CookieName(), m.CookieName() + "_1", m.CookieName() + "_7"} {
		if !expired[n] {
			t.Errorf("Clear() did not expire %s; expired %v", n, expired)
		}
	}
	for _, n := range []string{"other", m.CookieName() + "_login_abc"} {
		if expired[n] {
			t.Errorf("Clear() expired %s, which is not a session cookie", n)
		}
	}
}

func (s suite) testTampered(t *testing.T) {
	m := s.manager(t, NewClock(t0), 0, Secret())
	for _, groups := range []int{1, 300} {
		cookies := live(saveCookies(t, m, sampleData("eve", groups)))
		for i, c := range cookies {
			if len(c.Value) < 8 {
				continue // a chunk count: changing it is covered by TruncatedChunks
			}
			for _, pos := range []int{0, len(c.Value) / 2, len(c.Value) - 1} {
				bad := slices.Clone(cookies)
				v := []byte(c.Value)
				if v[pos] == 'A' {
					v[pos] = 'B'
				} else {
					v[pos] = 'A'
				}
				bad[i] = &http.Cookie{Name: c.Name, Value: string(v)}
				if _, err := loadWith(m, bad); !errors.Is(err, session.ErrNoSession) {
					t.Errorf("Load() with %s changed at byte %d = %v, want ErrNoSession", c.Name, pos, err)
				}
			}
		}
	}
}

func (s suite) testGarbage(t *testing.T) {
	m := s.manager(t, NewClock(t0), 0, Secret())
	n := m.CookieName()
	valid := live(saveCookies(t, m, sampleData("frank", 1)))[0].Value
	tests := []struct {
		name   string
		header string
	}{
		{"empty value", n + "="},
		{"no equals", n},
		{"not base64", n + "=!!!!%%%%"},
		{"short base64", n + "=QUJD"},
		{"count zero", n + "=0"},
		{"count one", n + "=1; " + n + "_1=" + valid},
		{"count negative", n + "=-1"},
		{"count too big", n + "=99"},
		{"count without chunks", n + "=3"},
		{"count with garbage chunks", n + "=2; " + n + "_1=abc; " + n + "_2=def"},
		{"whole value as chunk 1", n + "=2; " + n + "_1=" + valid + "; " + n + "_2=x"},
		{"huge", n + "=" + strings.Repeat("A", 200_000)},
		{"huge chunks", n + "=12" + strings.Repeat("; "+n+"_1="+strings.Repeat("B", 5000), 12)},
		{"valid value for another name", "other=" + valid + "; " + n + "=" + valid[:len(valid)-4]},
		{"quoted garbage", n + `="abc"`},
		{"unicode", n + "=ä€𝄞"},
		{"base64 of random bytes", n + "=" + base64.URLEncoding.EncodeToString(make([]byte, 300))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, "/", nil)
			r.Header.Set("Cookie", tt.header)
			if _, err := m.Load(r); !errors.Is(err, session.ErrNoSession) {
				t.Errorf("Load(Cookie: %.60q) = %v, want ErrNoSession", tt.header, err)
			}
		})
	}
	// Chunks without a base cookie are no session at all.
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.Header.Set("Cookie", n+"_1="+valid)
	if _, err := m.Load(r); err != session.ErrNoSession {
		t.Errorf("Load(only a chunk) = %v, want exactly ErrNoSession", err)
	}
}

func (s suite) testUnknownKey(t *testing.T) {
	clock := NewClock(t0)
	m1 := s.manager(t, clock, 0, Secret())
	m2 := s.manager(t, clock, 0, Secret())
	for _, groups := range []int{1, 300} {
		cookies := saveCookies(t, m1, sampleData("gina", groups))
		if _, err := loadWith(m2, cookies); !errors.Is(err, session.ErrNoSession) {
			t.Errorf("Load() of a session sealed with an unknown key (%d groups) = %v, want ErrNoSession", groups, err)
		}
	}
}

func (s suite) testExpired(t *testing.T) {
	secret := Secret()
	clock := NewClock(t0)
	m := s.manager(t, clock, time.Hour, secret)
	cookies := saveCookies(t, m, sampleData("hank", 1))
	short := sampleData("hank", 1)
	short.ExpiresAt = t0.Add(10 * time.Minute)
	shortCookies := saveCookies(t, m, short)
	long := sampleData("hank", 1)
	long.ExpiresAt = t0.Add(100 * time.Hour)
	longCookies := saveCookies(t, m, long)
	if !long.ExpiresAt.Equal(t0.Add(time.Hour)) {
		t.Errorf("Save() with ExpiresAt past the lifetime set it to %v, want %v", long.ExpiresAt, t0.Add(time.Hour))
	}
	shorter := s.manager(t, clock, 20*time.Minute, secret)

	tests := []struct {
		name    string
		m       *session.Manager
		cookies []*http.Cookie
		at      time.Duration // after t0
		ok      bool
	}{
		{"fresh", m, cookies, 0, true},
		{"just before lifetime", m, cookies, time.Hour - time.Second, true},
		{"at lifetime", m, cookies, time.Hour, false},
		{"long after", m, cookies, 1000 * time.Hour, false},
		{"explicit ExpiresAt honoured", m, shortCookies, 9 * time.Minute, true},
		{"explicit ExpiresAt passed", m, shortCookies, 11 * time.Minute, false},
		{"ExpiresAt capped at lifetime", m, longCookies, 2 * time.Hour, false},
		{"shortened lifetime, young session", shorter, cookies, 19 * time.Minute, true},
		{"shortened lifetime ends older sessions", shorter, cookies, 21 * time.Minute, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := NewClock(t0.Add(tt.at))
			// A manager on its own clock, sharing the store and secret.
			lm := s.manager(t, c, tt.m.Lifetime(), secret)
			_, err := loadWith(lm, tt.cookies)
			if tt.ok && err != nil {
				t.Errorf("Load() at t0+%s = %v, want the session", tt.at, err)
			}
			if !tt.ok && !errors.Is(err, session.ErrNoSession) {
				t.Errorf("Load() at t0+%s = %v, want ErrNoSession", tt.at, err)
			}
		})
	}

	// Saving a session that has already ended fails and sets no cookie.
	clock.Advance(2 * time.Hour)
	old := sampleData("hank", 1)
	old.CreatedAt = t0
	rec := httptest.NewRecorder()
	if err := m.Save(rec, httptest.NewRequest(http.MethodGet, "/", nil), old); err == nil {
		t.Error("Save() of an ended session = nil, want an error")
	}
	if len(rec.Result().Cookies()) != 0 {
		t.Errorf("Save() of an ended session set cookies %v", cookieNames(rec.Result().Cookies()))
	}
}

func (s suite) testRotation(t *testing.T) {
	clock := NewClock(t0)
	k1, k2 := Secret(), Secret()
	before := s.manager(t, clock, 0, k1)
	during := s.manager(t, clock, 0, k2, k1)
	after := s.manager(t, clock, 0, k2)
	for _, groups := range []int{1, 300} {
		old := saveCookies(t, before, sampleData("ivy", groups))
		d, err := loadWith(during, old)
		if err != nil {
			t.Fatalf("Load() of a session sealed with a retired-but-listed key = %v, want the session", err)
		}
		if _, err := loadWith(after, old); !errors.Is(err, session.ErrNoSession) {
			t.Errorf("Load() of a session sealed with a removed key = %v, want ErrNoSession", err)
		}
		resealed := append(slices.Clone(old), saveCookies(t, during, d, live(old)...)...)
		got, err := loadWith(after, resealed)
		if err != nil {
			t.Fatalf("Load() after re-Save with the current key = %v, want the session", err)
		}
		if got.Identity.Subject != "ivy" || len(got.Identity.Groups) != groups {
			t.Errorf("Load() after rotation = %v, want ivy's session", got)
		}
		if _, err := loadWith(before, resealed); !errors.Is(err, session.ErrNoSession) {
			t.Errorf("Load() with only the old key after re-Save = %v, want ErrNoSession (Save must seal with the first secret)", err)
		}
	}
}

func (s suite) testNewIdentity(t *testing.T) {
	m := s.manager(t, NewClock(t0), 0, Secret())
	a := live(saveCookies(t, m, sampleData("mallory", 1)))
	// A victim signs in on a browser that carries mallory's (planted) cookie.
	b := live(append(slices.Clone(a), saveCookies(t, m, sampleData("victim", 1), a...)...))
	if got, err := loadWith(m, b); err != nil || got.Identity.Subject != "victim" {
		t.Fatalf("Load() of the new session = %v, %v, want victim's", got, err)
	}
	if got, err := loadWith(m, a); err != nil || got.Identity.Subject != "mallory" {
		t.Errorf("Load() with the planted cookie = %v, %v, want mallory's own session, not the victim's", got, err)
	}
}

func (s suite) testStripCookies(t *testing.T) {
	m := s.manager(t, NewClock(t0), 0, Secret())
	n := m.CookieName()
	tests := []struct {
		name string
		in   []string // Cookie headers
		want []string // nil: header removed
	}{
		{"none of ours", []string{"a=1; b=2"}, []string{"a=1; b=2"}},
		{"odd spacing kept when untouched", []string{"a=1;b=2;  c=\"3\""}, []string{"a=1;b=2;  c=\"3\""}},
		{"only ours", []string{n + "=x"}, nil},
		{"ours first", []string{n + "=x; a=1"}, []string{"a=1"}},
		{"ours last", []string{"a=1; " + n + "=x"}, []string{"a=1"}},
		{"chunks and friends", []string{"a=1; " + n + "=2; " + n + "_1=p; b=2; " + n + "_2=q; " + n + "_login_abc=z; " + n + "_issuer=i; c=3"}, []string{"a=1; b=2; c=3"}},
		{"similar names kept", []string{n + "x=1; x" + n + "=2; " + n + "-1=3"}, []string{n + "x=1; x" + n + "=2; " + n + "-1=3"}},
		{"spaces around name", []string{"a=1;  " + n + " =x ; b=2"}, []string{"a=1; b=2"}},
		{"values kept byte for byte", []string{`a="q v"; ` + n + `=x; b==c=d; e`}, []string{`a="q v"; b==c=d; e`}},
		{"several headers", []string{n + "=x", "a=1", n + "_1=y; b=2"}, []string{"a=1", "b=2"}},
		{"value mentions our name", []string{"a=" + n + "; b=2"}, []string{"a=" + n + "; b=2"}},
		{"no header", nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, "/", nil)
			for _, h := range tt.in {
				r.Header.Add("Cookie", h)
			}
			r.Header.Set("X-Other", "kept")
			m.StripCookies(r)
			got, present := r.Header["Cookie"]
			if tt.want == nil && present {
				t.Errorf("StripCookies(%q): Cookie = %q, want the header removed", tt.in, got)
			} else if !slices.Equal(got, tt.want) {
				t.Errorf("StripCookies(%q): Cookie = %q, want %q", tt.in, got, tt.want)
			}
			if r.Header.Get("X-Other") != "kept" {
				t.Error("StripCookies touched another header")
			}
		})
	}
}

func (s suite) testSealOpen(t *testing.T) {
	type pending struct {
		State    string   `json:"s"`
		Verifier string   `json:"v"`
		Scopes   []string `json:"sc"`
	}
	clock := NewClock(t0)
	k1, k2 := Secret(), Secret()
	m := s.manager(t, clock, 0, k1)
	in := pending{State: "st", Verifier: "ver", Scopes: []string{"openid"}}
	sealed, err := m.Seal("_portcullis_login_abc", in)
	if err != nil {
		t.Fatalf("Seal() = %v, want nil", err)
	}
	if len(sealed)+len("_portcullis_login_abc") > 4096 {
		t.Errorf("Seal() = %d bytes, want it to fit one cookie", len(sealed))
	}
	tamper := []byte(sealed)
	tamper[len(tamper)/2] ^= 1

	rotated := []auth.Secret{k2, k1}
	tests := []struct {
		name   string
		keys   []auth.Secret // the opener's secrets
		cname  string
		value  string
		maxAge time.Duration
		after  time.Duration
		ok     bool
	}{
		{"round trip", []auth.Secret{k1}, "_portcullis_login_abc", sealed, time.Minute, 0, true},
		{"just within maxAge", rotated, "_portcullis_login_abc", sealed, time.Minute, time.Minute, true},
		{"older than maxAge", rotated, "_portcullis_login_abc", sealed, time.Minute, time.Minute + time.Second, false},
		{"retired key still in rotation", rotated, "_portcullis_login_abc", sealed, time.Minute, 0, true},
		{"unknown key", []auth.Secret{k2}, "_portcullis_login_abc", sealed, time.Minute, 0, false},
		{"other cookie name", rotated, "_portcullis_login_xyz", sealed, time.Minute, 0, false},
		{"tampered", rotated, "_portcullis_login_abc", string(tamper), time.Minute, 0, false},
		{"empty", rotated, "_portcullis_login_abc", "", time.Minute, 0, false},
		{"garbage", rotated, "_portcullis_login_abc", "!!!", time.Minute, 0, false},
		{"too long", rotated, "_portcullis_login_abc", strings.Repeat("A", 100_000), time.Minute, 0, false},
		{"zero maxAge", rotated, "_portcullis_login_abc", sealed, 0, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opener := s.manager(t, NewClock(t0.Add(tt.after)), 0, tt.keys...)
			var out pending
			err := opener.Open(tt.cname, tt.value, &out, tt.maxAge)
			if tt.ok {
				if err != nil || out.State != in.State || out.Verifier != in.Verifier || !slices.Equal(out.Scopes, in.Scopes) {
					t.Errorf("Open() = %+v, %v, want %+v, nil", out, err, in)
				}
				return
			}
			if !errors.Is(err, session.ErrInvalid) {
				t.Errorf("Open() = %v, want ErrInvalid", err)
			}
			if len(tt.value) > 8 && err != nil && strings.Contains(err.Error(), tt.value[:8]) {
				t.Errorf("Open() error %q contains the value", err)
			}
		})
	}

	// A value sealed in the future (clock skew beyond a minute, or a forged
	// timestamp) is refused.
	future, err := s.manager(t, NewClock(t0.Add(time.Hour)), 0, k1).Seal("n", in)
	if err != nil {
		t.Fatal(err)
	}
	var out pending
	if err := m.Open("n", future, &out, 24*time.Hour); !errors.Is(err, session.ErrInvalid) {
		t.Errorf("Open() of a value sealed an hour ahead = %v, want ErrInvalid", err)
	}
	if _, err := m.Seal("n", strings.Repeat("x", 5000)); err == nil {
		t.Error("Seal() of 5000 bytes = nil error, want one (it cannot fit a cookie)")
	}
}

func (s suite) testConcurrentLoad(t *testing.T) {
	m := s.manager(t, NewClock(t0), 0, Secret())
	cookies := live(saveCookies(t, m, sampleData("jo", 300)))
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Go(func() {
			for range 20 {
				d, err := loadWith(m, cookies)
				if err != nil || d.Identity.Subject != "jo" {
					errs <- fmt.Errorf("concurrent Load() = %v, %v, want jo's session", d, err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// testRepeatLoads loads the same cookies many times on one Manager, as the
// proxy does on every request of a signed-in browser.
func (s suite) testRepeatLoads(t *testing.T) {
	clock := NewClock(t0)
	m := s.manager(t, clock, time.Hour, Secret())
	for _, groups := range []int{1, 300} {
		t.Run(fmt.Sprintf("groups=%d", groups), func(t *testing.T) {
			want := sampleData("kim", groups)
			want.ExpiresAt = clock.Now().Add(10 * time.Minute)
			cookies := live(saveCookies(t, m, want))

			// Every Load is the caller's own copy: changing one changes
			// nothing for the next request.
			for range 2 { // the first Load decodes, the second is cached
				d, err := loadWith(m, cookies)
				if err != nil {
					t.Fatalf("Load() = %v, want the session", err)
				}
				checkSame(t, d, want)
				d.Identity.Subject = "mallory"
				d.Identity.Groups[0] = "admins"
				d.Identity.Groups = append(d.Identity.Groups, "root")
				d.AccessToken = "changed"
				d.ExpiresAt = d.ExpiresAt.Add(1000 * time.Hour)
			}
			for range 3 {
				again, err := loadWith(m, cookies)
				if err != nil {
					t.Fatalf("repeat Load() = %v, want the session", err)
				}
				checkSame(t, again, want)
			}

			// View gives the same session without a copy: the cache's
			// own Data, the same one on every request, untouched by
			// what callers of Load did to theirs.
			v1, err := m.View(requestWith(cookies))
			if err != nil {
				t.Fatalf("View() = %v, want the session", err)
			}
			checkSame(t, v1, want)
			if v2, err := m.View(requestWith(cookies)); err != nil || v2 != v1 {
				t.Errorf("repeat View() = %p, %v; want the shared %p", v2, err, v1)
			}
			if d, err := loadWith(m, cookies); err != nil || d == v1 {
				t.Errorf("Load() after View() = %p, %v; want a copy, not the shared %p", d, err, v1)
			}

			// A tampered copy of a cookie that loads fine never loads.
			for i, c := range cookies {
				if len(c.Value) < 8 {
					continue
				}
				bad := slices.Clone(cookies)
				v := []byte(c.Value)
				v[len(v)/2] ^= 1
				bad[i] = &http.Cookie{Name: c.Name, Value: string(v)}
				if _, err := loadWith(m, bad); !errors.Is(err, session.ErrNoSession) {
					t.Errorf("Load() with %s altered after a good Load = %v, want ErrNoSession", c.Name, err)
				}
				if _, err := loadWith(m, cookies); err != nil {
					t.Errorf("Load() of the genuine cookie after a tampered one = %v, want the session", err)
				}
			}
		})
	}

	t.Run("expiry", func(t *testing.T) {
		d := sampleData("lee", 1)
		d.ExpiresAt = clock.Now().Add(10 * time.Minute)
		cookies := live(saveCookies(t, m, d))
		// Loaded (and so cached) at 0, 1m and 9m59s; refused at 10m.
		for _, step := range []time.Duration{0, time.Minute, 8*time.Minute + 59*time.Second} {
			clock.Advance(step)
			if _, err := loadWith(m, cookies); err != nil {
				t.Fatalf("Load() before ExpiresAt = %v, want the session", err)
			}
		}
		clock.Advance(time.Second)
		if _, err := loadWith(m, cookies); !errors.Is(err, session.ErrNoSession) {
			t.Errorf("Load() at ExpiresAt after earlier Loads = %v, want ErrNoSession", err)
		}
		clock.Advance(time.Hour)
		if _, err := loadWith(m, cookies); !errors.Is(err, session.ErrNoSession) {
			t.Errorf("Load() long after ExpiresAt = %v, want ErrNoSession", err)
		}
	})

	if m.StoreType() == session.StoreRedis {
		t.Run("clear", func(t *testing.T) {
			h := newHarness(t, m)
			h.save(sampleData("max", 300))
			stolen := h.sessionCookies()
			for range 3 {
				if _, err := loadWith(m, stolen); err != nil {
					t.Fatalf("Load() before Clear = %v, want the session", err)
				}
			}
			h.do(http.MethodPost, "/clear")
			if _, err := loadWith(m, stolen); !errors.Is(err, session.ErrNoSession) {
				t.Errorf("Load() of a copy of the cookie right after Clear = %v, want ErrNoSession", err)
			}
		})
	}
}
