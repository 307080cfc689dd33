package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/portcullis-proxy/portcullis/auth/authtest"
)

// nginxConfig is what README.md shows for nginx auth_request, with test
// paths and ports filled in.
const nginxConfig = `
user root;
pid {{dir}}/nginx.pid;
error_log {{dir}}/error.log warn;
events { worker_connections 64; }
http {
  access_log off;
  client_body_temp_path {{dir}}/body;
  proxy_temp_path {{dir}}/proxy;
  fastcgi_temp_path {{dir}}/fastcgi;
  uwsgi_temp_path {{dir}}/uwsgi;
  scgi_temp_path {{dir}}/scgi;
  server {
    listen 127.0.0.1:{{nginx}};

    # Portcullis's own routes: sign-in, callback, sign-out, built-in issuer.
    location /oauth2/ {
      proxy_pass http://127.0.0.1:{{portcullis}};
      proxy_set_header Host $http_host;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto $scheme;
    }
    # The subrequest nginx makes for every protected request.
    location = /oauth2/auth {
      internal;
      proxy_pass http://127.0.0.1:{{portcullis}};
      proxy_pass_request_body off;
      proxy_set_header Content-Length "";
      proxy_set_header Host $http_host;
      proxy_set_header X-Original-URI $request_uri;
      proxy_set_header X-Original-Method $request_method;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
    }
    # The protected application.
    location / {
      auth_request /oauth2/auth;
      auth_request_set $user   $upstream_http_x_auth_request_user;
      auth_request_set $email  $upstream_http_x_auth_request_email;
      auth_request_set $groups $upstream_http_x_auth_request_groups;
      proxy_set_header X-Forwarded-User   $user;
      proxy_set_header X-Forwarded-Email  $email;
      proxy_set_header X-Forwarded-Groups $groups;
      proxy_pass http://127.0.0.1:{{app}};
      error_page 401 = @signin;
    }
    location @signin {
      return 302 /oauth2/start?rd=$request_uri;
    }
  }
}
`

func startNginx(t *testing.T, vars map[string]string) {
	t.Helper()
	bin, err := exec.LookPath("nginx")
	if err != nil {
		if _, err2 := os.Stat("/usr/sbin/nginx"); err2 == nil {
			bin = "/usr/sbin/nginx"
		} else {
			t.Fatalf("nginx not found: run scripts/test-deps.sh (%v)", err)
		}
	}
	dir := t.TempDir()
	conf := strings.ReplaceAll(nginxConfig, "{{dir}}", dir)
	for k, v := range vars {
		conf = strings.ReplaceAll(conf, "{{"+k+"}}", v)
	}
	if err := os.WriteFile(filepath.Join(dir, "nginx.conf"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	// Output goes to a file, not a pipe, and nginx runs in its own process
	// group: its workers outlive a killed master, and would keep a pipe —
	// and Wait — open forever.
	outFile, err := os.Create(filepath.Join(dir, "output.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-p", dir, "-c", filepath.Join(dir, "nginx.conf"), "-g", "daemon off;")
	cmd.Stdout, cmd.Stderr = outFile, outFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start nginx: %v", err)
	}
	outFile.Close()
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		cmd.Wait()
		if t.Failed() {
			out, _ := os.ReadFile(filepath.Join(dir, "output.log"))
			log, _ := os.ReadFile(filepath.Join(dir, "error.log"))
			t.Logf("nginx output:\n%s\nerror.log:\n%s", out, log)
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		if resp, err := http.Get("http://127.0.0.1:" + vars["nginx"] + "/oauth2/healthz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("nginx did not answer within 10s")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// A real nginx with auth_request in front of an app, Portcullis answering
// /oauth2/auth: a browser is sent to sign in, signs in through nginx, and
// the app receives the identity nginx took from Portcullis's answer.
func TestNginxAuthRequest(t *testing.T) {
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(map[string]any{"path": r.URL.Path, "headers": r.Header})
	}))
	defer app.Close()
	nport := authtest.FreePort(t)
	in := startServe(t, func(p int) string {
		cfg := exampleOnPort(t, p)
		// Users reach Portcullis through nginx; nginx is a trusted proxy.
		cfg = strings.Replace(cfg, fmt.Sprintf(`public_url: "http://localhost:%d"`, p), fmt.Sprintf(`public_url: "http://localhost:%d"`, nport), 1)
		return strings.Replace(cfg, "  tls: { mode: off }", "  tls: { mode: off }\n  trusted_proxies: [\"127.0.0.1/32\"]", 1)
	}, nil)
	pport := strings.TrimPrefix(in.base, "http://localhost:")
	startNginx(t, map[string]string{"nginx": fmt.Sprint(nport), "portcullis": pport, "app": strings.TrimPrefix(app.URL, "http://127.0.0.1:")})
	front := fmt.Sprintf("http://localhost:%d", nport)

	c := newBrowserClient(t)
	resp, body := signIn(t, c, front+"/reports/q3", "demo", "demo")
	if resp.StatusCode != 200 || resp.Request.URL.String() != front+"/reports/q3" {
		t.Fatalf("after sign-in through nginx: %d at %s\n%s", resp.StatusCode, resp.Request.URL, body)
	}
	var got struct {
		Path    string
		Headers map[string][]string
	}
	if err := json.Unmarshal([]byte(body), &got); err != nil {
		t.Fatalf("app answer: %v\n%s", err, body)
	}
	if u := got.Headers["X-Forwarded-User"]; len(u) != 1 || u[0] != "demo" {
		t.Errorf("app X-Forwarded-User = %v, want [demo]", u)
	}
	if g := got.Headers["X-Forwarded-Groups"]; len(g) != 1 || g[0] != "demo" {
		t.Errorf("app X-Forwarded-Groups = %v, want [demo]", g)
	}

	// Without a session nginx sends the browser to sign in.
	anon := newBrowserClient(t)
	anon.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, _ = get(t, anon, front+"/reports/q3", "text/html")
	if resp.StatusCode != 302 || !strings.HasPrefix(resp.Header.Get("Location"), front+"/oauth2/start?rd=/reports/q3") {
		t.Errorf("anonymous through nginx = %d to %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	// A path trick does not get past auth_request either.
	resp, _ = get(t, anon, front+"/oauth2/../reports/q3", "text/html")
	if resp.StatusCode == 200 {
		t.Errorf("path trick through nginx reached the app")
	}
}
