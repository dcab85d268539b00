// Package backends opens a storage backend by name, as the -storage,
// -storage-dsn and -storage-options flags of the picomdm and picomigrate
// commands describe it.
package backends

import (
	"fmt"
	"log/slog"
	"strings"

	"github.com/picomdm/picomdm/storage"
	"github.com/picomdm/picomdm/storage/file"
	"github.com/picomdm/picomdm/storage/inmem"
	"github.com/picomdm/picomdm/storage/mysql"
	"github.com/picomdm/picomdm/storage/pgsql"
)

// Names lists the backends Open knows.
var Names = []string{"file", "mysql", "pgsql", "inmem"}

// Option configures Open.
type Option func(*config)

type config struct {
	logger *slog.Logger
	sealer storage.KeySealer
}

// WithLogger sets the logger of the backends that log (mysql and pgsql:
// migrations, the background purge, driver messages), so every line they
// write takes the process's log format (-log-format). Without it they log
// to slog.Default().
func WithLogger(logger *slog.Logger) Option { return func(c *config) { c.logger = logger } }

// WithKeySealer sets the KeySealer every backend seals the private keys
// it stores with (-storage-key); without it keys are stored as given and
// sealed keys do not open (keyseal.None).
func WithKeySealer(s storage.KeySealer) Option { return func(c *config) { c.sealer = s } }

// Open opens backend name with dsn and comma-separated key=value options.
// The returned close function (nil when there is nothing to release) must
// be called when done.
func Open(name, dsn, options string, with ...Option) (storage.Store, func() error, error) {
	var c config
	for _, opt := range with {
		opt(&c)
	}
	opts, err := ParseOptions(options)
	if err != nil {
		return nil, nil, err
	}
	switch name {
	case "file":
		if len(opts) > 0 {
			return nil, nil, fmt.Errorf("file storage takes no options, got %q", options)
		}
		if dsn == "" {
			dsn = "db"
		}
		s, err := file.New(dsn, file.WithKeySealer(c.sealer))
		if err != nil {
			return nil, nil, fmt.Errorf("opening file storage %s: %w", dsn, err)
		}
		return s, s.Close, nil
	case "mysql":
		s, err := mysql.Open(dsn, opts, mysql.WithLogger(c.logger), mysql.WithKeySealer(c.sealer))
		if err != nil {
			return nil, nil, fmt.Errorf("opening mysql storage: %w", err)
		}
		return s, s.Close, nil
	case "pgsql":
		s, err := pgsql.Open(dsn, opts, pgsql.WithLogger(c.logger), pgsql.WithKeySealer(c.sealer))
		if err != nil {
			return nil, nil, fmt.Errorf("opening pgsql storage: %w", err)
		}
		return s, s.Close, nil
	case "inmem":
		return inmem.New(inmem.WithKeySealer(c.sealer)), nil, nil
	}
	return nil, nil, fmt.Errorf("unknown storage %q (want one of %s)", name, strings.Join(Names, ", "))
}

// ParseOptions splits "k=v,k2=v2" into a map.
func ParseOptions(s string) (map[string]string, error) {
	opts := map[string]string{}
	if s == "" {
		return opts, nil
	}
	for _, kv := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(kv, "=")
		k = strings.TrimSpace(k)
		if !ok || k == "" {
			return nil, fmt.Errorf("storage option %q: want key=value", kv)
		}
		opts[k] = strings.TrimSpace(v)
	}
	return opts, nil
}
