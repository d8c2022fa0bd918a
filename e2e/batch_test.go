package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/mhannotator/mha/internal/contract"
	"github.com/mhannotator/mha/internal/labels"
	"github.com/mhannotator/mha/internal/llm/fake"
	"github.com/mhannotator/mha/internal/runs"
	"github.com/mhannotator/mha/internal/store"
)

// stored reads p's annotations by sample.
func (s *stack) annotationsOf(p runs.Pair) map[string]store.Annotation {
	s.t.Helper()
	out := map[string]store.Annotation{}
	err := s.store.Export(context.Background(), store.Filter{Annotator: p.Annotator, Domain: string(p.Domain)}, func(r store.ExportRow) error {
		out[r.SampleID] = r.Annotation
		return nil
	})
	if err != nil {
		s.t.Fatal(err)
	}
	return out
}

// TestBatchModeStoresWhatSyncStores runs, for each provider's batch API, one annotator in batch
// mode and one synchronously on the same samples against the fake: the stored labels, statuses
// and prompt hashes are the same, every chunk is submitted once though the fake loses the reply
// to the first submit (the retry adopts the batch), and waiting costs polls, not worker slots.
func TestBatchModeStoresWhatSyncStores(t *testing.T) {
	t.Parallel()
	for _, provider := range []string{"gemini", "openai"} {
		t.Run(provider, func(t *testing.T) {
			t.Parallel()
			f := startFake(t, fake.Options{Keys: map[string]fake.Key{"key-sync": {}, "key-batch": {}}, BatchTurnaround: 2 * time.Second})
			f.InjectBatch(fake.BatchFault{Kind: fake.BatchLostReply})
			const n = 30
			sync, batch := "sy"+provider[:2], "ba"+provider[:2]
			global := netGlobal(f.URL(), map[string]any{"provider": provider, "model_name": provider + "-batch-test", "batch_chunk_size": 12, "batch_max_chunks": 2})
			s := newStackWith(t, global, map[string]map[labels.Domain]int{sync: {labels.Therapeutic: n}, batch: {labels.Therapeutic: n}}, n,
				map[string]map[string]any{batch: {"mode": "batch"}}, map[string]string{sync: "key-sync", batch: "key-batch"})
			ps, pb := runs.Pair{Annotator: sync, Domain: labels.Therapeutic}, runs.Pair{Annotator: batch, Domain: labels.Therapeutic}
			s.startWorker()
			s.runToCompletion(ps, pb)

			want, got := s.annotationsOf(ps), s.annotationsOf(pb)
			if len(got) != n || len(want) != n {
				t.Fatalf("stored %d in batch mode, %d synchronously; want %d each", len(got), len(want), n)
			}
			for id, w := range want {
				g := got[id]
				if g.Label != w.Label || g.Status != w.Status || g.PromptHash != w.PromptHash || g.RawReply != w.RawReply {
					t.Errorf("%s: batch stored %q/%s/%s, sync %q/%s/%s", id, g.Label, g.Status, g.PromptHash, w.Label, w.Status, w.PromptHash)
				}
				if g.InputTokens == 0 || g.OutputTokens == 0 {
					t.Errorf("%s: batch stored no tokens (%d in, %d out)", id, g.InputTokens, g.OutputTokens)
				}
			}
			st := f.Stats()
			// 30 samples in chunks of 12: 3 batches, plus the one made before its reply was lost,
			// which the retried submit adopted rather than paying for again.
			if st.BatchSubmits != 3 || st.BatchDuplicates != 0 || st.BatchLines != n {
				t.Errorf("fake: %d batches made, %d duplicate names, %d lines; want 3, 0 and %d", st.BatchSubmits, st.BatchDuplicates, st.BatchLines, n)
			}
			status := s.status(pb)
			if status.Mode != contract.ModeBatch || status.Batch == nil || status.Batch.ByState["done_succeeded"] != 3 {
				t.Errorf("batch run status %+v %+v; want three chunks done", status, status.Batch)
			}
			// Synchronous prompts share their template: later calls find it in the cache.
			cached := 0
			for _, w := range want {
				cached += w.CachedTokens
			}
			if cached == 0 {
				t.Error("no cached input tokens stored for the synchronous run")
			}
			events := s.historyLength(pb.ID())
			t.Logf("%s: %d chunks, %d polls, %d result fetches, %d history events (%.1f per chunk)", provider, st.BatchSubmits, st.BatchPolls,
				st.BatchFetches, events, float64(events)/float64(st.BatchSubmits))
		})
	}
}

// historyLength is the number of events in the history of workflow id's current run.
func (s *stack) historyLength(id string) int {
	s.t.Helper()
	d, err := s.ctl.Client.DescribeWorkflowExecution(context.Background(), id, "")
	if err != nil {
		s.t.Fatal(err)
	}
	return int(d.WorkflowExecutionInfo.HistoryLength)
}

