package upstream

import (
	"net/http"
	"strings"

	"github.com/portcullis-proxy/portcullis/auth"
)

// Canonical names of the identity headers Portcullis sets. Upstreams may trust
// them only because StripIdentityHeaders removes every client-sent spelling
// of them first.
const (
	HeaderUser              = "X-Forwarded-User"
	HeaderEmail             = "X-Forwarded-Email"
	HeaderGroups            = "X-Forwarded-Groups"
	HeaderPreferredUsername = "X-Forwarded-Preferred-Username"
	HeaderAccessToken       = "X-Forwarded-Access-Token"
	HeaderAssertion         = "X-Portcullis-Assertion"

	HeaderAuthRequestUser              = "X-Auth-Request-User"
	HeaderAuthRequestEmail             = "X-Auth-Request-Email"
	HeaderAuthRequestGroups            = "X-Auth-Request-Groups"
	HeaderAuthRequestPreferredUsername = "X-Auth-Request-Preferred-Username"
	HeaderAuthRequestAccessToken       = "X-Auth-Request-Access-Token"
)

// Forward is a set of identity fields to send upstream, parsed from the
// `forward:` list by ParseForward. The zero value forwards nothing.
type Forward uint8

// The fields of a Forward set, named in config as in forwardNames.
const (
	ForwardUser              Forward = 1 << iota // user → X-Forwarded-User
	ForwardEmail                                 // email → X-Forwarded-Email
	ForwardGroups                                // groups → X-Forwarded-Groups (comma-separated)
	ForwardPreferredUsername                     // preferred_username → X-Forwarded-Preferred-Username
	ForwardAccessToken                           // access_token → X-Forwarded-Access-Token
	ForwardIDToken                               // id_token → Authorization: Bearer <id_token>
	ForwardAssertion                             // assertion → X-Portcullis-Assertion
)

// DefaultForward is what an upstream without a `forward:` key gets: the
// identity, never a token.
const DefaultForward = ForwardUser | ForwardEmail | ForwardGroups | ForwardPreferredUsername

var forwardNames = [...]struct {
	name string
	f    Forward
}{
	{"user", ForwardUser},
	{"email", ForwardEmail},
	{"groups", ForwardGroups},
	{"preferred_username", ForwardPreferredUsername},
	{"access_token", ForwardAccessToken},
	{"id_token", ForwardIDToken},
	{"assertion", ForwardAssertion},
}

const forwardWant = "want user, email, groups, preferred_username, access_token, id_token or assertion"

func parseForwardName(s string) (Forward, bool) {
	for _, n := range forwardNames {
		if n.name == s {
			return n.f, true
		}
	}
	return 0, false
}

// ParseForward turns a `forward:` list into a set. A nil list means
// DefaultForward; an empty, non-nil list forwards nothing. Unknown names are
// errors; Config.Validate reports them with their index.
func ParseForward(names []string) (Forward, error) {
	if names == nil {
		return DefaultForward, nil
	}
	var f Forward
	for _, s := range names {
		x, ok := parseForwardName(s)
		if !ok {
			return 0, &forwardError{name: s}
		}
		f |= x
	}
	return f, nil
}

type forwardError struct{ name string }

func (e *forwardError) Error() string {
	return "upstream: forward: " + quote(e.name) + ": unknown (" + forwardWant + ")"
}

// Has reports whether every field of x is in f.
func (f Forward) Has(x Forward) bool { return f&x == x }

// String lists the set in config spelling, comma-separated.
func (f Forward) String() string {
	var b strings.Builder
	for _, n := range forwardNames {
		if f&n.f != 0 {
			if b.Len() > 0 {
				b.WriteByte(',')
			}
			b.WriteString(n.name)
		}
	}
	return b.String()
}

// StripIdentityHeaders deletes from h every header a client could use to
// impersonate someone: the X-Forwarded- identity names (user, email, groups,
// preferred-username, access-token), the X-Auth-Request- names of the same
// fields, and every X-Portcullis-* name. Names match whatever their case and
// whether written with '-' or '_' (some servers treat the two alike).
//
// It MUST run on every request before SetIdentityHeaders. It ranges over h
// once and allocates nothing.
func StripIdentityHeaders(h http.Header) { stripHeaders(h, false) }

// stripHeaders is StripIdentityHeaders, and with untrusted it also drops the
// untrustedOnlyHeaders in the same pass.
func stripHeaders(h http.Header, untrusted bool) {
	for k := range h {
		if isIdentityHeader(k) || untrusted && isUntrustedOnly(k) {
			delete(h, k)
		}
	}
}

// isIdentityHeader reports whether name, lower-cased with '_' read as '-', is
// one of ours.
func isIdentityHeader(name string) bool {
	// The shortest match is "x-portcullis"; checking length and the "x-"
	// prefix first keeps ordinary headers to two comparisons.
	if len(name) < len("x-portcullis") || name[0]|0x20 != 'x' || !isDash(name[1]) {
		return false
	}
	rest := name[2:]
	if r, ok := cutPrefixFold(rest, "forwarded-"); ok {
		return isIdentityField(r)
	}
	if r, ok := cutPrefixFold(rest, "auth-request-"); ok {
		return isIdentityField(r)
	}
	if r, ok := cutPrefixFold(rest, "portcullis"); ok {
		return r == "" || isDash(r[0])
	}
	return false
}

func isIdentityField(s string) bool {
	return equalFold(s, "user") || equalFold(s, "email") || equalFold(s, "groups") ||
		equalFold(s, "preferred-username") || equalFold(s, "access-token")
}

func isDash(c byte) bool { return c == '-' || c == '_' }

