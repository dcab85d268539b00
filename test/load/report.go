package load

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"time"
)

// Result is one measured figure.
type Result struct {
	// Name is a snake_case name such as "enroll_pairs_per_s".
	Name string `json:"name"`
	// Value is the figure.
	Value float64 `json:"value"`
	// Unit is its unit, such as "pairs/s", "ms" or "commands".
	Unit string `json:"unit"`
}

// Report is what a run measured, in the order it was measured.
type Report struct {
	Results []Result `json:"results"`
}

func (r *Report) add(name string, value float64, unit string) {
	r.Results = append(r.Results, Result{Name: name, Value: value, Unit: unit})
}

// addLatency adds name_p50_ms, name_p99_ms and name_max_ms from l.
func (r *Report) addLatency(name string, l *latencies) {
	p50, p99, maximum, ok := l.percentiles()
	if !ok {
		return
	}
	ms := func(d time.Duration) float64 { return float64(d) / 1e6 }
	r.add(name+"_p50", ms(p50), "ms")
	r.add(name+"_p99", ms(p99), "ms")
	r.add(name+"_max", ms(maximum), "ms")
}

// Get returns the result called name.
func (r *Report) Get(name string) (Result, bool) {
	for _, res := range r.Results {
		if res.Name == name {
			return res, true
		}
	}
	return Result{}, false
}

// Correct reports whether every correctness counter is 0 (and they were
// measured).
func (r *Report) Correct() bool {
	for _, name := range []string{"commands_lost", "commands_duplicated", "commands_out_of_order", "commands_unexpected"} {
		res, ok := r.Get(name)
		if !ok || res.Value != 0 {
			return false
		}
	}
	return true
}

// WriteText writes one "name value unit" line per result.
func (r *Report) WriteText(w io.Writer) error {
	for _, res := range r.Results {
		if _, err := fmt.Fprintf(w, "%s %s %s\n", res.Name, formatValue(res.Value), res.Unit); err != nil {
			return err
		}
	}
	return nil
}

// WriteJSON writes the report as one JSON object, {"results": [...]}.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// formatValue prints integers as such and other values with three
// significant decimals at most.
func formatValue(v float64) string {
	if v == float64(int64(v)) {
		return strconv.FormatInt(int64(v), 10)
	}
	return strconv.FormatFloat(v, 'f', 3, 64)
}
