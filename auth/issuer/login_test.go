package issuer

import (
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/oauth2"
)

// startLogin GETs authorize for app and returns the login page.
func (e *env) startLogin(b *http.Client, opts ...oauth2.AuthCodeOption) (*http.Response, string) {
	e.t.Helper()
	oc := e.oauth2Config("app", appSecret, appRedirect, "openid")
	opts = append(opts, oauth2.S256ChallengeOption(oauth2.GenerateVerifier()))
	return get(e.t, b, oc.AuthCodeURL("st-1", opts...))
}

func TestLoginPage(t *testing.T) {
	e := newEnv(t, nil)
	b := e.browser()
	res, body := e.startLogin(b)
	for k, want := range map[string]string{"X-Frame-Options": "DENY", "Cache-Control": "no-store"} {
		if got := res.Header.Get(k); got != want {
			t.Errorf("login page %s = %q, want %q", k, got, want)
		}
	}
	if !strings.Contains(body, `<form method="post"`) || !strings.Contains(body, `name="username"`) || !strings.Contains(body, `<label for="password">`) {
		t.Errorf("login page lacks the form contract:\n%s", body)
	}

	t.Run("bad credentials", func(t *testing.T) {
		for _, user := range []string{"alice", "nobody"} {
			res, body := e.startLogin(b)
			res2, body2 := submitLogin(t, b, res, body, user, "wrong")
			if res2.Request.Method != http.MethodGet || res2.StatusCode != 200 {
				t.Fatalf("failed POST for %s not answered with 303 to the form: %d", user, res2.StatusCode)
			}
			if !strings.Contains(body2, "Incorrect username or password.") {
				t.Errorf("no clear message for %s:\n%s", user, body2)
			}
		}
	})
	t.Run("csrf", func(t *testing.T) {
		res, body := e.startLogin(b)
		form := hiddenFields(t, body)
		form.Set("username", "alice")
		form.Set("password", testPassword)
		form.Set("csrf", "forged")
		r2, err := b.PostForm(res.Request.URL.String(), form)
		if err != nil {
			t.Fatal(err)
		}
		readBody(t, r2)
		if r2.StatusCode != http.StatusForbidden {
			t.Errorf("forged csrf: status %d, want 403", r2.StatusCode)
		}
		// A browser without the cookie cannot replay another's token.
		form.Set("csrf", hiddenFields(t, body).Get("csrf"))
		r3, err := e.browser().PostForm(res.Request.URL.String(), form)
		if err != nil {
			t.Fatal(err)
		}
		readBody(t, r3)
		if r3.StatusCode != http.StatusForbidden {
			t.Errorf("csrf without cookie: status %d, want 403", r3.StatusCode)
		}
	})
	t.Run("cookie", func(t *testing.T) {
		res, body := e.startLogin(b)
		form := hiddenFields(t, body)
		form.Set("username", "alice")
		form.Set("password", testPassword)
		b2 := &http.Client{Jar: b.Jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		r2, err := b2.PostForm(res.Request.URL.String(), form)
		if err != nil {
			t.Fatal(err)
		}
		readBody(t, r2)
		if r2.StatusCode != http.StatusSeeOther {
			t.Errorf("successful POST status %d, want 303", r2.StatusCode)
		}
		var ck *http.Cookie
		for _, c := range r2.Cookies() {
			if c.Name == CookieName {
				ck = c
			}
		}
		if ck == nil || !ck.HttpOnly || ck.SameSite != http.SameSiteLaxMode || ck.Path != "/" || len(ck.Value) < 43 {
			t.Errorf("login cookie = %+v", ck)
		}
	})
}

// TestThrottle: 5 failures per username lock even the right password out,
// on the form and at the token endpoint (429 + Retry-After), with a delay
// that ends.
func TestThrottle(t *testing.T) {
	e := newEnv(t, func(c *Config) {
		c.Clients = append(c.Clients, ClientConfig{ID: "cli", Secret: appSecret, Grants: []string{GrantPassword}})
	})
	password := func(user, pass string) (*http.Response, map[string]any) {
		return e.postForm(pathToken, "cli", appSecret, url.Values{"grant_type": {"password"}, "username": {user}, "password": {pass}, "scope": {"openid"}})
	}
	if res, body := password("alice", testPassword); res.StatusCode != 200 || body["id_token"] == nil {
		t.Fatalf("password grant: %d %v", res.StatusCode, body)
	}
	for n := 0; n < userFailures; n++ {
		res, body := password("alice", "wrong")
		wantOAuthError(t, res, body, 400, errInvalidGrant)
	}
	res, body := password("alice", testPassword)
	wantOAuthError(t, res, body, http.StatusTooManyRequests, errInvalidGrant)
	ra, err := strconv.Atoi(res.Header.Get("Retry-After"))
	if err != nil || ra < 1 {
		t.Errorf("Retry-After = %q, want seconds", res.Header.Get("Retry-After"))
	}

	// The form refuses too, even with the right password.
	b := e.browser()
	lres, lbody := e.startLogin(b)
	_, after := submitLogin(t, b, lres, lbody, "alice", testPassword)
	if !strings.Contains(after, "Too many failed sign-in attempts") {
		t.Errorf("form did not refuse a throttled user:\n%s", after)
	}
	// Refused attempts do not extend the wait; after it, one more try.
	e.clock.Advance(time.Duration(ra) * time.Second)
	res, body = password("alice", "wrong")
	wantOAuthError(t, res, body, 400, errInvalidGrant)
	res, _ = password("alice", testPassword)
	ra2, _ := strconv.Atoi(res.Header.Get("Retry-After"))
	if res.StatusCode != http.StatusTooManyRequests || ra2 <= ra {
		t.Errorf("after a 6th failure: %d Retry-After %d, want 429 with a longer delay than %d", res.StatusCode, ra2, ra)
	}
	// The window's end lifts the lock for good.
	e.clock.Advance(failWindow)
	if res, body := password("alice", testPassword); res.StatusCode != 200 {
		t.Errorf("after the window: %d %v, want 200", res.StatusCode, body)
	}
	// Other users are not affected by alice's lock.
	if res, _ := password("bob", testPassword); res.StatusCode != 200 {
		t.Errorf("bob locked out by alice's failures: %d", res.StatusCode)
	}
}

func TestThrottleDelay(t *testing.T) {
	t0 := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name     string
		failures int
		last     time.Duration // after t0
		now      time.Duration
		want     time.Duration
	}{
		{"below limit", 4, 0, 0, 0},
		{"at limit", 5, 0, 0, 2 * time.Second},
		{"grows", 7, 0, 0, 8 * time.Second},
		{"capped by window", 30, 10 * time.Minute, 10 * time.Minute, 5 * time.Minute},
		{"elapsed", 5, 0, 3 * time.Second, -time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			th := throttleAt(tt.failures, t0, t0.Add(tt.last))
			if got := delayFor(th, userFailures, t0.Add(tt.now)); got != tt.want {
				t.Errorf("delayFor(%d failures) = %s, want %s", tt.failures, got, tt.want)
			}
		})
	}
}

