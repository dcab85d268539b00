package metrics

import (
	"errors"
	"testing"
	"time"

	"github.com/picomdm/picomdm/push"
)

func TestRepushMetrics(t *testing.T) {
	reg := New("dev", WithoutRuntimeMetrics())
	m := reg.RegisterRepush()
	if got := value(t, reg, "picomdm_repush_rounds_total", "result", RepushRoundError); got != 0 {
		t.Fatalf("error rounds before any: %v", got)
	}
	m.ObserveRepushRound(10*time.Millisecond, 7, nil)
	m.ObserveRepushRound(time.Millisecond, 3, errors.New("storage down"))
	m.ObserveRepush(nil)
	m.ObserveRepush(nil)
	m.ObserveRepush(refused("Unregistered"))
	m.ObserveRepush(push.ErrNoPushInfo)
	for _, tc := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"picomdm_repush_rounds_total", []string{"result", RepushRoundOK}, 1},
		{"picomdm_repush_rounds_total", []string{"result", RepushRoundError}, 1},
		{"picomdm_repush_round_duration_seconds", nil, 2},
		{"picomdm_repush_due", nil, 3}, // the last round's
		{"picomdm_repush_pushes_total", []string{"result", PushSuccess}, 2},
		{"picomdm_repush_pushes_total", []string{"result", "Unregistered"}, 1},
		{"picomdm_repush_pushes_total", []string{"result", PushNoPushInfo}, 1},
	} {
		if got := value(t, reg, tc.name, tc.labels...); got != tc.want {
			t.Errorf("%s%v = %v, want %v", tc.name, tc.labels, got, tc.want)
		}
	}
}
