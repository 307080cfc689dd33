package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"strings"
	"time"
)

// Storage types accepted in Config.Type.
const (
	TypeMemory = "memory"
	TypeBolt   = "bolt"
	TypeRedis  = "redis"
)

// DefaultKeyPrefix is the Redis key prefix used when Config.KeyPrefix is empty.
const DefaultKeyPrefix = "portcullis:issuer:"

// Config selects and locates the issuer's store; it is `issuer.storage`.
type Config struct {
	// Type is memory, bolt or redis. Default: memory (state is lost on
	// restart and not shared between replicas).
	Type string `yaml:"type"`
	// Path is the bolt database file; required when Type is bolt. Its
	// directory must exist; the file is created with mode 0600. No default.
	Path string `yaml:"path"`
	// URL is the Redis server, redis://[user:password@]host:port/db or
	// rediss:// for TLS; required when Type is redis. No default.
	URL string `yaml:"url"`
	// URLFile is a file holding the URL instead (it carries the Redis
	// password), read by Open; set URL or URLFile, not both. No default.
	URLFile string `yaml:"url_file"`
	// KeyPrefix starts every Redis key, so several deployments can share one
	// server. Default: "portcullis:issuer:".
	KeyPrefix string `yaml:"key_prefix"`
}

// Validate reports every problem in c at once, naming keys relative to
// `issuer.storage`. It does no I/O. A URL is quoted only without its password.
func (c Config) Validate() error {
	var errs []error
	typ := c.Type
	if typ == "" {
		typ = TypeMemory
	}
	switch typ {
	case TypeMemory, TypeBolt, TypeRedis:
	default:
		errs = append(errs, fmt.Errorf("type: %q: unknown storage type (want memory, bolt or redis)", c.Type))
	}
	if typ == TypeBolt && c.Path == "" {
		errs = append(errs, errors.New("path: required when type is bolt"))
	}
	if typ != TypeBolt && c.Path != "" {
		errs = append(errs, fmt.Errorf("path: %q: only used when type is bolt", c.Path))
	}
	if typ == TypeRedis {
		switch {
		case c.URL != "" && c.URLFile != "":
			errs = append(errs, errors.New("url: set url or url_file, not both"))
		case c.URL == "" && c.URLFile == "":
			errs = append(errs, errors.New("url: required when type is redis (or url_file)"))
		case c.URL != "":
			if err := checkRedisURL(c.URL); err != nil {
				errs = append(errs, fmt.Errorf("url: %w", err))
			}
		}
	}
	if typ != TypeRedis && c.URL != "" {
		errs = append(errs, fmt.Errorf("url: %q: only used when type is redis", redactURL(c.URL)))
	}
	if typ != TypeRedis && c.URLFile != "" {
		errs = append(errs, fmt.Errorf("url_file: %q: only used when type is redis", c.URLFile))
	}
	if typ != TypeRedis && c.KeyPrefix != "" {
		errs = append(errs, fmt.Errorf("key_prefix: %q: only used when type is redis", c.KeyPrefix))
	}
	return errors.Join(errs...)
}

// checkRedisURL does the checks of redis.ParseURL that need no I/O. Its
// errors never contain the password.
func checkRedisURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		// url.Parse's error repeats the whole input, password included.
		return errors.New("not a valid URL (value not shown: it may contain a password)")
	}
	switch u.Scheme {
	case "redis", "rediss":
	default:
		return fmt.Errorf("%q: unsupported scheme %q (want redis or rediss)", u.Redacted(), u.Scheme)
	}
	if u.Host == "" {
		return fmt.Errorf("%q: missing host", u.Redacted())
	}
	return nil
}

// redactURL returns raw with any password replaced, or a placeholder when
// raw does not parse (so the password cannot leak either way).
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "[unparsable URL]"
	}
	return u.Redacted()
}

// Options carries the store's dependencies.
type Options struct {
	// Logger receives background sweep failures; nil discards.
	Logger *slog.Logger
	// Now is the clock of background sweeps (expiry seen by callers is
	// decided by the now they pass); nil means time.Now.
	Now func() time.Time
}

func (o Options) logger() *slog.Logger {
	if o.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return o.Logger
}

func (o Options) now() func() time.Time {
	if o.Now == nil {
		return time.Now
	}
	return o.Now
}

// Open validates c and opens the store it names. Redis is pinged with ctx.
func Open(ctx context.Context, c Config, opts Options) (Store, error) {
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("store: invalid config: %w", err)
	}
	switch c.Type {
	case TypeBolt:
		b, err := OpenBolt(c.Path, opts)
		if err != nil {
			return nil, err // not b: a nil *Bolt in a Store is not a nil Store
		}
		return b, nil
	case TypeRedis:
		u := c.URL
		if c.URLFile != "" {
			b, err := os.ReadFile(c.URLFile)
			if err != nil {
				return nil, fmt.Errorf("store: url_file: %w", err)
			}
			u = strings.TrimSpace(string(b))
			if err := checkRedisURL(u); err != nil {
				return nil, fmt.Errorf("store: url_file %s: %w", c.URLFile, err)
			}
		}
		r, err := OpenRedis(ctx, u, c.KeyPrefix, opts)
		if err != nil {
			return nil, err
		}
		return r, nil
	default:
		return NewMemory(opts), nil
	}
}
