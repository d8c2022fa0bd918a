package events

import (
	"context"
	"time"
)

// gaugeEvery is how often the run gauges follow the hub's view of the runs.
const gaugeEvery = 2 * time.Second

// gaugeLoop keeps the run gauges on the api's /metrics: mha_runs by status (a status no run
// has any more reads 0 rather than vanishing) and each run's done and target counts. The
// labels are the config's annotators and domains, a bounded set.
func (h *Hub) gaugeLoop(ctx context.Context) {
	t := time.NewTicker(gaugeEvery)
	defer t.Stop()
	seen := map[string]bool{}
	for {
		h.setGauges(seen)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (h *Hub) setGauges(seen map[string]bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	byStatus := map[string]int{}
	for _, id := range h.order {
		r := h.runs[id]
		byStatus[r.doc.Status]++
		seen[r.doc.Status] = true
		target := r.doc.Target
		if r.doc.DatasetSize > 0 {
			target = min(target, r.doc.DatasetSize)
		}
		run := h.o.Scope.Tagged(map[string]string{"annotator": r.pair.Annotator, "domain": string(r.pair.Domain)})
		run.Gauge("mha_run_done").Update(float64(r.doc.Completed))
		run.Gauge("mha_run_target").Update(float64(target))
	}
	for status := range seen {
		h.o.Scope.Tagged(map[string]string{"status": status}).Gauge("mha_runs").Update(float64(byStatus[status]))
	}
}
