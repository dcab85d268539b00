package device_test

import (
	"context"
	"errors"
	"github.com/picomdm/picomdm/test/logtest"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/picomdm/picomdm/mdm"
	"github.com/picomdm/picomdm/test/device"
)

func TestFleetRun(t *testing.T) {
	ca := newCA(t)
	srv, ts := newFakeServer(t, ca)
	fleet, err := device.NewFleet(ca, ts.URL+"/mdm", 3, device.WithKeyType(device.ECDSAP256))
	if err != nil {
		t.Fatal(err)
	}
	fleet.Concurrency = 2
	fleet.Answer = device.Answer(mdm.StatusNotNow)
	var out logtest.Buffer
	fleet.PrintTo(&out, true)
	var wantLines []string
	for _, d := range fleet.Devices {
		uuid, _ := srv.enqueue(d.ID(), "DeviceInformation")
		wantLines = append(wantLines, d.ID()+" "+uuid+" DeviceInformation")
	}
	if err := fleet.Run(t.Context(), 0); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(out.String(), "\n")
	for i, d := range fleet.Devices {
		if lines[i] != d.ID() {
			t.Errorf("line %d = %q, want enrollment ID %q", i, lines[i], d.ID())
		}
	}
	for _, want := range wantLines {
		if !strings.Contains(out.String(), want+"\n<?xml") {
			t.Errorf("output lacks %q followed by the raw plist:\n%s", want, out.String())
		}
	}
	notNow := 0
	for _, r := range srv.recorded() {
		if r.Report != nil && r.Report.Status == mdm.StatusNotNow {
			notNow++
		}
	}
	if notNow != 3 {
		t.Errorf("server got %d NotNow reports, want 3", notNow)
	}
}

func TestFleetWatch(t *testing.T) {
	ca := newCA(t)
	srv, ts := newFakeServer(t, ca)
	fleet, err := device.NewFleet(ca, ts.URL+"/mdm", 2, device.WithKeyType(device.ECDSAP256))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 400*time.Millisecond)
	defer cancel()
	if err := fleet.Run(ctx, 50*time.Millisecond); err != nil {
		t.Fatalf("Run until interrupted: %v", err)
	}
	idles := map[string]int{}
	for _, r := range srv.recorded() {
		if r.Report != nil {
			idles[r.ID.ID]++
		}
	}
	for _, d := range fleet.Devices {
		if idles[d.ID()] < 2 {
			t.Errorf("%s polled %d times, want several", d.ID(), idles[d.ID()])
		}
	}
}

func TestFleetError(t *testing.T) {
	ca := newCA(t)
	srv, ts := newFakeServer(t, ca)
	srv.status = http.StatusInternalServerError
	fleet, err := device.NewFleet(ca, ts.URL+"/mdm", 4, device.WithKeyType(device.ECDSAP256))
	if err != nil {
		t.Fatal(err)
	}
	err = fleet.Run(t.Context(), time.Second)
	var se *device.StatusError
	if !errors.As(err, &se) || se.Code != http.StatusInternalServerError {
		t.Fatalf("Run against a failing server: %v, want a 500 StatusError", err)
	}
	if !strings.Contains(err.Error(), "Authenticate") || !strings.Contains(err.Error(), "500") {
		t.Errorf("error %q should name the message and the status", err)
	}
}
