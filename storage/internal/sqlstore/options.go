// Package sqlstore holds what the SQL storage backends (mysql, pgsql)
// share: their -storage-options, versioned schema migrations and the
// connection-pool set-up. Each backend keeps its own SQL.
package sqlstore

import (
	"database/sql"
	"fmt"
	"strconv"
	"time"
)

// Options are the SQL backends' -storage-options.
type Options struct {
	// Delete drops a command's rows once it is answered (NanoMDM's
	// delete=1): no results are kept.
	Delete bool
	// Migrate applies the embedded schema migrations at start-up
	// (migrate=0 turns it off).
	Migrate bool
	// Retention is how long answered results are kept before the
	// background purge removes them (retention=720h; 0 keeps them forever).
	Retention time.Duration
	// PurgeInterval is how often the purge runs (purge_interval=10m).
	PurgeInterval time.Duration
	// Connection pool settings (database/sql's defaults are too small for
	// a busy MDM server: it keeps only 2 idle connections, so under load
	// every request would reconnect).
	MaxOpenConns    int
	MaxIdleConns    int
	ConnMaxLifetime time.Duration
	ConnMaxIdleTime time.Duration
}

// DefaultOptions are the options when none are given.
func DefaultOptions() Options {
	return Options{
		Migrate:         true,
		Retention:       720 * time.Hour,
		PurgeInterval:   10 * time.Minute,
		MaxOpenConns:    50,
		MaxIdleConns:    50,
		ConnMaxLifetime: 30 * time.Minute,
		ConnMaxIdleTime: 5 * time.Minute,
	}
}

// ParseOptions reads -storage-options key=value pairs over the defaults.
// Unknown keys are an error, so a typo does not pass silently.
func ParseOptions(kv map[string]string) (Options, error) {
	o := DefaultOptions()
	idleSet := false
	for k, v := range kv {
		var err error
		switch k {
		case "delete":
			o.Delete, err = parseBool(v)
		case "migrate":
			o.Migrate, err = parseBool(v)
		case "retention":
			o.Retention, err = time.ParseDuration(v)
		case "purge_interval":
			o.PurgeInterval, err = time.ParseDuration(v)
		case "max_open_conns":
			o.MaxOpenConns, err = strconv.Atoi(v)
		case "max_idle_conns":
			o.MaxIdleConns, err = strconv.Atoi(v)
			idleSet = true
		case "conn_max_lifetime":
			o.ConnMaxLifetime, err = time.ParseDuration(v)
		case "conn_max_idle_time":
			o.ConnMaxIdleTime, err = time.ParseDuration(v)
		default:
			return o, fmt.Errorf("unknown storage option %q", k)
		}
		if err != nil {
			return o, fmt.Errorf("storage option %s=%q: %w", k, v, err)
		}
	}
	if !idleSet && o.MaxOpenConns > 0 {
		// Keep every open connection: a pool that closes what it cannot
		// keep idle reconnects under load. With no limit on open
		// connections (0), the default idle count stays: 0 would mean
		// "keep none" to database/sql.
		o.MaxIdleConns = o.MaxOpenConns
	}
	switch {
	case o.Retention < 0:
		return o, fmt.Errorf("storage option retention=%s: must not be negative", o.Retention)
	case o.PurgeInterval <= 0:
		return o, fmt.Errorf("storage option purge_interval=%s: must be positive", o.PurgeInterval)
	case o.MaxOpenConns < 0:
		return o, fmt.Errorf("storage option max_open_conns=%d: must not be negative", o.MaxOpenConns)
	}
	return o, nil
}

func parseBool(v string) (bool, error) {
	switch v {
	case "1", "true", "yes", "on":
		return true, nil
	case "0", "false", "no", "off", "":
		return false, nil
	}
	return false, fmt.Errorf("not a boolean")
}

// ApplyPool sizes db's connection pool.
func (o Options) ApplyPool(db *sql.DB) {
	db.SetMaxOpenConns(o.MaxOpenConns)
	db.SetMaxIdleConns(o.MaxIdleConns)
	db.SetConnMaxLifetime(o.ConnMaxLifetime)
	db.SetConnMaxIdleTime(o.ConnMaxIdleTime)
}
