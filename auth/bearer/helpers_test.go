package bearer_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"github.com/portcullis-proxy/portcullis/auth/authtest"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/portcullis-proxy/portcullis/auth"
	"github.com/portcullis-proxy/portcullis/auth/bearer"
	"github.com/portcullis-proxy/portcullis/auth/issuer"
	"github.com/portcullis-proxy/portcullis/auth/issuer/store"
	"golang.org/x/crypto/bcrypt"
)

// Test credentials. The secret has characters that RFC 6749 §2.3.1 form
// encoding changes, so a verifier that skips it fails introspection.
const (
	clientID     = "portcullis"
	clientSecret = "s3cret:with+special/chars-0123456789abcdef"
	testPassword = "correct horse battery staple"
	apiAudience  = "https://api.example.com"
)

// t0 is the start of every test clock.
var t0 = time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC)

// newClock is the settable test clock shared by the OP and the verifier.
func newClock() *authtest.Clock { return authtest.NewClock(t0) }

// RSA generation is slow under -race; one key per test binary is enough.
var (
	rsaKey   = sync.OnceValue(func() *rsa.PrivateKey { return mustRSA() })
	rsaKey2  = sync.OnceValue(func() *rsa.PrivateKey { return mustRSA() })
	testHash = sync.OnceValue(func() string {
		h, err := bcrypt.GenerateFromPassword([]byte(testPassword), bcrypt.MinCost)
		if err != nil {
			panic(err)
		}
		return string(h)
	})
)

func mustRSA() *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return k
}

func newEC(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// signingKey signs hand-made tokens.
type signingKey struct {
	kid  string
	alg  jose.SignatureAlgorithm
	priv crypto.Signer
}

func (k signingKey) public() jose.JSONWebKey {
	return jose.JSONWebKey{Key: k.priv.Public(), KeyID: k.kid, Algorithm: string(k.alg), Use: "sig"}
}

// sign returns a compact JWS of claims.
func (k signingKey) sign(t testing.TB, claims map[string]any) string {
	t.Helper()
	return signWith(t, jose.SigningKey{Algorithm: k.alg, Key: jose.JSONWebKey{Key: k.priv, KeyID: k.kid}}, claims)
}

func signWith(t testing.TB, sk jose.SigningKey, claims map[string]any) string {
	t.Helper()
	s, err := jose.NewSigner(sk, (&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		t.Fatal(err)
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	jws, err := s.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := jws.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// unsigned builds an alg "none" token by hand (go-jose refuses to).
func unsigned(header, claims map[string]any) string {
	h, _ := json.Marshal(header)
	c, _ := json.Marshal(claims)
	return base64.RawURLEncoding.EncodeToString(h) + "." + base64.RawURLEncoding.EncodeToString(c) + "."
}

// fakeOP is a minimal OpenID provider written for the edge cases: its
// discovery document, key set and introspection answers are set by the
// test, and it counts the requests it serves per path.
type fakeOP struct {
	t   testing.TB
	srv *httptest.Server

	mu     sync.Mutex
	keys   []jose.JSONWebKey
	meta   map[string]any            // discovery document
	tokens map[string]map[string]any // introspection answers by token
	status int                       // introspection status; 0 means 200
	counts map[string]int
	// introspected records what the last introspection request carried.
	introspected url.Values
}

func newFakeOP(t testing.TB, keys ...signingKey) *fakeOP {
	t.Helper()
	op := &fakeOP{t: t, tokens: map[string]map[string]any{}, counts: map[string]int{}}
	for _, k := range keys {
		op.keys = append(op.keys, k.public())
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		op.mu.Lock()
		b, _ := json.Marshal(op.meta)
		op.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(b)
	})
	mux.HandleFunc("GET /keys", func(w http.ResponseWriter, r *http.Request) {
		op.mu.Lock()
		b, _ := json.Marshal(jose.JSONWebKeySet{Keys: op.keys})
		op.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(b)
	})
	mux.HandleFunc("POST /introspect", op.handleIntrospect)
	op.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		op.mu.Lock()
		op.counts[r.URL.Path]++
		op.mu.Unlock()
		mux.ServeHTTP(w, r)
	}))
	t.Cleanup(op.srv.Close)
	op.meta = map[string]any{
		"issuer":                                op.srv.URL,
		"authorization_endpoint":                op.srv.URL + "/authorize",
		"token_endpoint":                        op.srv.URL + "/token",
		"jwks_uri":                              op.srv.URL + "/keys",
		"introspection_endpoint":                op.srv.URL + "/introspect",
		"id_token_signing_alg_values_supported": []string{"RS256", "ES256"},
	}
	return op
}

