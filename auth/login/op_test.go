package login

// A small OpenID provider for tests: discovery, JWKS, an authorize endpoint
// that redirects straight back with a code, a token endpoint that checks
// client authentication, redirect_uri and PKCE S256, and userinfo. Its
// tokens are hand-signed with go-jose; knobs make it misbehave per test.

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
)

const (
	testClientID     = "portcullis-test"
	testClientSecret = "a-client-secret-of-sufficient-length"
	testKID          = "key-1"
)

type signMode int

const (
	signGood       signMode = iota
	signNone                // alg "none", no signature
	signWrongKey            // right kid, another key's signature
	signUnknownKID          // a kid the JWKS does not have
)

type codeGrant struct {
	clientID, redirectURI, challenge, nonce, sub string
}

type testOP struct {
	t      *testing.T
	srv    *httptest.Server
	key    *rsa.PrivateKey
	other  *rsa.PrivateKey
	now    func() time.Time
	issuer string

	mu sync.Mutex
	// knobs
	sign           signMode
	mutateID       func(claims map[string]any) // changes ID-token claims before signing
	endSession     bool                        // advertise end_session_endpoint
	algs           []string                    // id_token_signing_alg_values_supported
	issParam       bool                        // RFC 9207 support advertised and iss sent
	tokenDown      bool                        // token endpoint drops the connection
	noRefreshID    bool                        // refresh answers carry no id_token
	userinfoGroups []string                    // groups served by userinfo only
	omitGroups     bool                        // leave groups out of the ID token
	sub            string
	// records
	codes          map[string]*codeGrant
	refresh        map[string]string // refresh token -> sub
	pkceChecked    int
	tokenRequests  int
	userinfoCalled int
}

func newTestOP(t *testing.T, now func() time.Time) *testOP {
	t.Helper()
	op := &testOP{
		t: t, now: now, key: newRSAKey(t), other: newRSAKey(t),
		codes: map[string]*codeGrant{}, refresh: map[string]string{},
		algs: []string{"RS256"}, sub: "user-123",
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", op.discovery)
	mux.HandleFunc("GET /keys", op.keys)
	mux.HandleFunc("GET /authorize", op.authorize)
	mux.HandleFunc("POST /token", op.token)
	mux.HandleFunc("GET /userinfo", op.userinfo)
	op.srv = httptest.NewServer(mux)
	t.Cleanup(op.srv.Close)
	op.issuer = op.srv.URL
	return op
}

func newRSAKey(t *testing.T) *rsa.PrivateKey {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func (op *testOP) set(f func(op *testOP)) {
	op.mu.Lock()
	defer op.mu.Unlock()
	f(op)
}

func (op *testOP) discovery(w http.ResponseWriter, r *http.Request) {
	op.mu.Lock()
	defer op.mu.Unlock()
	m := map[string]any{
		"issuer":                                op.issuer,
		"authorization_endpoint":                op.issuer + "/authorize",
		"token_endpoint":                        op.issuer + "/token",
		"jwks_uri":                              op.issuer + "/keys",
		"userinfo_endpoint":                     op.issuer + "/userinfo",
		"response_types_supported":              []string{"code"},
		"subject_types_supported":               []string{"public"},
		"id_token_signing_alg_values_supported": op.algs,
		"code_challenge_methods_supported":      []string{"S256"},
		"token_endpoint_auth_methods_supported": []string{"client_secret_basic"},
	}
	if op.endSession {
		m["end_session_endpoint"] = op.issuer + "/end_session?x=1"
	}
	if op.issParam {
		m["authorization_response_iss_parameter_supported"] = true
	}
	writeJSON(w, http.StatusOK, m)
}

func (op *testOP) keys(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, jose.JSONWebKeySet{Keys: []jose.JSONWebKey{
		{Key: &op.key.PublicKey, KeyID: testKID, Algorithm: "RS256", Use: "sig"},
	}})
}

func (op *testOP) authorize(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	fail := func(msg string) {
		op.t.Errorf("test OP /authorize: %s (query %v)", msg, q)
		http.Error(w, msg, http.StatusBadRequest)
	}
	switch {
	case q.Get("response_type") != "code":
		fail("response_type is not code")
		return
	case q.Get("client_id") != testClientID:
		fail("unknown client_id")
		return
	case q.Get("code_challenge_method") != "S256" || len(q.Get("code_challenge")) != 43:
		fail("no PKCE S256 challenge")
		return
	case q.Get("nonce") == "" || len(q.Get("state")) < 32:
		fail("nonce or state missing or short")
		return
	}
	code := rand.Text()
	op.mu.Lock()
	op.codes[code] = &codeGrant{
		clientID: q.Get("client_id"), redirectURI: q.Get("redirect_uri"),
		challenge: q.Get("code_challenge"), nonce: q.Get("nonce"), sub: op.sub,
	}
	issParam := op.issParam
	op.mu.Unlock()
	u, err := url.Parse(q.Get("redirect_uri"))
	if err != nil {
		fail("bad redirect_uri")
		return
	}
	rq := u.Query()
	rq.Set("code", code)
	rq.Set("state", q.Get("state"))
	if issParam {
		rq.Set("iss", op.issuer)
	}
	u.RawQuery = rq.Encode()
	http.Redirect(w, r, u.String(), http.StatusFound)
}

func (op *testOP) token(w http.ResponseWriter, r *http.Request) {
	op.mu.Lock()
	defer op.mu.Unlock()
	op.tokenRequests++
	if op.tokenDown {
		hj, _ := w.(http.Hijacker)
		conn, _, err := hj.Hijack()
		if err == nil {
			conn.Close()
		}
		return
	}
	id, secret, ok := r.BasicAuth()
	if !ok || id != testClientID || secret != testClientSecret {
		writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "invalid_client"})
		return
	}
	if err := r.ParseForm(); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_request"})
		return
	}
	switch r.PostForm.Get("grant_type") {
	case "authorization_code":
		g, ok := op.codes[r.PostForm.Get("code")]
		delete(op.codes, r.PostForm.Get("code")) // one use only
		if !ok || g.redirectURI != r.PostForm.Get("redirect_uri") {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_grant"})
			return
		}
		v := r.PostForm.Get("code_verifier")
		sum := sha256.Sum256([]byte(v))
		if v == "" || base64.RawURLEncoding.EncodeToString(sum[:]) != g.challenge {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_grant", "error_description": "PKCE verification failed"})
			return
		}
		op.pkceChecked++
		op.issueTokens(w, g.sub, g.nonce, true)
	case "refresh_token":
		sub, ok := op.refresh[r.PostForm.Get("refresh_token")]
		delete(op.refresh, r.PostForm.Get("refresh_token")) // rotated on use
		if !ok {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_grant"})
			return
		}
		op.issueTokens(w, sub, "", !op.noRefreshID)
	default:
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "unsupported_grant_type"})
	}
}

