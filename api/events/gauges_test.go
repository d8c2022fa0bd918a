package events

import (
	"fmt"
	"testing"
	"time"

	"github.com/uber-go/tally/v4"

	"github.com/mhannotator/mha/internal/contract"
)

// The run gauges follow the hub's runs: by status (a status no run has any more reads 0) and
// each run's target.
func TestRunGaugesFollowTheRuns(t *testing.T) {
	e := newEnv(t)
	e.tc.set("annotation-1-urgency", contract.StatusRunning, time.Now())
	e.tc.set("annotation-1-therapeutic", contract.StatusPaused, time.Now())
	scope := tally.NewTestScope("", nil)
	h := e.hub(func(o *Options) { o.Scope = scope }, nil)
	defer h.stop()
	gauge := func(name string, tags string) (float64, bool) {
		g, ok := scope.Snapshot().Gauges()[name+"+"+tags]
		if !ok {
			return 0, false
		}
		return g.Value(), true
	}
	waitUntil := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("%s: gauges %v", what, fmt.Sprint(scope.Snapshot().Gauges()))
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitUntil("running 1, paused 1", func() bool {
		r, _ := gauge("mha_runs", "status=running")
		p, _ := gauge("mha_runs", "status=paused")
		return r == 1 && p == 1
	})
	if v, ok := gauge("mha_run_target", "annotator=1,domain=urgency"); !ok || v != 10 {
		t.Errorf("mha_run_target of annotation-1-urgency = %v (%v); want 10", v, ok)
	}
	e.tc.set("annotation-1-therapeutic", contract.StatusRunning, time.Now())
	h.Refresh()
	waitUntil("running 2, paused 0", func() bool {
		r, _ := gauge("mha_runs", "status=running")
		p, ok := gauge("mha_runs", "status=paused")
		return r == 2 && ok && p == 0
	})
}