func TestPromptAndMaxAge(t *testing.T) {
	e := newEnv(t, nil)
	b := e.browser()
	oc := e.oauth2Config("app", appSecret, appRedirect, "openid")
	e.authorizeCode(b, oc, oauth2.GenerateVerifier(), "alice")

	// Signed in: prompt=none answers at once.
	res, _ := e.startLogin(b, oauth2.SetAuthURLParam("prompt", "none"))
	if v := redirectParams(t, res, appRedirect); v.Get("code") == "" {
		t.Errorf("prompt=none with a session = %v, want a code", v)
	}
	// prompt=login forces the form, and auth_time moves.
	e.clock.Advance(time.Hour)
	res, body := e.startLogin(b, oauth2.SetAuthURLParam("prompt", "login"))
	if !strings.Contains(body, `name="password"`) {
		t.Fatalf("prompt=login did not show the form: %d", res.StatusCode)
	}
	res, _ = submitLogin(t, b, res, body, "alice", testPassword)
	redirectParams(t, res, appRedirect)

	// max_age older than the sign-in: the form again; with prompt=none,
	// login_required.
	e.clock.Advance(10 * time.Minute)
	_, body = e.startLogin(b, oauth2.SetAuthURLParam("max_age", "60"))
	if !strings.Contains(body, `name="password"`) {
		t.Error("max_age exceeded did not show the form")
	}
	res, _ = e.startLogin(b, oauth2.SetAuthURLParam("max_age", "60"), oauth2.SetAuthURLParam("prompt", "none"))
	if v := redirectParams(t, res, appRedirect); v.Get("error") != errLoginRequired {
		t.Errorf("prompt=none with max_age exceeded = %v, want login_required", v)
	}
	// A code issued within max_age carries auth_time in the ID token.
	verifier := oauth2.GenerateVerifier()
	code := e.authorizeCode(b, oc, verifier, "alice", oauth2.SetAuthURLParam("max_age", "3600"))
	_, tok := e.postForm(pathToken, "app", appSecret, codeForm(code, verifier))
	claims := decodeClaims(t, tok["id_token"].(string))
	if want := e.clock.Now().Add(-10 * time.Minute).Unix(); claims["auth_time"] != float64(want) {
		t.Errorf("auth_time = %v, want %d", claims["auth_time"], want)
	}
}

