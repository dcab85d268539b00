package sqlstore

import (
	"database/sql"
	"strings"
	"testing"
	"time"
)

func TestParseOptions(t *testing.T) {
	def := DefaultOptions()
	for _, tc := range []struct {
		name string
		kv   map[string]string
		want func(*Options)
	}{
		{"defaults", nil, func(*Options) {}},
		{"delete", map[string]string{"delete": "1"}, func(o *Options) { o.Delete = true }},
		{"delete=true", map[string]string{"delete": "true"}, func(o *Options) { o.Delete = true }},
		{"migrate=0", map[string]string{"migrate": "0"}, func(o *Options) { o.Migrate = false }},
		{"migrate=off", map[string]string{"migrate": "off"}, func(o *Options) { o.Migrate = false }},
		{"retention", map[string]string{"retention": "48h"}, func(o *Options) { o.Retention = 48 * time.Hour }},
		{"retention=0 keeps forever", map[string]string{"retention": "0"}, func(o *Options) { o.Retention = 0 }},
		{"purge_interval", map[string]string{"purge_interval": "30s"}, func(o *Options) { o.PurgeInterval = 30 * time.Second }},
		{"max_open_conns sets idle too", map[string]string{"max_open_conns": "10"}, func(o *Options) {
			o.MaxOpenConns, o.MaxIdleConns = 10, 10
		}},
		{"unlimited open keeps the default idle", map[string]string{"max_open_conns": "0"}, func(o *Options) {
			o.MaxOpenConns = 0
		}},
		{"explicit idle", map[string]string{"max_open_conns": "10", "max_idle_conns": "3"}, func(o *Options) {
			o.MaxOpenConns, o.MaxIdleConns = 10, 3
		}},
		{"lifetimes", map[string]string{"conn_max_lifetime": "1h", "conn_max_idle_time": "1m"}, func(o *Options) {
			o.ConnMaxLifetime, o.ConnMaxIdleTime = time.Hour, time.Minute
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseOptions(tc.kv)
			if err != nil {
				t.Fatalf("ParseOptions(%v): %v", tc.kv, err)
			}
			want := def
			tc.want(&want)
			if got != want {
				t.Fatalf("ParseOptions(%v) =\n%+v, want\n%+v", tc.kv, got, want)
			}
		})
	}
}

func TestParseOptionsErrors(t *testing.T) {
	for _, kv := range []map[string]string{
		{"dleete": "1"},
		{"delete": "maybe"},
		{"retention": "30d"},
		{"retention": "-1h"},
		{"purge_interval": "0s"},
		{"max_open_conns": "-1"},
		{"max_idle_conns": "many"},
		{"conn_max_lifetime": "1"},
	} {
		if _, err := ParseOptions(kv); err == nil {
			t.Errorf("ParseOptions(%v): no error", kv)
		} else {
			for k := range kv {
				if !strings.Contains(err.Error(), k) {
					t.Errorf("ParseOptions(%v): error %q does not name the option", kv, err)
				}
			}
		}
	}
}

func TestApplyPool(t *testing.T) {
	db := sql.OpenDB(&fakeConnector{db: newFakeDB()})
	defer db.Close()
	o := DefaultOptions()
	o.MaxOpenConns = 7
	o.ApplyPool(db)
	if got := db.Stats().MaxOpenConnections; got != 7 {
		t.Fatalf("MaxOpenConnections = %d, want 7", got)
	}
}
