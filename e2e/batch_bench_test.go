package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/mhannotator/mha/internal/contract"
	"github.com/mhannotator/mha/internal/labels"
	"github.com/mhannotator/mha/internal/llm/fake"
	"github.com/mhannotator/mha/internal/runs"
)

// BenchmarkBatchMode is the batch-mode figure: one annotator labels a dataset of 1 871 samples
// in all six domains through the fake's Gemini batch API with a turnaround of
// MHA_BENCH_BATCH_TURNAROUND (default 30 s), chunks of 500, two at the provider per run. It
// reports the wall time against the turnaround, workflow history events, provider calls
// (submits, polls, downloads) per chunk, and how long activities held worker slots: submits,
// polls and collects only, nothing while a batch waits.
func BenchmarkBatchMode(b *testing.B) {
	turnaround := envDuration(b, "MHA_BENCH_BATCH_TURNAROUND", 30*time.Second)
	const n = 1871
	f, err := fake.Start(fake.Options{Keys: map[string]fake.Key{"key-bench": {}}, BatchTurnaround: turnaround})
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	spec := map[string]map[labels.Domain]int{"bb": {}}
	var pairs []runs.Pair
	for _, d := range labels.Domains {
		spec["bb"][d] = n
		pairs = append(pairs, runs.Pair{Annotator: "bb", Domain: d})
	}
	global := netGlobal(f.URL(), map[string]any{"batch_chunk_size": 500, "batch_max_chunks": 2, "heartbeat_timeout_seconds": 30, "request_timeout_seconds": 20})
	s := newStackWith(b, global, spec, n, map[string]map[string]any{"bb": {"mode": "batch"}}, map[string]string{"bb": "key-bench"})
	s.startWorker()
	for range b.N {
		began := time.Now()
		s.startAll()
		for _, p := range pairs {
			if st := s.waitStatus(p, contract.StatusCompleted, 30*time.Minute); st.Completed != n {
				b.Fatalf("%s: %+v", p.ID(), st)
			}
		}
		wall := time.Since(began)
		st := f.Stats()
		events, held := 0, time.Duration(0)
		for _, p := range pairs {
			events += s.historyLength(p.ID())
			held += s.activityTime(p.ID())
		}
		chunks := float64(st.BatchSubmits)
		settings := fmt.Sprintf("1 annotator × 6 domains × %d samples, fake Gemini batch API, turnaround %s, chunks of 500, 2 per run", n, turnaround)
		record(figure{ID: "batch", Measure: "wall time ÷ the provider's turnaround", Value: wall.Seconds() / turnaround.Seconds(), Settings: settings})
		record(figure{ID: "batch", Measure: "history events per chunk", Value: float64(events) / chunks, Settings: settings})
		record(figure{ID: "batch", Measure: "duplicate submissions", Value: float64(st.BatchDuplicates), Goal: "0", Met: met(st.BatchDuplicates == 0), Settings: settings})
		b.ReportMetric(wall.Seconds(), "wall-s")
		b.ReportMetric(wall.Seconds()/turnaround.Seconds(), "wall/turnaround")
		b.ReportMetric(float64(events)/chunks, "events/chunk")
		b.ReportMetric(float64(st.BatchPolls)/chunks, "polls/chunk")
		b.ReportMetric(held.Seconds(), "activity-s")
		var t strings.Builder
		fmt.Fprintf(&t, "\nBatch mode: 1 annotator × 6 domains × %d samples, fake Gemini batch API, turnaround %s, chunks of 500, 2 per run at once\n\n", n, turnaround)
		creates := st.BatchSubmits + st.BatchRateLimited + st.BatchRejected
		calls := creates + st.BatchLists + st.BatchPolls + st.BatchFetches + st.FileUploads
		fmt.Fprintln(&t, "| wall time | wall / turnaround | chunks | lines | provider calls per chunk | of which creates / listings / polls / downloads | history events per chunk | activity time, all slots | duplicates |")
		fmt.Fprintln(&t, "| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
		fmt.Fprintf(&t, "| %s | %.2f | %d | %d | %.1f | %.2f / %.2f / %.1f / %.2f | %.1f | %s | %d |\n", wall.Round(100*time.Millisecond), wall.Seconds()/turnaround.Seconds(),
			st.BatchSubmits, st.BatchLines, float64(calls)/chunks, float64(creates)/chunks, float64(st.BatchLists)/chunks, float64(st.BatchPolls)/chunks,
			float64(st.BatchFetches)/chunks, float64(events)/chunks, held.Round(time.Millisecond), st.BatchDuplicates)
		b.Log(t.String())
	}
}

// activityTime sums how long the activities of workflow id's history ran, from started to
// closed: the worker slot time the run took.
func (s *stack) activityTime(id string) time.Duration {
	s.t.Helper()
	it := s.ctl.Client.GetWorkflowHistory(s.t.Context(), id, "", false, 0)
	started := map[int64]time.Time{}
	var total time.Duration
	for it.HasNext() {
		ev, err := it.Next()
		if err != nil {
			s.t.Fatal(err)
		}
		switch {
		case ev.GetActivityTaskStartedEventAttributes() != nil:
			started[ev.GetActivityTaskStartedEventAttributes().ScheduledEventId] = ev.EventTime.AsTime()
		case ev.GetActivityTaskCompletedEventAttributes() != nil:
			total += ev.EventTime.AsTime().Sub(started[ev.GetActivityTaskCompletedEventAttributes().ScheduledEventId])
		}
	}
	return total
}
