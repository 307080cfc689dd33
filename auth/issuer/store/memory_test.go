package store_test

import (
	"testing"

	"github.com/portcullis-proxy/portcullis/auth/issuer/store"
	"github.com/portcullis-proxy/portcullis/auth/issuer/store/storetest"
)

func TestMemory(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		return store.NewMemory(store.Options{})
	})
}