func TestConsent(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.Clients[0].Consent = true })
	for _, decision := range []string{"allow", "deny"} {
		t.Run(decision, func(t *testing.T) {
			b := e.browser()
			res, body := e.startLogin(b)
			res, body = submitLogin(t, b, res, body, "alice", testPassword)
			if !strings.Contains(body, "Allow access?") || res.Header.Get("X-Frame-Options") != "DENY" {
				t.Fatalf("no consent page after sign-in: %d\n%s", res.StatusCode, body)
			}
			form := hiddenFields(t, body)
			form.Set("decision", decision)
			res2, err := b.PostForm(res.Request.URL.String(), form)
			if err != nil {
				t.Fatal(err)
			}
			readBody(t, res2)
			v := redirectParams(t, res2, appRedirect)
			switch decision {
			case "allow":
				if v.Get("code") == "" {
					t.Errorf("allow = %v, want a code", v)
				}
			case "deny":
				if v.Get("error") != errAccessDenied || v.Get("state") != "st-1" {
					t.Errorf("deny = %v, want access_denied with state", v)
				}
			}
			// Consent is asked again, so prompt=none cannot skip it.
			res, _ = e.startLogin(b, oauth2.SetAuthURLParam("prompt", "none"))
			if v := redirectParams(t, res, appRedirect); v.Get("error") != errConsentRequired {
				t.Errorf("prompt=none with consent = %v, want consent_required", v)
			}
		})
	}
}

func TestImplicit(t *testing.T) {
	e := newEnv(t, func(c *Config) {
		c.Clients[2].Grants = []string{GrantImplicit}
	})
	b := e.browser()
	base := url.Values{"client_id": {"native"}, "redirect_uri": {nativeRedirect}, "scope": {"openid profile"}, "state": {"s"}}
	t.Run("id_token token", func(t *testing.T) {
		q := url.Values{"response_type": {"id_token token"}, "nonce": {"n-9"}}
		for k, v := range base {
			q[k] = v
		}
		res, body := get(t, b, e.srv.URL+pathAuthorize+"?"+q.Encode())
		res, _ = submitLogin(t, b, res, body, "bob", testPassword)
		if !strings.Contains(res.Header.Get("Location"), "#") {
			t.Fatalf("implicit response not in the fragment: %q", res.Header.Get("Location"))
		}
		v := redirectParams(t, res, nativeRedirect)
		claims := decodeClaims(t, v.Get("id_token"))
		if claims["nonce"] != "n-9" || claims["at_hash"] != leftHash(v.Get("access_token")) || v.Get("state") != "s" || v.Get("token_type") != "Bearer" {
			t.Errorf("implicit response %v, claims %v", v, claims)
		}
	})
	t.Run("nonce required", func(t *testing.T) {
		q := url.Values{"response_type": {"id_token"}}
		for k, v := range base {
			q[k] = v
		}
		res, _ := get(t, b, e.srv.URL+pathAuthorize+"?"+q.Encode())
		if v := redirectParams(t, res, nativeRedirect+"#"); v.Get("error") != errInvalidRequest {
			t.Errorf("implicit without nonce = %v, want invalid_request in the fragment", v)
		}
	})
	t.Run("code not allowed", func(t *testing.T) {
		res, _ := get(t, b, e.oauth2Config("native", "", nativeRedirect, "openid").AuthCodeURL("s", oauth2.S256ChallengeOption(oauth2.GenerateVerifier())))
		if v := redirectParams(t, res, nativeRedirect); v.Get("error") != errUnauthorizedClient {
			t.Errorf("code for an implicit-only client = %v, want unauthorized_client", v)
		}
	})
}

