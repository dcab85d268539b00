package load

import (
	"testing"
	"time"
)

func TestTrackCheck(t *testing.T) {
	for _, tc := range []struct {
		name               string
		expected, received []string
		want               counts
	}{
		{"in order", []string{"a", "b", "c"}, []string{"a", "b", "c"}, counts{delivered: 3}},
		{"lost", []string{"a", "b", "c"}, []string{"a", "c"}, counts{delivered: 2, lost: 1, outOfOrder: 1}},
		{"duplicated", []string{"a", "b"}, []string{"a", "a", "b"}, counts{delivered: 2, duplicated: 1}},
		{"swapped", []string{"a", "b", "c"}, []string{"b", "a", "c"}, counts{delivered: 3, outOfOrder: 1}},
		{"unexpected", []string{"a"}, []string{"x", "a"}, counts{delivered: 1, unexpected: 1}},
		{"nothing", []string{"a", "b"}, nil, counts{lost: 2}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr := track{expected: tc.expected, received: tc.received}
			if got := tr.check(); got != tc.want {
				t.Errorf("check() = %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestFirstPending(t *testing.T) {
	tr := track{expected: []string{"a", "b", "c"}, received: []string{"a", "c"}}
	if got := tr.firstPending(); got != "b" {
		t.Errorf("firstPending = %q, want b", got)
	}
	tr.received = append(tr.received, "b")
	if got := tr.firstPending(); got != "" {
		t.Errorf("firstPending = %q, want none", got)
	}
}

func TestPercentiles(t *testing.T) {
	var l latencies
	if _, _, _, ok := l.percentiles(); ok {
		t.Error("percentiles of nothing")
	}
	for i := 100; i >= 1; i-- {
		l.add(time.Duration(i) * time.Millisecond)
	}
	p50, p99, maximum, _ := l.percentiles()
	if p50 != 50*time.Millisecond || p99 != 99*time.Millisecond || maximum != 100*time.Millisecond {
		t.Errorf("p50 %v p99 %v max %v, want 50ms 99ms 100ms", p50, p99, maximum)
	}
}

func TestReportCorrect(t *testing.T) {
	var r Report
	if r.Correct() {
		t.Error("a report without counters is correct")
	}
	for _, name := range []string{"commands_lost", "commands_duplicated", "commands_out_of_order", "commands_unexpected"} {
		r.add(name, 0, "commands")
	}
	if !r.Correct() {
		t.Error("zero counters are not correct")
	}
	r.Results[1].Value = 1
	if r.Correct() {
		t.Error("a duplicated command is correct")
	}
}