func (op *fakeOP) handleIntrospect(w http.ResponseWriter, r *http.Request) {
	id, secret, ok := r.BasicAuth()
	id, _ = url.QueryUnescape(id)
	secret, _ = url.QueryUnescape(secret)
	if err := r.ParseForm(); err != nil {
		http.Error(w, "bad form", http.StatusBadRequest)
		return
	}
	op.mu.Lock()
	defer op.mu.Unlock()
	op.introspected = r.PostForm
	if !ok || id != clientID || secret != clientSecret {
		http.Error(w, `{"error":"invalid_client"}`, http.StatusUnauthorized)
		return
	}
	if op.status != 0 {
		http.Error(w, "broken", op.status)
		return
	}
	ans, found := op.tokens[r.PostForm.Get("token")]
	if !found {
		ans = map[string]any{"active": false}
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(ans)
}

// URL is the issuer URL.
func (op *fakeOP) URL() string { return op.srv.URL }

// count returns how many requests path has served.
func (op *fakeOP) count(path string) int {
	op.mu.Lock()
	defer op.mu.Unlock()
	return op.counts[path]
}

func (op *fakeOP) setKeys(keys ...signingKey) {
	op.mu.Lock()
	defer op.mu.Unlock()
	op.keys = nil
	for _, k := range keys {
		op.keys = append(op.keys, k.public())
	}
}

func (op *fakeOP) setMeta(k string, v any) {
	op.mu.Lock()
	defer op.mu.Unlock()
	if v == nil {
		delete(op.meta, k)
	} else {
		op.meta[k] = v
	}
}

func (op *fakeOP) setToken(tok string, answer map[string]any) {
	op.mu.Lock()
	defer op.mu.Unlock()
	op.tokens[tok] = answer
}

func (op *fakeOP) setStatus(s int) {
	op.mu.Lock()
	defer op.mu.Unlock()
	op.status = s
}

// newVerifier returns a discovered verifier for op's issuer; mutate edits
// the options (defaults: our client credentials, the clock, op's client).
func newVerifier(t testing.TB, issuerURL string, hc *http.Client, clk *authtest.Clock, mutate func(*bearer.Options)) *bearer.Verifier {
	t.Helper()
	opts := bearer.Options{
		IssuerURL:    issuerURL,
		ClientID:     clientID,
		ClientSecret: auth.Secret(clientSecret),
		HTTPClient:   hc,
		Now:          clk.Now,
	}
	if mutate != nil {
		mutate(&opts)
	}
	v, err := bearer.New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if err := v.Discover(t.Context()); err != nil {
		t.Fatalf("Discover: %v", err)
	}
	return v
}

// claims returns typical access-token claims of op at clk's time.
func (op *fakeOP) claims(clk *authtest.Clock) map[string]any {
	now := clk.Now()
	return map[string]any{
		"iss":                op.URL(),
		"sub":                "user-1",
		"aud":                []string{apiAudience, "other"},
		"exp":                now.Add(10 * time.Minute).Unix(),
		"iat":                now.Unix(),
		"preferred_username": "alice",
		"email":              "alice@example.com",
		"groups":             []string{"admins", "dev"},
	}
}

// with returns a copy of m with the changes applied; a nil value deletes.
func with(m map[string]any, kv ...any) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = v
	}
	for i := 0; i < len(kv); i += 2 {
		k := kv[i].(string)
		if kv[i+1] == nil {
			delete(out, k)
		} else {
			out[k] = kv[i+1]
		}
	}
	return out
}

