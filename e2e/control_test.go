package e2e

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"

	"github.com/mhannotator/mha/internal/contract"
	"github.com/mhannotator/mha/internal/labels"
	"github.com/mhannotator/mha/internal/llm/fake"
	"github.com/mhannotator/mha/internal/runs"
)

// cli runs the temporal CLI against the test server, as a person at a terminal would.
func cli(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command(cliPath, append(args, "--address", server.FrontendHostPort(), "--namespace", "default")...).CombinedOutput()
	if err != nil {
		t.Fatalf("temporal %v: %v\n%s", args, err, out)
	}
	return string(out)
}

// events counts the events of each type in the latest run of workflow id.
func events(t *testing.T, id string) map[enumspb.EventType]int {
	t.Helper()
	n := map[enumspb.EventType]int{}
	for _, e := range history(t, id) {
		n[e.GetEventType()]++
	}
	return n
}

func TestBadTargetSignalsChangeNothingAndAStopStillWorks(t *testing.T) {
	// One call slot, so the run is still going when the signals arrive.
	s := newStack(t, map[string]any{"offline_latency_seconds": 0.1, "max_concurrent_activities": 1},
		map[string]map[labels.Domain]int{"t1": {labels.Urgency: 200}}, 200)
	p := runs.Pair{Annotator: "t1", Domain: labels.Urgency}
	s.startWorker()
	s.startAll()
	waitFor(t, time.Minute, "the first stored annotation", func() (bool, string) { n := s.stored(p); return n > 0, fmt.Sprint(n) })
	for _, input := range [][]string{nil, {"--input", `"forty"`}, {"--input", "-5"}, {"--input", `{"n": 3}`}} {
		cli(t, append([]string{"workflow", "signal", "-w", p.ID(), "--name", "target"}, input...)...)
	}
	st := s.status(p)
	if st.Target != 200 || st.Status != contract.StatusRunning {
		t.Fatalf("after bad target signals: %+v; want target 200 and running", st)
	}
	// The Update of the same name refuses the bad value and says why.
	out, err := exec.Command(cliPath, "workflow", "update", "execute", "-w", p.ID(), "--name", "target", "--input", `"forty"`,
		"--address", server.FrontendHostPort(), "--namespace", "default").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "not a whole number") {
		t.Fatalf("update target \"forty\": %v\n%s\nwant a refusal naming the reason", err, out)
	}
	cli(t, "workflow", "signal", "-w", p.ID(), "--name", "target", "--input", `"150"`)
	if st := s.status(p); st.Target != 150 {
		t.Fatalf("target \"150\" gave target %d, want 150", st.Target)
	}
	cli(t, "workflow", "signal", "-w", p.ID(), "--name", "stop")
	st = s.waitStatus(p, contract.StatusStopped, 15*time.Second)
	if st.Completed >= 150 || st.Completed != s.stored(p) {
		t.Fatalf("stopped status %+v, store %d; want stopped part way with matching counts", st, s.stored(p))
	}
	replay(t, p.ID())
}

func TestResumeThenPauseSentTogetherEndPaused(t *testing.T) {
	s := newStack(t, map[string]any{"offline_latency_seconds": 0.05, "max_concurrent_activities": 1},
		map[string]map[labels.Domain]int{"r1": {labels.Adjunct: 400}}, 400)
	p := runs.Pair{Annotator: "r1", Domain: labels.Adjunct}
	s.startWorker()
	s.startAll()
	ctx := context.Background()
	c := server.Client()
	for round := range 5 {
		if err := c.SignalWorkflow(ctx, p.ID(), "", contract.SignalPause, nil); err != nil {
			t.Fatal(err)
		}
		s.waitStatus(p, contract.StatusPaused, 15*time.Second)
		// Back to back: both usually arrive in one workflow task.
		if err := c.SignalWorkflow(ctx, p.ID(), "", contract.SignalResume, nil); err != nil {
			t.Fatal(err)
		}
		if err := c.SignalWorkflow(ctx, p.ID(), "", contract.SignalPause, nil); err != nil {
			t.Fatal(err)
		}
		// The last control sent wins: a status round trip later the run is paused, and stays so.
		st := s.waitStatus(p, contract.StatusPaused, 15*time.Second)
		before := s.stored(p)
		if after := s.status(p); after.Status != contract.StatusPaused || s.stored(p) != before {
			t.Fatalf("round %d: resume then pause left the run %s (store %d -> %d)", round, after.Status, before, s.stored(p))
		}
		if err := c.SignalWorkflow(ctx, p.ID(), "", contract.SignalResume, nil); err != nil {
			t.Fatal(err)
		}
		_ = st
	}
	if r, _ := s.ctl.Control(ctx, p, contract.SignalStop, nil); r.Outcome != runs.Stopped {
		t.Fatalf("stop answered %+v", r)
	}
	replay(t, p.ID())
}