// foldByte lower-cases ASCII letters and reads '_' as '-'.
func foldByte(c byte) byte {
	if c == '_' {
		return '-'
	}
	if 'A' <= c && c <= 'Z' {
		return c + ('a' - 'A')
	}
	return c
}

// equalFold compares s to want, which is lower case with '-' only.
func equalFold(s, want string) bool {
	if len(s) != len(want) {
		return false
	}
	for i := 0; i < len(s); i++ {
		if foldByte(s[i]) != want[i] {
			return false
		}
	}
	return true
}

func cutPrefixFold(s, prefix string) (string, bool) {
	if len(s) < len(prefix) || !equalFold(s[:len(prefix)], prefix) {
		return s, false
	}
	return s[len(prefix):], true
}

// identityNames are the header names one family of identity headers uses.
type identityNames struct {
	user, email, groups, preferredUsername, accessToken string
}

var (
	forwardedNames   = identityNames{HeaderUser, HeaderEmail, HeaderGroups, HeaderPreferredUsername, HeaderAccessToken}
	authRequestNames = identityNames{HeaderAuthRequestUser, HeaderAuthRequestEmail, HeaderAuthRequestGroups, HeaderAuthRequestPreferredUsername, HeaderAuthRequestAccessToken}
)

// SetIdentityHeaders sets on h the X-Forwarded-* identity headers that f
// selects, from id, and with ForwardIDToken sets Authorization: Bearer
// <id_token>. It does not set X-Portcullis-Assertion (that needs signing;
// the Upstream does it) and does not strip: call StripIdentityHeaders
// first. A nil id sets nothing.
//
// With ForwardIDToken the Authorization header is deleted even when id has
// no ID token, so that on such routes the upstream never sees an
// Authorization the client wrote.
//
// A value that is empty is not sent. A value that could be mis-read
// upstream — control characters (CR, LF, NUL, tab…), leading or trailing
// spaces, or, for a group, a comma — is not sent either, and its field is
// reported in dropped so the caller can log it; failing closed like this
// beats sanitising a name into someone else's.
func SetIdentityHeaders(h http.Header, id *auth.Identity, f Forward) (dropped Forward) {
	if f.Has(ForwardIDToken) {
		delete(h, "Authorization")
	}
	if id == nil {
		return 0
	}
	dropped = setIdentity(h, id, f, &forwardedNames)
	if f.Has(ForwardIDToken) && id.IDToken != "" {
		if v := id.IDToken.Reveal(); validValue(v) {
			h["Authorization"] = []string{"Bearer " + v}
		} else {
			dropped |= ForwardIDToken
		}
	}
	return dropped
}

// SetAuthRequestHeaders sets on h the X-Auth-Request-* names of the fields f
// selects (user, email, groups, preferred_username, access_token), as
// nginx auth_request and similar forward-auth callers expect in a 2xx
// answer. Values are checked as in SetIdentityHeaders.
func SetAuthRequestHeaders(h http.Header, id *auth.Identity, f Forward) (dropped Forward) {
	if id == nil {
		return 0
	}
	return setIdentity(h, id, f, &authRequestNames)
}

func setIdentity(h http.Header, id *auth.Identity, f Forward, n *identityNames) (dropped Forward) {
	// One backing array for every value keeps this to one allocation plus
	// the groups join.
	var vals [5]string
	set := func(i int, name, v string, field Forward) {
		if v == "" || f&field == 0 {
			return
		}
		if !validValue(v) {
			dropped |= field
			return
		}
		vals[i] = v
	}
	set(0, n.user, id.User, ForwardUser)
	if id.EmailVerified {
		// An address the issuer did not verify may be anyone's: an app
		// must never take it as the user's.
		set(1, n.email, id.Email, ForwardEmail)
	}
	if f.Has(ForwardGroups) && len(id.Groups) > 0 {
		g, bad := joinGroups(id.Groups)
		if bad {
			dropped |= ForwardGroups
		}
		vals[2] = g
	}
	set(3, n.preferredUsername, id.PreferredUsername, ForwardPreferredUsername)
	set(4, n.accessToken, id.AccessToken.Reveal(), ForwardAccessToken)

	count := 0
	for _, v := range vals {
		if v != "" {
			count++
		}
	}
	if count == 0 {
		return dropped
	}
	backing := make([]string, 0, count)
	names := [5]string{n.user, n.email, n.groups, n.preferredUsername, n.accessToken}
	for i, v := range vals {
		if v != "" {
			backing = append(backing, v)
			h[names[i]] = backing[len(backing)-1 : len(backing) : len(backing)]
		}
	}
	return dropped
}

// joinGroups comma-joins the groups that are safe to send; bad reports
// whether any was left out.
func joinGroups(groups []string) (joined string, bad bool) {
	ok := 0
	size := 0
	for _, g := range groups {
		if validGroup(g) {
			ok++
			size += len(g) + 1
		} else {
			bad = true
		}
	}
	if ok == len(groups) && ok == 1 {
		return groups[0], false
	}
	var b strings.Builder
	b.Grow(size)
	for _, g := range groups {
		if validGroup(g) {
			if b.Len() > 0 {
				b.WriteByte(',')
			}
			b.WriteString(g)
		}
	}
	return b.String(), bad
}

func validGroup(g string) bool {
	return g != "" && validValue(g) && !strings.Contains(g, ",")
}

// validValue reports whether v can be sent as a header value and read back
// unchanged: no control bytes (RFC 9110 §5.5 forbids CR, LF and NUL; we
// refuse every C0 byte and DEL) and no surrounding spaces, which parsers trim.
func validValue(v string) bool {
	if v == "" || v[0] == ' ' || v[len(v)-1] == ' ' {
		return false
	}
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < 0x20 || c == 0x7f {
			return false
		}
	}
	return true
}