// realOP is the built-in issuer on an httptest server, standing in for an
// external OpenID provider; it counts requests per path.
type realOP struct {
	iss *issuer.Issuer
	srv *httptest.Server
	clk *authtest.Clock

	mu     sync.Mutex
	counts map[string]int
}

// newRealOP starts the built-in issuer with a user alice and two
// confidential clients: clientID (password, client_credentials, refresh)
// and "script" (client_credentials); both get access tokens for
// apiAudience. The first signing key is put in the store so New does not
// generate one.
func newRealOP(t *testing.T, clk *authtest.Clock, mutate func(*issuer.Config)) *realOP {
	t.Helper()
	op := &realOP{clk: clk, counts: map[string]int{}}
	var h http.Handler = http.NotFoundHandler()
	var hmu sync.RWMutex
	op.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		op.mu.Lock()
		op.counts[r.URL.Path]++
		op.mu.Unlock()
		hmu.RLock()
		hh := h
		hmu.RUnlock()
		hh.ServeHTTP(w, r)
	}))
	t.Cleanup(op.srv.Close)
	cfg := issuer.Config{
		URL: op.srv.URL,
		Users: []issuer.UserConfig{{Username: "alice", Email: "alice@example.com", Name: "Alice A",
			Groups: []string{"admins", "dev"}, PasswordHash: testHash()}},
		Clients: []issuer.ClientConfig{
			{ID: clientID, Secret: auth.Secret(clientSecret), Audience: []string{apiAudience},
				Grants: []string{issuer.GrantPassword, issuer.GrantClientCredentials, issuer.GrantRefreshToken}},
			{ID: "script", Secret: auth.Secret("script-secret-0123456789-0123456789"), Audience: []string{apiAudience},
				Grants: []string{issuer.GrantClientCredentials}, Scopes: []string{"api.read"}},
		},
	}
	if mutate != nil {
		mutate(&cfg)
	}
	st := store.NewMemory(store.Options{Now: clk.Now})
	t.Cleanup(func() { _ = st.Close() })
	alg := cfg.Keys.Algorithm
	var priv crypto.Signer = rsaKey()
	if alg == "ES256" {
		priv = newEC(t)
	} else {
		alg = "RS256"
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.PutKey(t.Context(), store.Key{ID: "k1-" + alg, Algorithm: alg, Private: der, CreatedAt: clk.Now()}); err != nil {
		t.Fatal(err)
	}
	pub, _ := url.Parse("https://portcullis.example.com")
	op.iss, err = issuer.New(t.Context(), cfg, issuer.Options{PublicURL: pub, Store: st, Now: clk.Now})
	if err != nil {
		t.Fatalf("issuer.New: %v", err)
	}
	t.Cleanup(op.iss.Close)
	hmu.Lock()
	h = op.iss.Handler()
	hmu.Unlock()
	return op
}

func (op *realOP) count(path string) int {
	op.mu.Lock()
	defer op.mu.Unlock()
	return op.counts[path]
}

// token calls the token endpoint as client id and returns the answer.
func (op *realOP) token(t *testing.T, id, secret string, form url.Values) map[string]any {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, op.srv.URL+"/token", strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(url.QueryEscape(id), url.QueryEscape(secret))
	resp, err := op.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("token endpoint: %d %v", resp.StatusCode, out)
	}
	return out
}

// decodeSegment decodes one base64url JSON segment of a compact JWS.
func decodeSegment(seg string) (map[string]any, error) {
	b, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil {
		return nil, err
	}
	var m map[string]any
	return m, json.Unmarshal(b, &m)
}
