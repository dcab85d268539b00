package storage_test

import (
	"errors"
	"testing"

	"github.com/picomdm/picomdm/mdm"
	"github.com/picomdm/picomdm/storage"
)

// calls records which queue methods were called, in order.
type calls struct {
	log     []string
	failing string // the method that fails, if any
}

func (c *calls) call(name string) error {
	c.log = append(c.log, name)
	if name == c.failing {
		return errBackend
	}
	return nil
}

var errBackend = errors.New("backend down")

// twoCalls implements only storage.CommandQueueStore.
type twoCalls struct{ *calls }

func (s twoCalls) StoreCommandReport(*mdm.Request, *mdm.CommandResults) error {
	return s.call("StoreCommandReport")
}

func (s twoCalls) RetrieveNextCommand(*mdm.Request) (*mdm.Command, error) {
	if err := s.call("RetrieveNextCommand"); err != nil {
		return nil, err
	}
	return &mdm.Command{CommandUUID: "next"}, nil
}

// fast adds the combined method.
type fast struct{ twoCalls }

func (s fast) StoreCommandReportAndRetrieveNext(*mdm.Request, *mdm.CommandResults) (*mdm.Command, error) {
	if err := s.call("StoreCommandReportAndRetrieveNext"); err != nil {
		return nil, err
	}
	return &mdm.Command{CommandUUID: "next"}, nil
}

func TestStoreReportAndRetrieveNext(t *testing.T) {
	for _, tc := range []struct {
		name    string
		store   func(*calls) storage.CommandQueueStore
		failing string
		want    []string
	}{
		{"FastPath", func(c *calls) storage.CommandQueueStore { return fast{twoCalls{c}} }, "",
			[]string{"StoreCommandReportAndRetrieveNext"}},
		{"FastPathFails", func(c *calls) storage.CommandQueueStore { return fast{twoCalls{c}} }, "StoreCommandReportAndRetrieveNext",
			[]string{"StoreCommandReportAndRetrieveNext"}},
		{"TwoCalls", func(c *calls) storage.CommandQueueStore { return twoCalls{c} }, "",
			[]string{"StoreCommandReport", "RetrieveNextCommand"}},
		{"ReportFails", func(c *calls) storage.CommandQueueStore { return twoCalls{c} }, "StoreCommandReport",
			[]string{"StoreCommandReport"}},
		{"LookupFails", func(c *calls) storage.CommandQueueStore { return twoCalls{c} }, "RetrieveNextCommand",
			[]string{"StoreCommandReport", "RetrieveNextCommand"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &calls{failing: tc.failing}
			cmd, err := storage.StoreReportAndRetrieveNext(tc.store(c), &mdm.Request{}, &mdm.CommandResults{Status: mdm.StatusIdle})
			if tc.failing == "" && (err != nil || cmd == nil || cmd.CommandUUID != "next") {
				t.Fatalf("got %v, %v; want the next command", cmd, err)
			}
			if tc.failing != "" && (!errors.Is(err, errBackend) || cmd != nil) {
				t.Fatalf("got %v, %v; want no command and the backend's error", cmd, err)
			}
			if len(c.log) != len(tc.want) {
				t.Fatalf("calls %v, want %v", c.log, tc.want)
			}
			for i := range c.log {
				if c.log[i] != tc.want[i] {
					t.Fatalf("calls %v, want %v", c.log, tc.want)
				}
			}
		})
	}
}
