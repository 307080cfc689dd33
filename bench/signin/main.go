// Command signin gets the credentials the load benchmark sends: a signed-in
// Portcullis session, obtained the way a browser gets one (protected URL,
// redirects, the built-in issuer's login form, redirects back), or a
// client_credentials access token from the built-in issuer's token endpoint.
// It prints one header value on stdout and checks it works before printing.
//
//	BENCH_PASSWORD=… signin cookie -base http://127.0.0.1:4180 -user bench
//	  prints the Cookie header value ("_portcullis=…" plus any chunks)
//	BENCH_CLIENT_SECRET=… signin token -base http://127.0.0.1:4180 -client bench-client
//	  prints the access token
//
// Secrets come from the environment so they never show in ps.
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"regexp"
	"strings"
	"time"

	"golang.org/x/net/html"
)

func main() {
	if len(os.Args) < 2 || (os.Args[1] != "cookie" && os.Args[1] != "token") {
		fmt.Fprintln(os.Stderr, "usage: signin cookie|token -base URL [flags]  (see the package doc)")
		os.Exit(2)
	}
	mode := os.Args[1]
	fs := flag.NewFlagSet(mode, flag.ExitOnError)
	base := fs.String("base", "http://127.0.0.1:4180", "Portcullis public URL")
	path := fs.String("path", "/", "protected path to start from and to check the result against")
	user := fs.String("user", "bench", "username (cookie); password from $BENCH_PASSWORD")
	cookieName := fs.String("cookie-name", "_portcullis", "session cookie name (chunks are NAME_1, NAME_2…)")
	client := fs.String("client", "bench-client", "client id (token); secret from $BENCH_CLIENT_SECRET")
	fs.Parse(os.Args[2:])

	var (
		out string
		err error
	)
	switch mode {
	case "cookie":
		out, err = signIn(*base, *path, *user, os.Getenv("BENCH_PASSWORD"), *cookieName)
	case "token":
		out, err = token(*base, *path, *client, os.Getenv("BENCH_CLIENT_SECRET"))
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "signin %s: %v\n", mode, err)
		os.Exit(1)
	}
	fmt.Println(out)
}

// signIn walks the real browser flow with a cookie jar and returns the
// session cookies as one Cookie header value.
func signIn(base, path, user, password, cookieName string) (string, error) {
	if password == "" {
		return "", errors.New("$BENCH_PASSWORD is empty")
	}
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, Timeout: 30 * time.Second}

	resp, body, err := do(c, "GET", base+path, nil, map[string]string{"Accept": "text/html"})
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET %s as a browser ended at %s with %d, want 200 and the login form", path, resp.Request.URL.Path, resp.StatusCode)
	}
	action, fields, err := loginForm(resp.Request.URL, body)
	if err != nil {
		return "", err
	}
	fields.Set("username", user)
	fields.Set("password", password)
	resp, body, err = do(c, "POST", action, strings.NewReader(fields.Encode()), map[string]string{
		"Accept": "text/html", "Content-Type": "application/x-www-form-urlencoded",
	})
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK || resp.Request.URL.Path != path {
		// The body is the login page again or an error page: not worth printing.
		return "", fmt.Errorf("login form POST ended at %s with %d, want %s with 200 (wrong password, or sign-in throttled?)",
			resp.Request.URL.Path, resp.StatusCode, path)
	}

	u, _ := url.Parse(base)
	chunk := regexp.MustCompile("^" + regexp.QuoteMeta(cookieName) + `(_[0-9]+)?$`)
	var parts []string
	for _, ck := range jar.Cookies(u) {
		if chunk.MatchString(ck.Name) {
			parts = append(parts, ck.Name+"="+ck.Value)
		}
	}
	if len(parts) == 0 {
		return "", fmt.Errorf("signed in, but the jar holds no %s cookie for %s", cookieName, base)
	}
	header := strings.Join(parts, "; ")
	// The header alone, without the jar, must be a session.
	if err := check(base+path, "Cookie", header); err != nil {
		return "", fmt.Errorf("session cookie does not work on its own: %w", err)
	}
	return header, nil
}

// token runs the client_credentials grant and returns the access token.
func token(base, path, client, secret string) (string, error) {
	if secret == "" {
		return "", errors.New("$BENCH_CLIENT_SECRET is empty")
	}
	c := &http.Client{Timeout: 30 * time.Second}
	req, _ := http.NewRequest("POST", base+"/oauth2/issuer/token", strings.NewReader("grant_type=client_credentials"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(url.QueryEscape(client), url.QueryEscape(secret))
	resp, err := c.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var tr struct {
		AccessToken string `json:"access_token"`
		Error       string `json:"error"`
		Description string `json:"error_description"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&tr); err != nil {
		return "", fmt.Errorf("token endpoint answered %d and no JSON: %w", resp.StatusCode, err)
	}
	if resp.StatusCode != http.StatusOK || tr.AccessToken == "" {
		return "", fmt.Errorf("token endpoint answered %d: %s %s", resp.StatusCode, tr.Error, tr.Description)
	}
	if err := check(base+path, "Authorization", "Bearer "+tr.AccessToken); err != nil {
		return "", fmt.Errorf("access token is not accepted: %w", err)
	}
	return tr.AccessToken, nil
}

// check sends one API request with the given header and wants 200.
func check(u, name, value string) error {
	c := &http.Client{Timeout: 30 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, _, err := do(c, "GET", u, nil, map[string]string{name: value, "Accept": "application/json"})
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s with %s answered %d, want 200", u, name, resp.StatusCode)
	}
	return nil
}

func do(c *http.Client, method, u string, body io.Reader, h map[string]string) (*http.Response, string, error) {
	req, err := http.NewRequest(method, u, body)
	if err != nil {
		return nil, "", err
	}
	for k, v := range h {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp, string(b), err
}

// loginForm finds the page's POST form and returns its absolute action and
// the values of its inputs (the hidden fields the issuer needs back).
func loginForm(page *url.URL, body string) (string, url.Values, error) {
	doc, err := html.Parse(strings.NewReader(body))
	if err != nil {
		return "", nil, fmt.Errorf("login page: %w", err)
	}
	var (
		action string
		found  bool
	)
	vals := url.Values{}
	var walk func(n *html.Node, in bool)
	walk = func(n *html.Node, in bool) {
		if n.Type == html.ElementNode && n.Data == "form" && strings.EqualFold(attr(n, "method"), "post") && !found {
			found, in, action = true, true, attr(n, "action")
		}
		if in && n.Type == html.ElementNode && n.Data == "input" && attr(n, "name") != "" {
			vals.Set(attr(n, "name"), attr(n, "value"))
		}
		for ch := n.FirstChild; ch != nil; ch = ch.NextSibling {
			walk(ch, in)
		}
	}
	walk(doc, false)
	if !found {
		return "", nil, fmt.Errorf("no POST form on %s (is login.issuer builtin?)", page.Path)
	}
	u, err := page.Parse(action)
	if err != nil {
		return "", nil, fmt.Errorf("form action %q: %w", action, err)
	}
	return u.String(), vals, nil
}

func attr(n *html.Node, name string) string {
	for _, a := range n.Attr {
		if a.Key == name {
			return a.Val
		}
	}
	return ""
}