// TestPauseThenResumeSentTogetherGoesOn: a resume that arrives before the batch the pause
// cancelled has ended leaves the run running, not failed; its history is the recorded one of
// that path (workflows/testdata/core_v2_pause_then_resume.json).
func TestPauseThenResumeSentTogetherGoesOn(t *testing.T) {
	s := newStack(t, map[string]any{"offline_latency_seconds": 0.05, "max_concurrent_activities": 1},
		map[string]map[labels.Domain]int{"pr": {labels.Urgency: 60}}, 60)
	p := runs.Pair{Annotator: "pr", Domain: labels.Urgency}
	s.startWorker()
	s.startAll()
	waitFor(t, 30*time.Second, "a few stored annotations", func() (bool, string) { n := s.stored(p); return n >= 5, fmt.Sprint(n) })
	ctx := context.Background()
	for _, name := range []string{contract.SignalPause, contract.SignalResume} {
		if err := server.Client().SignalWorkflow(ctx, p.ID(), "", name, nil); err != nil {
			t.Fatal(err)
		}
	}
	st := s.waitStatus(p, contract.StatusCompleted, time.Minute)
	if st.Completed != 60 || st.LastError != "" || s.stored(p) != 60 {
		t.Fatalf("status %+v, store %d; want all 60 and no error", st, s.stored(p))
	}
	marked := false
	for _, e := range history(t, p.ID()) {
		marked = marked || strings.Contains(e.GetMarkerRecordedEventAttributes().String(), "cancelled-batch-not-failed")
	}
	if !marked {
		t.Fatal("the cancelled batch ended after the resume without the run taking the versioned path; the signals arrived too far apart")
	}
	replay(t, p.ID())
}

func TestPauseWhileRunsWaitForQuotaStartsNoNewCall(t *testing.T) {
	t.Parallel()
	f := startFake(t, fake.Options{Keys: map[string]fake.Key{"key-w": {}}, Latency: 50 * time.Millisecond})
	spec := map[string]map[labels.Domain]int{"w1": {labels.Urgency: 10, labels.Intensity: 10, labels.Adjunct: 10, labels.Modality: 10}}
	s := newStackWith(t, netGlobal(f.URL(), map[string]any{"requests_per_minute": 6, "heartbeat_timeout_seconds": 10, "request_timeout_seconds": 5}),
		spec, 10, nil, map[string]string{"w1": "key-w"})
	s.startWorker()
	s.startAll()
	waitFor(t, time.Minute, "3 calls", func() (bool, string) { n := f.Stats().ByKey["key-w"].Accepted; return n >= 3, fmt.Sprint(n) })
	// Every run now waits for a slot (6 a minute for 4 runs): the pause must end those waits.
	if out, code := s.starter("pause", "--annotator", "w1"); code != 0 {
		for d := range spec["w1"] {
			t.Log(cli(t, "workflow", "describe", "-w", runs.Pair{Annotator: "w1", Domain: d}.ID()))
			t.Log(cli(t, "workflow", "show", "-w", runs.Pair{Annotator: "w1", Domain: d}.ID()))
		}
		t.Log(cli(t, "workflow", "show", "-w", "quota-annotator-w1"))
		t.Fatalf("pause exited %d: %s", code, out)
	}
	atPause := f.Stats().ByKey["key-w"].Requests
	for d := range spec["w1"] {
		p := runs.Pair{Annotator: "w1", Domain: d}
		if st := s.status(p); st.Status != contract.StatusPaused {
			t.Fatalf("%s answered the pause but is %s", p.ID(), st.Status)
		}
	}
	// Two slot intervals (10 s each) later, not one call more reached the provider.
	deadline := time.Now().Add(20 * time.Second)
	waitFor(t, time.Minute, "20 s of paused runs", func() (bool, string) {
		n := f.Stats().ByKey["key-w"].Requests
		if n != atPause {
			t.Fatalf("the provider got %d requests after the pause answered (had %d)", n, atPause)
		}
		return time.Now().After(deadline), fmt.Sprint(n)
	})
	for d := range spec["w1"] {
		id := runs.Pair{Annotator: "w1", Domain: d}.ID()
		if n := events(t, id)[enumspb.EVENT_TYPE_ACTIVITY_TASK_FAILED]; n != 0 {
			t.Fatalf("%s: %d failed activity attempts; a pause must be a cancellation", id, n)
		}
	}
	if out, code := s.starter("stop", "--annotator", "w1"); code != 0 {
		t.Fatalf("stop exited %d: %s", code, out)
	}
}

