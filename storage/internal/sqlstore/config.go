package sqlstore

import (
	"log/slog"
	"time"

	pmlog "github.com/picomdm/picomdm/log"
	"github.com/picomdm/picomdm/storage"
	"github.com/picomdm/picomdm/storage/keyseal"
)

// Config is what a SQL backend's Open options (its WithLogger,
// WithMigrateTimeout, WithKeySealer) set.
type Config struct {
	// Logger receives the store's lines; nil means slog.Default().
	Logger *slog.Logger
	// MigrateTimeout bounds waiting for the migration lock and migrating;
	// 0 or less means DefaultMigrateTimeout.
	MigrateTimeout time.Duration
	// Sealer seals the private keys stored and opens those read; nil
	// means keyseal.None.
	Sealer storage.KeySealer
}

// NewConfig applies a backend's options and fills in what they left
// unset; the logger tags every line storage=backend.
func NewConfig[Option ~func(*Config)](backend string, with []Option) Config {
	var c Config
	for _, opt := range with {
		opt(&c)
	}
	if c.MigrateTimeout <= 0 {
		c.MigrateTimeout = DefaultMigrateTimeout
	}
	c.Logger = pmlog.Or(c.Logger).With("storage", backend)
	c.Sealer = keyseal.Or(c.Sealer)
	return c
}

// Logger sets Config.Logger: a backend's WithLogger.
func Logger(logger *slog.Logger) func(*Config) { return func(c *Config) { c.Logger = logger } }

// MigrateTimeout sets Config.MigrateTimeout: a backend's
// WithMigrateTimeout.
func MigrateTimeout(d time.Duration) func(*Config) { return func(c *Config) { c.MigrateTimeout = d } }

// Sealer sets Config.Sealer: a backend's WithKeySealer.
func Sealer(s storage.KeySealer) func(*Config) { return func(c *Config) { c.Sealer = s } }