func TestEndSession(t *testing.T) {
	e := newEnv(t, nil)
	b := e.browser()
	code, verifier := "", oauth2.GenerateVerifier()
	code = e.authorizeCode(b, e.oauth2Config("app", appSecret, appRedirect, "openid"), verifier, "alice")
	_, tok := e.postForm(pathToken, "app", appSecret, codeForm(code, verifier))
	idt := tok["id_token"].(string)
	e.clock.Advance(2 * defaultIDTTL) // an expired hint is still a hint

	noFollow := &http.Client{Jar: b.Jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	tests := []struct {
		name   string
		q      url.Values
		wantTo string
	}{
		{"unregistered target", url.Values{"id_token_hint": {idt}, "post_logout_redirect_uri": {"https://evil.example.com/"}}, ""},
		{"no hint", url.Values{"post_logout_redirect_uri": {"https://app.example.com/bye"}}, ""},
		{"wrong client_id", url.Values{"client_id": {"other"}, "id_token_hint": {idt}, "post_logout_redirect_uri": {"https://app.example.com/bye"}}, ""},
		{"bad hint", url.Values{"id_token_hint": {idt + "x"}, "post_logout_redirect_uri": {"https://app.example.com/bye"}}, ""},
		{"registered", url.Values{"id_token_hint": {idt}, "post_logout_redirect_uri": {"https://app.example.com/bye"}, "state": {"z"}}, "https://app.example.com/bye?state=z"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, body := get(t, noFollow, e.srv.URL+pathEndSession+"?"+tt.q.Encode())
			if tt.wantTo == "" {
				if res.StatusCode != 200 || !strings.Contains(body, "signed out") {
					t.Errorf("got %d Location=%q, want the signed-out page", res.StatusCode, res.Header.Get("Location"))
				}
				return
			}
			if loc := res.Header.Get("Location"); res.StatusCode != http.StatusFound || loc != tt.wantTo {
				t.Errorf("got %d Location=%q, want 302 to %s", res.StatusCode, loc, tt.wantTo)
			}
		})
	}
	// The login session is gone: prompt=none now needs a login.
	res, _ := e.startLogin(b, oauth2.SetAuthURLParam("prompt", "none"))
	if v := redirectParams(t, res, appRedirect); v.Get("error") != errLoginRequired {
		t.Errorf("after end_session prompt=none = %v, want login_required", v)
	}
}

// TestEndLoginSession is the proxy's sign-out hook.
func TestEndLoginSession(t *testing.T) {
	e := newEnv(t, nil)
	b := e.browser()
	e.authorizeCode(b, e.oauth2Config("app", appSecret, appRedirect, "openid"), oauth2.GenerateVerifier(), "alice")
	u, _ := url.Parse(e.srv.URL)
	req, _ := http.NewRequest(http.MethodGet, e.srv.URL+"/oauth2/sign_out", nil)
	for _, c := range b.Jar.Cookies(u) {
		req.AddCookie(c)
	}
	rec := newRecorder()
	e.iss.EndLoginSession(rec, req)
	if sc := rec.Header().Get("Set-Cookie"); !strings.Contains(sc, CookieName+"=;") || !strings.Contains(sc, "Max-Age=0") {
		t.Errorf("Set-Cookie = %q, want the login cookie expired", sc)
	}
	res, _ := e.startLogin(b, oauth2.SetAuthURLParam("prompt", "none"))
	if v := redirectParams(t, res, appRedirect); v.Get("error") != errLoginRequired {
		t.Errorf("after EndLoginSession prompt=none = %v, want login_required", v)
	}
}