func TestSIGTERMSpendsNoRestartAttempt(t *testing.T) {
	s := newStack(t, map[string]any{"offline_latency_seconds": 0.05, "batch_size": 40, "max_restart_attempts": 1, "max_concurrent_activities": 1},
		map[string]map[labels.Domain]int{"g1": {labels.Modality: 120}}, 120)
	p := runs.Pair{Annotator: "g1", Domain: labels.Modality}
	for range 2 {
		w := s.startWorker()
		s.startAll()
		before := s.stored(p)
		waitFor(t, time.Minute, "a batch under way", func() (bool, string) { n := s.stored(p); return n >= before+5, fmt.Sprint(n) })
		if err := w.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		if err := w.Wait(); err != nil {
			t.Fatalf("worker exited with %v after SIGTERM; want a clean exit", err)
		}
	}
	s.startWorker()
	st := s.waitStatus(p, contract.StatusCompleted, time.Minute)
	if st.Completed != 120 || s.stored(p) != 120 {
		t.Fatalf("status %+v, store %d; want all 120 after two worker shutdowns with max_restart_attempts 1", st, s.stored(p))
	}
	replay(t, p.ID())
}

func TestAProviderOutageLongerThanTheRetryBudgetFailsNoRun(t *testing.T) {
	t.Parallel()
	f := startFake(t, fake.Options{Keys: map[string]fake.Key{"key-o": {}}, Latency: 20 * time.Millisecond})
	spec := map[string]map[labels.Domain]int{"o1": {}}
	var pairs []runs.Pair
	for _, d := range labels.Domains {
		spec["o1"][d] = 15
		pairs = append(pairs, runs.Pair{Annotator: "o1", Domain: d})
	}
	s := newStackWith(t, netGlobal(f.URL(), map[string]any{"max_restart_attempts": 3, "max_retry_backoff_seconds": 8}), spec, 15, nil, map[string]string{"o1": "key-o"})
	s.startWorker()
	f.Inject(fake.Fault{Kind: fake.Overloaded}) // every call, until cleared
	s.startAll()
	outageEnd := time.Now().Add(60 * time.Second)
	waitFor(t, 2*time.Minute, "60 s of outage", func() (bool, string) {
		for _, p := range pairs {
			if st := s.status(p); st.Status == contract.StatusFailed {
				t.Fatalf("%s failed during the outage: %s", p.ID(), st.LastError)
			}
		}
		return time.Now().After(outageEnd), ""
	})
	st := s.status(pairs[0])
	if st.Status != contract.StatusWaitingRetry || st.LastError == "" || st.Restarts < 3 {
		t.Logf("status at the end of the outage: %+v", st)
	}
	f.ClearFaults()
	s.runToCompletion(pairs...)
	if d := f.Stats().Duplicates; d != 0 {
		t.Fatalf("%d duplicate calls", d)
	}
}