// issueTokens answers a token request; op.mu is held.
func (op *testOP) issueTokens(w http.ResponseWriter, sub, nonce string, withID bool) {
	now := op.now()
	at := "at-" + rand.Text()
	rt := "rt-" + rand.Text()
	op.refresh[rt] = sub
	resp := map[string]any{
		"access_token": at, "token_type": "Bearer", "expires_in": 600, "refresh_token": rt,
	}
	if withID {
		claims := map[string]any{
			"iss": op.issuer, "sub": sub, "aud": testClientID,
			"iat": now.Unix(), "exp": now.Add(time.Hour).Unix(),
			"preferred_username": "alice", "email": "alice@example.com", "email_verified": true,
			"name": "Alice Example", "groups": []string{"admins", "staff"},
		}
		if nonce != "" {
			claims["nonce"] = nonce
		}
		if op.omitGroups {
			delete(claims, "groups")
		}
		if op.mutateID != nil {
			op.mutateID(claims)
		}
		resp["id_token"] = op.signJWT(claims)
	}
	writeJSON(w, http.StatusOK, resp)
}

func (op *testOP) signJWT(claims map[string]any) string {
	payload, err := json.Marshal(claims)
	if err != nil {
		op.t.Fatal(err)
	}
	if op.sign == signNone {
		enc := base64.RawURLEncoding
		return enc.EncodeToString([]byte(`{"alg":"none","typ":"JWT"}`)) + "." + enc.EncodeToString(payload) + "."
	}
	key, kid := op.key, testKID
	switch op.sign {
	case signWrongKey:
		key = op.other
	case signUnknownKID:
		key, kid = op.other, "key-unknown"
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: jose.JSONWebKey{Key: key, KeyID: kid}},
		(&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		op.t.Fatal(err)
	}
	jws, err := signer.Sign(payload)
	if err != nil {
		op.t.Fatal(err)
	}
	s, err := jws.CompactSerialize()
	if err != nil {
		op.t.Fatal(err)
	}
	return s
}

func (op *testOP) userinfo(w http.ResponseWriter, r *http.Request) {
	op.mu.Lock()
	defer op.mu.Unlock()
	op.userinfoCalled++
	writeJSON(w, http.StatusOK, map[string]any{"sub": op.sub, "groups": op.userinfoGroups})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