// TestThrottleIP: 20 failures from one address refuse every username.
func TestThrottleIP(t *testing.T) {
	e := newEnv(t, func(c *Config) {
		c.Clients = append(c.Clients, ClientConfig{ID: "cli", Secret: appSecret, Grants: []string{GrantPassword}})
	})
	password := func(user, pass string) (*http.Response, map[string]any) {
		return e.postForm(pathToken, "cli", appSecret, url.Values{"grant_type": {"password"}, "username": {user}, "password": {pass}})
	}
	for n := range ipFailures {
		res, body := password("user"+strconv.Itoa(n), "wrong")
		wantOAuthError(t, res, body, 400, errInvalidGrant)
	}
	res, body := password("bob", testPassword)
	wantOAuthError(t, res, body, http.StatusTooManyRequests, errInvalidGrant)
	ra, err := strconv.Atoi(res.Header.Get("Retry-After"))
	if err != nil || ra < 1 {
		t.Fatalf("Retry-After = %q, want seconds", res.Header.Get("Retry-After"))
	}
	// After the wait the address is slowed, not blocked for the window:
	// one attempt goes through (and the right password works).
	e.clock.Advance(time.Duration(ra) * time.Second)
	if res, body := password("bob", testPassword); res.StatusCode != 200 {
		t.Fatalf("after Retry-After (%ds): %d %v, want 200", ra, res.StatusCode, body)
	}
}

// Attempts sent all at once cannot slip past the limit while the first ones
// are still in bcrypt: each is counted before its password is checked, so
// at most userFailures reach the check (the rest get 429 at once).
func TestThrottleConcurrentBurst(t *testing.T) {
	e := newEnv(t, func(c *Config) {
		c.Clients = append(c.Clients, ClientConfig{ID: "cli", Secret: appSecret, Grants: []string{GrantPassword}})
	})
	const burst = 30
	codes := make(chan int, burst)
	var wg sync.WaitGroup
	for n := range burst {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// All wrong: a right one would rightly clear the count.
			pass := fmt.Sprintf("wrong-%d", n)
			res, _ := e.postForm(pathToken, "cli", appSecret, url.Values{"grant_type": {"password"}, "username": {"alice"}, "password": {pass}})
			codes <- res.StatusCode
		}()
	}
	wg.Wait()
	close(codes)
	checked := 0
	dist := map[int]int{}
	defer func() { t.Logf("status codes: %v", dist) }()
	for c := range codes {
		dist[c]++
		if c != http.StatusTooManyRequests {
			checked++
		}
	}
	if checked > userFailures {
		t.Fatalf("%d of %d simultaneous attempts had their password checked, want at most %d", checked, burst, userFailures)
	}
}

func TestIPKey(t *testing.T) {
	for in, want := range map[string]string{
		"192.0.2.7":            "ip:192.0.2.7",
		"2001:db8:1:2:3:4:5:6": "ip:2001:db8:1:2::/64",
		"2001:db8:1:2:ffff::1": "ip:2001:db8:1:2::/64",
		"::ffff:192.0.2.7":     "ip:::ffff:192.0.2.7",
		"not-an-address":       "ip:not-an-address",
	} {
		if got := ipKey(in); got != want {
			t.Errorf("ipKey(%q) = %q, want %q", in, got, want)
		}
	}
}

// A simultaneous burst for many usernames from one address cannot pass the
// per-IP limit either: checks under way count against it.
func TestThrottleIPConcurrentBurst(t *testing.T) {
	e := newEnv(t, func(c *Config) {
		c.Clients = append(c.Clients, ClientConfig{ID: "cli", Secret: appSecret, Grants: []string{GrantPassword}})
	})
	const burst = 60
	codes := make(chan int, burst)
	var wg sync.WaitGroup
	for n := range burst {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, _ := e.postForm(pathToken, "cli", appSecret, url.Values{"grant_type": {"password"},
				"username": {fmt.Sprintf("user-%d", n)}, "password": {"wrong"}})
			codes <- res.StatusCode
		}()
	}
	wg.Wait()
	close(codes)
	checked := 0
	for c := range codes {
		if c != http.StatusTooManyRequests {
			checked++
		}
	}
	if checked > ipFailures {
		t.Fatalf("%d of %d simultaneous attempts from one IP had their password checked, want at most %d", checked, burst, ipFailures)
	}
}
