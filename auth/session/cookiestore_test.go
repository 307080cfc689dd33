package session_test

import (
	"testing"

	"github.com/portcullis-proxy/portcullis/auth/session"
	"github.com/portcullis-proxy/portcullis/auth/session/sessiontest"
)

func TestCookieStore(t *testing.T) {
	sessiontest.Run(t, func(t *testing.T, cfg session.Config, opts session.Options) *session.Manager {
		cfg.Store = session.StoreConfig{Type: session.StoreCookie}
		return sessiontest.MustNew(t, cfg, opts)
	})
}
