package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// newBrowser starts a headless Debian Chromium with the flags this closed
// network needs (TESTING.md) and a fresh profile.
func newBrowser(t *testing.T) context.Context {
	t.Helper()
	bin, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatalf("chromium not found: run scripts/test-deps.sh (%v)", err)
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(bin),
		chromedp.NoSandbox, // tests run as root
		chromedp.Headless,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.UserDataDir(t.TempDir()),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(actx)
	ctx, cancelTimeout := context.WithTimeout(ctx, 90*time.Second)
	t.Cleanup(func() { cancelTimeout(); cancelCtx(); cancelAlloc() })
	return ctx
}

// screenshots keeps a picture of every page a person sees; when the test
// fails they are copied to $PORTCULLIS_ARTIFACTS (default
// $TMPDIR/portcullis-artifacts) and the path is logged.
type screenshots struct {
	t   *testing.T
	dir string
}

func newScreenshots(t *testing.T) *screenshots {
	s := &screenshots{t: t, dir: t.ArtifactDir()}
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		dst := os.Getenv("PORTCULLIS_ARTIFACTS")
		if dst == "" {
			dst = filepath.Join(os.TempDir(), "portcullis-artifacts")
		}
		dst = filepath.Join(dst, t.Name())
		_ = os.MkdirAll(dst, 0o755)
		files, _ := filepath.Glob(filepath.Join(s.dir, "*.png"))
		for _, f := range files {
			if b, err := os.ReadFile(f); err == nil {
				_ = os.WriteFile(filepath.Join(dst, filepath.Base(f)), b, 0o644)
			}
		}
		t.Logf("screenshots of each page: %s", dst)
	})
	return s
}

func (s *screenshots) take(name string) chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		buf, err := chromedp.FullScreenshot(80)(ctx, tg)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(s.dir, name+".png"), buf, 0o644)
	})
}

// A real browser from the protected URL through the login form and back to
// the echo page, which shows X-Forwarded-User; then sign-out.
func TestBrowserSignInAndOut(t *testing.T) {
	in := startServe(t, func(p int) string { return exampleOnPort(t, p) }, nil)
	ctx := newBrowser(t)
	shots := newScreenshots(t)

	user, pass := chromedp.CSS(`input[name="username"]`), chromedp.CSS(`input[name="password"]`)
	err := chromedp.Do(ctx,
		chromedp.Navigate(in.base+"/dashboard?tab=1"),
		chromedp.WaitVisible(user),
		shots.take("1-login"),
		chromedp.SendKeys(user, "demo"),
		chromedp.SendKeys(pass, "demo"),
		chromedp.Submit(pass),
	)
	if err != nil {
		t.Fatalf("sign-in form in the browser: %v", err)
	}
	// The form post redirects through the issuer and the callback; wait
	// for the browser to land (polling JS would race the navigations).
	deadline := time.Now().Add(20 * time.Second)
	for {
		loc, err := chromedp.Run(ctx, chromedp.Location())
		if err == nil && strings.HasPrefix(loc, in.base+"/dashboard") {
			break
		}
		if time.Now().After(deadline) {
			chromedp.Do(ctx, shots.take("2-stuck"))
			t.Fatalf("browser did not come back to /dashboard (at %q, %v)", loc, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	chromedp.Do(ctx, chromedp.WaitReady(chromedp.CSS("body")), shots.take("2-echo"))
	page, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("body")))
	if err != nil {
		t.Fatal(err)
	}
	loc, _ := chromedp.Run(ctx, chromedp.Location())
	if loc != in.base+"/dashboard?tab=1" {
		t.Errorf("after sign-in the browser is at %s, want the protected URL it started from", loc)
	}
	if !strings.Contains(page, "X-Forwarded-User") || !strings.Contains(page, "demo") {
		t.Fatalf("echo page does not show X-Forwarded-User demo:\n%s", page)
	}

	err = chromedp.Do(ctx,
		chromedp.Navigate(in.base+"/oauth2/sign_out"),
		chromedp.WaitReady(chromedp.CSS("body")),
		shots.take("3-signed-out"),
		chromedp.Navigate(in.base+"/dashboard"),
		chromedp.WaitVisible(pass),
		shots.take("4-login-again"),
	)
	if err != nil {
		t.Fatalf("after sign-out the browser was not asked to sign in again: %v", err)
	}
}