func TestALoweredLimitInTheConfigSlowsRunsAndFailsNone(t *testing.T) {
	t.Parallel()
	f := startFake(t, fake.Options{Keys: map[string]fake.Key{"key-l": {}}, Latency: 20 * time.Millisecond})
	spec := map[string]map[labels.Domain]int{"l1": {labels.Urgency: 40, labels.Intensity: 40, labels.Redressal: 40}}
	pairs := []runs.Pair{{Annotator: "l1", Domain: labels.Urgency}, {Annotator: "l1", Domain: labels.Intensity}, {Annotator: "l1", Domain: labels.Redressal}}
	s := newStackWith(t, netGlobal(f.URL(), map[string]any{"requests_per_minute": 60, "batch_size": 20, "heartbeat_timeout_seconds": 10,
		"request_timeout_seconds": 5}), spec, 40, nil, map[string]string{"l1": "key-l"})
	s.startWorker()
	s.startAll()
	waitFor(t, time.Minute, "12 calls", func() (bool, string) { n := f.Stats().ByKey["key-l"].Accepted; return n >= 12, fmt.Sprint(n) })
	// The limit drops to 6 a minute while the worker runs; nobody runs `starter start`.
	s.global["requests_per_minute"] = 6
	s.writeSettings()
	changed := time.Now()
	waitFor(t, 2*time.Minute, "75 s at the lowered limit", func() (bool, string) {
		return time.Since(changed) > 75*time.Second, ""
	})
	// Calls already granted at the old limit may start in the first seconds; after that, at
	// most 6 in any minute.
	var after []time.Time
	for _, at := range f.Stats().ByKey["key-l"].AcceptedAt {
		if at.After(changed.Add(10 * time.Second)) {
			after = append(after, at)
		}
	}
	for i := range after {
		n := 0
		for _, at := range after[i:] {
			if at.Sub(after[i]) < time.Minute {
				n++
			}
		}
		if n > 6 {
			t.Fatalf("%d calls within a minute from %s, at a limit of 6", n, after[i].Format(time.TimeOnly))
		}
	}
	if len(after) < 3 {
		t.Fatalf("only %d calls in the 65 s after the change: the runs stalled instead of slowing", len(after))
	}
	s.global["requests_per_minute"] = 6000
	s.writeSettings()
	s.runToCompletion(pairs...)
	for _, p := range pairs {
		ev := events(t, p.ID())
		if n := ev[enumspb.EVENT_TYPE_ACTIVITY_TASK_FAILED] + ev[enumspb.EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT]; n != 0 {
			t.Fatalf("%s: %d failed or timed-out batches; a lowered limit must only slow runs", p.ID(), n)
		}
	}
}

func TestTemporalsOwnActivityPauseIsHonoured(t *testing.T) {
	// One batch for the whole run, one call slot: the batch is the activity to pause.
	s := newStack(t, map[string]any{"offline_latency_seconds": 0.1, "batch_size": 100, "max_concurrent_activities": 1},
		map[string]map[labels.Domain]int{"ap": {labels.Intensity: 100}}, 100)
	p := runs.Pair{Annotator: "ap", Domain: labels.Intensity}
	s.startWorker()
	s.startAll()
	waitFor(t, time.Minute, "5 stored annotations", func() (bool, string) { n := s.stored(p); return n >= 5, fmt.Sprint(n) })
	cli(t, "activity", "pause", "--workflow-id", p.ID(), "--activity-type", contract.AnnotateBatchName)
	// The batch learns of the pause at its next heartbeat (every second, the worker's control
	// interval) and stops after the sample in flight.
	paused := time.Now()
	var atPause int
	waitFor(t, time.Minute, "the store to stop growing", func() (bool, string) {
		if time.Since(paused) < 2*time.Second {
			atPause = s.stored(p)
			return false, fmt.Sprint(atPause)
		}
		n := s.stored(p)
		if n != atPause {
			t.Fatalf("the store grew from %d to %d more than two seconds after the activity was paused", atPause, n)
		}
		return time.Since(paused) > 4*time.Second, fmt.Sprint(n)
	})
	if atPause >= 100 {
		t.Fatal("the run finished before the pause; the test proves nothing")
	}
	cli(t, "activity", "unpause", "--workflow-id", p.ID(), "--activity-type", contract.AnnotateBatchName)
	st := s.waitStatus(p, contract.StatusCompleted, time.Minute)
	if st.Completed != 100 || s.stored(p) != 100 {
		t.Fatalf("after unpause: status %+v, store %d; want 100", st, s.stored(p))
	}
}
