package e2e

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"

	"github.com/mhannotator/mha/internal/contract"
	"github.com/mhannotator/mha/internal/labels"
	"github.com/mhannotator/mha/internal/llm/fake"
	"github.com/mhannotator/mha/internal/runs"
)

func TestTheSameBadRequestOnEverySampleFailsTheRunAndRedoFixesTheRows(t *testing.T) {
	f := startFake(t, fake.Options{Keys: map[string]fake.Key{"key-e": {}}})
	s := newStackWith(t, netGlobal(f.URL(), nil), map[string]map[labels.Domain]int{"e1": {labels.Urgency: 30}}, 30, nil, map[string]string{"e1": "key-e"})
	p := runs.Pair{Annotator: "e1", Domain: labels.Urgency}
	f.Inject(fake.Fault{Kind: fake.BadRequest}) // the request is wrong for this model, whatever the sample
	s.startWorker()
	s.startAll()
	st := s.waitStatus(p, contract.StatusFailed, time.Minute)
	if !strings.Contains(st.LastError, "5 samples in a row") || !strings.Contains(st.LastError, "Thinking budget") {
		t.Fatalf("failed status says %q; want the repeated error and its cause", st.LastError)
	}
	if st.Errors != 5 || s.stored(p) != 5 || f.Stats().ByKey["key-e"].Requests != 5 {
		t.Fatalf("status %+v, store %d, requests %d; want the 5 error rows kept and no more calls", st, s.stored(p), f.Stats().ByKey["key-e"].Requests)
	}
	// The request is fixed; redo asks again for the rows that failed, and the run goes on.
	f.ClearFaults()
	out, code := s.starter("redo", "--status", "error", "--annotator", "e1", "--domain", "urgency")
	if code != 0 {
		t.Fatalf("redo exited %d: %s", code, out)
	}
	st = s.waitStatus(p, contract.StatusCompleted, time.Minute)
	if st.OK != 30 || st.Errors != 0 || s.stored(p) != 30 {
		t.Fatalf("after redo: status %+v, store %d; want 30 ok and no error rows", st, s.stored(p))
	}
	replay(t, p.ID())
}

func TestThirtyRunsOnASmallPoolWithAShortRequestTimeoutCompleteWithoutATimeout(t *testing.T) {
	t.Parallel()
	f := startFake(t, fake.Options{Keys: map[string]fake.Key{"key-m": {RPM: 15}}, Latency: 100 * time.Millisecond})
	spec := map[string]map[labels.Domain]int{}
	extra := map[string]map[string]any{}
	keys := map[string]string{}
	var pairs []runs.Pair
	for a := range 5 {
		id := fmt.Sprintf("m%d", a)
		spec[id], extra[id], keys[id] = map[labels.Domain]int{}, map[string]any{"quota_pool": "small"}, "key-m"
		for _, d := range labels.Domains {
			spec[id][d] = 1
			pairs = append(pairs, runs.Pair{Annotator: id, Domain: d})
		}
	}
	s := newStackWith(t, netGlobal(f.URL(), map[string]any{"requests_per_minute": 15, "request_timeout_seconds": 1,
		"heartbeat_timeout_seconds": 3, "max_restart_attempts": 1, "max_concurrent_activities": 10}), spec, 1, extra, keys)
	s.startWorker()
	s.startAll()
	for _, p := range pairs {
		s.waitStatus(p, contract.StatusCompleted, 4*time.Minute)
	}
	for _, p := range pairs {
		ev := events(t, p.ID())
		if n := ev[enumspb.EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT] + ev[enumspb.EVENT_TYPE_ACTIVITY_TASK_FAILED]; n != 0 {
			t.Fatalf("%s: %d batches timed out or failed; quota waits must not count against a batch", p.ID(), n)
		}
	}
	if st := f.Stats().ByKey["key-m"]; st.RateLimited != 0 || st.Accepted != 30 {
		t.Fatalf("fake accepted %d, 429s %d; want 30 and none", st.Accepted, st.RateLimited)
	}
}

func TestASlowPoolLeavesAFastPoolItsSpeed(t *testing.T) {
	// Not parallel: it compares two speeds, and the tests that run in parallel share the
	// machine's two cores unevenly between its two measurements.
	// As many samples as the fast pool's minute allows (600), and the speed measured from the
	// fast key's first call to its last: the start of the runs, whose few hundred ms vary with
	// whatever else the machine runs, is not the pools' doing.
	const fastSamples = 550
	run := func(withSlow bool) time.Duration {
		// Each phase has annotators (and so quota pools) of its own: the first phase's
		// pools still hold the slots they granted in the last minute.
		phase := map[bool]string{false: "alone", true: "shared"}[withSlow]
		fast := "fast-" + phase
		f := startFake(t, fake.Options{Keys: map[string]fake.Key{"slow-key": {RPM: 6}, "fast-key": {}}, Latency: 20 * time.Millisecond})
		spec := map[string]map[labels.Domain]int{fast: {labels.Urgency: fastSamples}}
		extra := map[string]map[string]any{fast: {"requests_per_minute": 600}}
		keys := map[string]string{fast: "fast-key"}
		if withSlow {
			for a := range 2 {
				id := fmt.Sprintf("slow%d", a)
				spec[id], extra[id], keys[id] = map[labels.Domain]int{}, map[string]any{"quota_pool": "slow-" + phase, "requests_per_minute": 6}, "slow-key"
				for _, d := range labels.Domains {
					spec[id][d] = 20
				}
			}
		}
		s := newStackWith(t, netGlobal(f.URL(), map[string]any{"max_concurrent_activities": 4, "heartbeat_timeout_seconds": 10,
			"request_timeout_seconds": 5}), spec, fastSamples, extra, keys)
		s.startWorker()
		if withSlow {
			// The slow runs go first and queue for their pool.
			if out, code := s.starter("start", "--annotator", "slow0"); code != 0 {
				t.Fatalf("start exited %d: %s", code, out)
			}
			if out, code := s.starter("start", "--annotator", "slow1"); code != 0 {
				t.Fatalf("start exited %d: %s", code, out)
			}
			waitFor(t, time.Minute, "the slow pool's first calls", func() (bool, string) {
				n := f.Stats().ByKey["slow-key"].Accepted
				return n >= 2, fmt.Sprint(n)
			})
		}
		if out, code := s.starter("start", "--annotator", fast); code != 0 {
			t.Fatalf("start exited %d: %s", code, out)
		}
		s.waitStatus(runs.Pair{Annotator: fast, Domain: labels.Urgency}, contract.StatusCompleted, 2*time.Minute)
		if withSlow {
			if st := f.Stats().ByKey["slow-key"]; st.RateLimited != 0 {
				t.Fatalf("the slow key got %d 429s", st.RateLimited)
			}
		}
		calls := f.Stats().ByKey["fast-key"].AcceptedAt
		if len(calls) < fastSamples {
			t.Fatalf("the fast key took %d calls; want at least %d", len(calls), fastSamples)
		}
		return slices.MaxFunc(calls, time.Time.Compare).Sub(slices.MinFunc(calls, time.Time.Compare))
	}
	alone := run(false)
	shared := run(true)
	ratio := alone.Seconds() / shared.Seconds()
	t.Logf("fast pool: %d samples alone in %s, beside 12 runs of a 6/min pool in %s: %.2f of its speed alone",
		fastSamples, alone.Round(time.Millisecond), shared.Round(time.Millisecond), ratio)
	if ratio < 0.9 {
		t.Fatalf("the fast pool ran at %.2f of its speed alone beside a slow pool; want at least 0.9", ratio)
	}
}