// TestBatchModePauseAndStop: a pause submits no new chunk while the chunks out are still
// collected; a stop cancels what is at the provider and ends the run stopped with what came
// back stored.
func TestBatchModePauseAndStop(t *testing.T) {
	t.Parallel()
	f := startFake(t, fake.Options{Keys: map[string]fake.Key{"key-ps": {}}, BatchTurnaround: 6 * time.Second})
	const n = 40
	global := netGlobal(f.URL(), map[string]any{"batch_chunk_size": 10, "batch_max_chunks": 1})
	s := newStackWith(t, global, map[string]map[labels.Domain]int{"bps": {labels.Urgency: n}}, n,
		map[string]map[string]any{"bps": {"mode": "batch"}}, map[string]string{"bps": "key-ps"})
	p := runs.Pair{Annotator: "bps", Domain: labels.Urgency}
	s.startWorker()
	s.startAll()
	waitFor(t, 20*time.Second, "the first chunk at the provider", func() (bool, string) {
		st := f.Stats()
		return st.BatchSubmits == 1, fmt.Sprint(st.BatchSubmits, " batches")
	})
	if out, code := s.starter("pause", "--all"); code != 0 {
		t.Fatalf("pause exited %d: %s", code, out)
	}
	// The chunk out is collected while paused; no second one is submitted.
	waitFor(t, 30*time.Second, "the first chunk collected while paused", func() (bool, string) {
		n := s.stored(p)
		return n == 10, fmt.Sprint(n, " stored")
	})
	if st := s.status(p); st.Status != contract.StatusPaused || f.Stats().BatchSubmits != 1 {
		t.Fatalf("after collecting while paused: %s with %d batches; want paused with 1", st.Status, f.Stats().BatchSubmits)
	}
	if out, code := s.starter("resume", "--all"); code != 0 {
		t.Fatalf("resume exited %d: %s", code, out)
	}
	waitFor(t, 20*time.Second, "the second chunk at the provider", func() (bool, string) {
		st := f.Stats()
		return st.BatchSubmits == 2, fmt.Sprint(st.BatchSubmits, " batches")
	})
	if out, code := s.starter("stop", "--all"); code != 0 {
		t.Fatalf("stop exited %d: %s", code, out)
	}
	st := s.waitStatus(p, contract.StatusStopped, 30*time.Second)
	if f.Stats().BatchCancels != 1 || f.Stats().BatchSubmits != 2 {
		t.Errorf("fake saw %d cancels and %d batches; want 1 and 2", f.Stats().BatchCancels, f.Stats().BatchSubmits)
	}
	if got := s.stored(p); got < 10 || got >= 20 || st.Completed != got {
		t.Errorf("stored %d (status says %d); want the first chunk and what the cancelled one answered, fewer than 20", got, st.Completed)
	}
	replay(t, p.ID())
}

// TestBatchSubmitSurvivesAWorkerKilledMidSubmit kills the worker while the provider has made a
// chunk's batch but not yet answered the submit: the next worker's retry finds the batch by its
// name and adopts it, so nothing is submitted twice.
func TestBatchSubmitSurvivesAWorkerKilledMidSubmit(t *testing.T) {
	t.Parallel()
	f := startFake(t, fake.Options{Keys: map[string]fake.Key{"key-kill": {}}, BatchTurnaround: time.Second})
	f.InjectBatch(fake.BatchFault{Kind: fake.BatchHangingReply, Times: 1})
	const n = 20
	global := netGlobal(f.URL(), map[string]any{"batch_chunk_size": 10, "batch_max_chunks": 1})
	s := newStackWith(t, global, map[string]map[labels.Domain]int{"bk": {labels.Modality: n}}, n,
		map[string]map[string]any{"bk": {"mode": "batch"}}, map[string]string{"bk": "key-kill"})
	p := runs.Pair{Annotator: "bk", Domain: labels.Modality}
	w := s.startWorker()
	s.startAll()
	waitFor(t, 20*time.Second, "the provider to make the first batch", func() (bool, string) {
		st := f.Stats()
		return st.BatchSubmits == 1, fmt.Sprint(st.BatchSubmits, " batches")
	})
	if err := w.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_, _ = w.Process.Wait()
	s.startWorker()
	st := s.waitStatus(p, contract.StatusCompleted, time.Minute)
	fs := f.Stats()
	if st.Completed != n || s.stored(p) != n || fs.BatchSubmits != 2 || fs.BatchDuplicates != 0 || fs.BatchLines != n {
		t.Fatalf("status %+v, stored %d; fake made %d batches (%d duplicate names, %d lines); want %d stored from 2 batches, no duplicate",
			st, s.stored(p), fs.BatchSubmits, fs.BatchDuplicates, fs.BatchLines, n)
	}
}

// TestBatchLimitsOfASharedPool runs two batch-mode annotators whose keys share one quota pool
// that allows one batch at the provider at once, as the fake's key does: the pool admits one
// chunk at a time, so the provider never refuses one, and both runs complete.
func TestBatchLimitsOfASharedPool(t *testing.T) {
	t.Parallel()
	f := startFake(t, fake.Options{Keys: map[string]fake.Key{"key-pool": {MaxBatches: 1}}, BatchTurnaround: time.Second})
	const n = 20
	global := netGlobal(f.URL(), map[string]any{"batch_chunk_size": 10, "batch_max_chunks": 2, "batch_max_jobs": 1})
	pool := map[string]any{"mode": "batch", "quota_pool": "shared-batch-pool"}
	s := newStackWith(t, global, map[string]map[labels.Domain]int{"bp1": {labels.Adjunct: n}, "bp2": {labels.Adjunct: n}}, n,
		map[string]map[string]any{"bp1": pool, "bp2": pool}, map[string]string{"bp1": "key-pool", "bp2": "key-pool"})
	s.startWorker()
	s.runToCompletion(runs.Pair{Annotator: "bp1", Domain: labels.Adjunct}, runs.Pair{Annotator: "bp2", Domain: labels.Adjunct})
	if st := f.Stats(); st.BatchSubmits != 4 || st.BatchRateLimited != 0 || st.BatchDuplicates != 0 {
		t.Fatalf("fake: %d batches, %d refused for the key's limit, %d duplicates; want 4, 0, 0", st.BatchSubmits, st.BatchRateLimited, st.BatchDuplicates)
	}
	replay(t, contract.QuotaID("shared-batch-pool"))
}
