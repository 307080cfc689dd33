package session

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gorilla/sessions"
)

// Chunk layout. A sealed session that fits in one cookie is the whole
// value of the base cookie (_portcullis=<sealed>). A longer one is cut into
// pieces of chunkLen bytes stored in _portcullis_1 … _portcullis_N, and the
// base cookie then holds only the decimal count N (2 ≤ N ≤ maxChunks). A
// sealed value is always far longer than two digits, so the two forms
// cannot be confused, and a stale chunk beyond N is simply ignored. The
// whole sealed value is authenticated, so a missing, reordered or foreign
// chunk fails the MAC.

// cookieStore keeps the whole session in the browser's cookies.
type cookieStore struct {
	keys *keyring
	opts sessions.Options
}

func newCookieStore(keys *keyring, opts sessions.Options) *cookieStore {
	return &cookieStore{keys: keys, opts: opts}
}

func (c *cookieStore) options() sessions.Options { return c.opts }

// Get returns the request's session; it does not cache per request (the
// Manager loads once per request anyway).
func (c *cookieStore) Get(r *http.Request, name string) (*sessions.Session, error) {
	return c.New(r, name)
}

// New decodes the session in r's cookies. Without a session cookie it
// returns a new, empty session and no error; an unusable one gives a new
// session and the reason.
func (c *cookieStore) New(r *http.Request, name string) (*sessions.Session, error) {
	s := sessions.NewSession(c, name)
	*s.Options = c.opts
	s.IsNew = true
	var v sealedValue
	err := c.sealed(r, name, &v)
	if errors.Is(err, errNoCookie) {
		return s, nil
	}
	if err != nil {
		return s, err
	}
	b, err := c.keys.open(name, v.join())
	if err != nil {
		return s, err
	}
	s.Values[dataKey{}] = b
	s.IsNew = false
	return s, nil
}

// sealed fills v with the sealed session value in r's cookies (chunks not
// yet joined) and the name it was sealed for; errNoCookie when there is no
// session cookie.
func (c *cookieStore) sealed(r *http.Request, name string, v *sealedValue) error {
	var jar requestCookies
	jar.scan(r, name)
	if !jar.hasBase {
		return errNoCookie
	}
	v.name = name
	return jar.parts(v)
}

// Save writes s.Values[dataKey{}] (serialised Data) as the base cookie and
// as many chunks as it needs, and expires chunks of a previous larger
// session still present on r. MaxAge < 0 expires every session cookie.
func (c *cookieStore) Save(r *http.Request, w http.ResponseWriter, s *sessions.Session) error {
	name := s.Name()
	if s.Options.MaxAge < 0 {
		setCookie(w, name, "", s.Options)
		expireChunks(w, r, name, 0, s.Options)
		return nil
	}
	b, ok := s.Values[dataKey{}].([]byte)
	if !ok {
		return errors.New("session: save: no session data")
	}
	sealed, err := c.keys.seal(name, b)
	if err != nil {
		return err
	}
	n := (len(sealed) + chunkLen - 1) / chunkLen
	if n > maxChunks {
		return fmt.Errorf("session: save: sealed session is %d bytes, more than %d cookies hold", len(sealed), maxChunks)
	}
	if n <= 1 {
		setCookie(w, name, sealed, s.Options)
		expireChunks(w, r, name, 0, s.Options)
		return nil
	}
	for i := 1; i <= n; i++ {
		end := min(i*chunkLen, len(sealed))
		setCookie(w, chunkName(name, i), sealed[(i-1)*chunkLen:end], s.Options)
	}
	setCookie(w, name, strconv.Itoa(n), s.Options)
	expireChunks(w, r, name, n, s.Options)
	return nil
}

func chunkName(base string, i int) string { return base + "_" + strconv.Itoa(i) }

