package session_test

import (
	"testing"

	"github.com/portcullis-proxy/portcullis/auth/authtest"
	"github.com/portcullis-proxy/portcullis/auth/session"
	"github.com/portcullis-proxy/portcullis/auth/session/sessiontest"
)

func TestRedisStore(t *testing.T) {
	url := authtest.Redis(t)
	sessiontest.Run(t, func(t *testing.T, cfg session.Config, opts session.Options) *session.Manager {
		cfg.Store = session.StoreConfig{Type: session.StoreRedis, URL: url, KeyPrefix: "test:session:"}
		return sessiontest.MustNew(t, cfg, opts)
	})
}
