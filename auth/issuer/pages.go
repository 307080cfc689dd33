package issuer

import (
	"html"
	"net/http"
	"strconv"
	"strings"

	"github.com/portcullis-proxy/portcullis/auth"
)

// The issuer's pages are built by plain Go code rather than html/template:
// executing a template keeps every exported method of the binary alive for
// reflection, which nearly doubles its size. Every interpolated value goes
// through html.EscapeString (text and double-quoted attributes), and every
// URL through auth.HrefValue.

// render writes an HTML page with the headers every issuer page needs:
// never cached, never framed (clickjacking), no outside resources.
func (i *Issuer) render(w http.ResponseWriter, status int, page string) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Length", strconv.Itoa(len(page)))
	h.Set("Cache-Control", "no-store")
	h.Set("Pragma", "no-cache")
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(page))
}

// loginPage is the sign-in form.
type loginPage struct {
	Action, Req, CSRF string
	// Client names the application, when known; Username pre-fills the
	// field; Error is shown above the form.
	Client, Username, Error string
}

func (p loginPage) html() string {
	var b strings.Builder
	pageHead(&b, "Sign in")
	b.WriteString("<h1>Sign in</h1>\n")
	if p.Client != "" {
		b.WriteString(`<p class="muted">to continue to <strong>`)
		b.WriteString(html.EscapeString(p.Client))
		b.WriteString("</strong></p>\n")
	}
	if p.Error != "" {
		b.WriteString(`<p class="alert" role="alert" id="login-error">`)
		b.WriteString(html.EscapeString(p.Error))
		b.WriteString("</p>\n")
	}
	b.WriteString(`<form method="post" action="`)
	b.WriteString(auth.HrefValue(p.Action))
	b.WriteString(`"`)
	if p.Error != "" {
		b.WriteString(` aria-describedby="login-error"`)
	}
	b.WriteString(">\n")
	writeHiddenFields(&b, p.Req, p.CSRF)
	b.WriteString("<label for=\"username\">Username</label>\n" +
		`<input type="text" id="username" name="username" value="`)
	b.WriteString(html.EscapeString(p.Username))
	b.WriteString(`" autocomplete="username" autocapitalize="none" spellcheck="false" required autofocus>` + "\n" +
		"<label for=\"password\">Password</label>\n" +
		`<input type="password" id="password" name="password" autocomplete="current-password" required>` + "\n" +
		"<button type=\"submit\">Sign in</button>\n" +
		"</form>\n")
	pageFoot(&b)
	return b.String()
}

// consentPage asks the user to let Client sign them in as User.
type consentPage struct {
	Action, Req, CSRF string
	Client, User      string
	// Scopes are the descriptions of what the client will see.
	Scopes []string
}

func (p consentPage) html() string {
	var b strings.Builder
	pageHead(&b, "Allow access?")
	b.WriteString("<h1>Allow access?</h1>\n<p><strong>")
	b.WriteString(html.EscapeString(p.Client))
	b.WriteString("</strong> wants to sign you in as <strong>")
	b.WriteString(html.EscapeString(p.User))
	b.WriteString("</strong>")
	if len(p.Scopes) > 0 {
		b.WriteString(" and see:</p>\n<ul>")
		for _, s := range p.Scopes {
			b.WriteString("<li>")
			b.WriteString(html.EscapeString(s))
			b.WriteString("</li>")
		}
		b.WriteString("</ul>\n")
	} else {
		b.WriteString(".</p>\n")
	}
	b.WriteString(`<form method="post" action="`)
	b.WriteString(auth.HrefValue(p.Action))
	b.WriteString("\">\n")
	writeHiddenFields(&b, p.Req, p.CSRF)
	b.WriteString(`<button type="submit" name="decision" value="allow">Allow</button>` + "\n" +
		`<button type="submit" name="decision" value="deny" class="secondary">Deny</button>` + "\n" +
		"</form>\n")
	pageFoot(&b)
	return b.String()
}

// errorHTML is the page shown when the client cannot be trusted with a
// redirect.
func errorHTML(title, msg string) string {
	var b strings.Builder
	pageHead(&b, title)
	b.WriteString("<h1>")
	b.WriteString(html.EscapeString(title))
	b.WriteString("</h1>\n<p class=\"alert\" role=\"alert\">")
	b.WriteString(html.EscapeString(msg))
	b.WriteString("</p>\n<p class=\"muted\">Go back to the application and try again.</p>\n")
	pageFoot(&b)
	return b.String()
}

// signedOutHTML is the page after end_session without a redirect.
func signedOutHTML() string {
	var b strings.Builder
	pageHead(&b, "Signed out")
	b.WriteString("<h1>Signed out</h1>\n<p role=\"status\">You have been signed out. You can close this window.</p>\n")
	pageFoot(&b)
	return b.String()
}

func writeHiddenFields(b *strings.Builder, req, csrf string) {
	b.WriteString(`<input type="hidden" name="req" value="`)
	b.WriteString(html.EscapeString(req))
	b.WriteString("\">\n" + `<input type="hidden" name="csrf" value="`)
	b.WriteString(html.EscapeString(csrf))
	b.WriteString("\">\n")
}

func pageHead(b *strings.Builder, title string) {
	b.Grow(len(pageHeadStart) + len(pageHeadEnd) + len(pageFootHTML) + 1024)
	b.WriteString(pageHeadStart)
	b.WriteString(html.EscapeString(title))
	b.WriteString(pageHeadEnd)
}

func pageFoot(b *strings.Builder) { b.WriteString(pageFootHTML) }

const pageHeadStart = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>`

const pageHeadEnd = `</title>
<style>
:root { color-scheme: light dark; --accent: #1f5fbf; --danger: #a61b1b; }
* { box-sizing: border-box; }
body { margin: 0; min-height: 100vh; display: flex; align-items: center; justify-content: center;
  font: 16px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; background: Canvas; color: CanvasText; }
main { width: 100%; max-width: 24rem; padding: 2rem; border: 1px solid color-mix(in srgb, CanvasText 20%, transparent);
  border-radius: .75rem; }
h1 { font-size: 1.4rem; margin: 0 0 1rem; }
label { display: block; font-weight: 600; margin: 1rem 0 .25rem; }
input[type=text], input[type=password] { width: 100%; padding: .6rem .7rem; font: inherit; border-radius: .4rem;
  border: 1px solid color-mix(in srgb, CanvasText 40%, transparent); background: Field; color: FieldText; }
input:focus-visible, button:focus-visible, a:focus-visible { outline: 3px solid var(--accent); outline-offset: 2px; }
button { margin-top: 1.25rem; width: 100%; padding: .65rem; font: inherit; font-weight: 600; border: 0; border-radius: .4rem;
  background: var(--accent); color: #fff; cursor: pointer; }
button.secondary { background: transparent; color: CanvasText; border: 1px solid color-mix(in srgb, CanvasText 40%, transparent); }
.alert { padding: .6rem .8rem; border-radius: .4rem; border-left: 4px solid var(--danger);
  background: color-mix(in srgb, var(--danger) 12%, Canvas); }
.muted { opacity: .8; font-size: .9rem; }
ul { padding-left: 1.2rem; }
</style>
</head>
<body>
<main>
`

const pageFootHTML = `</main>
</body>
</html>
`