// setCookie writes one cookie; an empty value or negative MaxAge deletes it.
// Expiry is given as Max-Age only: Expires would need the wall clock, and a
// test's injected clock must not make a cookie jar drop the cookie.
func setCookie(w http.ResponseWriter, name, value string, o *sessions.Options) {
	c := &http.Cookie{
		Name:     name,
		Value:    value,
		Path:     o.Path,
		Domain:   o.Domain,
		MaxAge:   o.MaxAge,
		Secure:   o.Secure,
		HttpOnly: o.HttpOnly,
		SameSite: o.SameSite,
	}
	if value == "" || o.MaxAge < 0 {
		c.Value = ""
		c.MaxAge = -1
		c.Expires = time.Unix(1, 0)
	}
	http.SetCookie(w, c)
}

// expireChunks deletes every chunk cookie (base_<digits>) on r whose
// number is above keep.
func expireChunks(w http.ResponseWriter, r *http.Request, base string, keep int, o *sessions.Options) {
	for _, h := range r.Header["Cookie"] {
		for part := range strings.SplitSeq(h, ";") {
			n, ok := chunkIndex(cookiePartName(part), base)
			if ok && n > keep {
				setCookie(w, cookiePartName(part), "", o)
			}
		}
	}
}

// chunkIndex parses base_<digits>; ok is false for any other name.
func chunkIndex(name, base string) (int, bool) {
	rest, ok := strings.CutPrefix(name, base)
	if !ok || len(rest) < 2 || rest[0] != '_' || len(rest) > 8 {
		return 0, false
	}
	n := 0
	for i := 1; i < len(rest); i++ {
		c := rest[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, true
}

// requestCookies holds the session cookies of one request as substrings
// of its Cookie headers: scanning allocates nothing. When a name repeats
// (cookies set for several paths or domains), the first one wins, as with
// http.Request.Cookie.
type requestCookies struct {
	hasBase bool
	base    string
	chunks  [maxChunks + 1]string // index 1..maxChunks
}

func (rc *requestCookies) scan(r *http.Request, base string) {
	for _, h := range r.Header["Cookie"] {
		// One pass: each part's name is looked at, and the end of its value
		// found with IndexByte, so a long session value is scanned once.
		for h != "" {
			part := h
			if i := strings.IndexByte(h, ';'); i >= 0 {
				part, h = h[:i], h[i+1:]
			} else {
				h = ""
			}
			name, value, _ := strings.Cut(part, "=")
			name = trimSpaceTab(name)
			if !strings.HasPrefix(name, base) {
				continue
			}
			value = trimSpaceTab(value)
			if len(value) >= 2 && value[0] == '"' && value[len(value)-1] == '"' {
				value = value[1 : len(value)-1]
			}
			if name == base {
				if !rc.hasBase {
					rc.hasBase, rc.base = true, value
				}
				continue
			}
			if n, ok := chunkIndex(name, base); ok && n >= 1 && n <= maxChunks && rc.chunks[n] == "" {
				rc.chunks[n] = value
			}
		}
	}
}

// trimSpaceTab is strings.Trim(s, " \t") without building a cutset.
func trimSpaceTab(s string) string {
	for s != "" && (s[0] == ' ' || s[0] == '\t') {
		s = s[1:]
	}
	for s != "" && (s[len(s)-1] == ' ' || s[len(s)-1] == '\t') {
		s = s[:len(s)-1]
	}
	return s
}

// parts puts the sealed value's parts in v: the base cookie, or the
// chunks it counts, checked for presence and total size.
func (rc *requestCookies) parts(v *sealedValue) error {
	if len(rc.base) > 2 {
		v.n, v.parts[0] = 1, rc.base
		return nil
	}
	n, err := strconv.Atoi(rc.base)
	if err != nil || n < 2 || n > maxChunks {
		return errors.New("malformed session cookie")
	}
	total := 0
	for i := 1; i <= n; i++ {
		if rc.chunks[i] == "" {
			return fmt.Errorf("session chunk %d of %d missing", i, n)
		}
		total += len(rc.chunks[i])
	}
	if total > maxSealedLen {
		return errors.New("session chunks too long")
	}
	v.n = n
	copy(v.parts[:n], rc.chunks[1:n+1])
	return nil
}

var _ sessions.Store = (*cookieStore)(nil)
