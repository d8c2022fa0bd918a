package activities

import (
	"context"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"go.temporal.io/sdk/testsuite"

	"github.com/mhannotator/mha/internal/config"
	"github.com/mhannotator/mha/internal/contract"
	"github.com/mhannotator/mha/internal/labels"
	"github.com/mhannotator/mha/internal/llm"
	"github.com/mhannotator/mha/internal/prompts"
	"github.com/mhannotator/mha/internal/store"
)

func TestASlotIsHeldUntilTheBatchAndItsCallAreDone(t *testing.T) {
	var tr slotTracker
	freed := 0
	h := tr.take(func() { freed++ })
	h.keep() // the call
	h.release()
	if held, _ := tr.count(time.Hour, time.Now()); held != 1 || freed != 1 {
		t.Fatalf("after the batch released: held %d, freed %d; want the slot back to the worker and still held by the call", held, freed)
	}
	if held, stuck := tr.count(time.Millisecond, time.Now().Add(time.Second)); held != 1 || stuck != 1 {
		t.Fatalf("a second later with a 1 ms limit: held %d, stuck %d; want 1 and 1", held, stuck)
	}
	h.done()
	if held, _ := tr.count(0, time.Now()); held != 0 {
		t.Fatalf("after the call returned: held %d; want 0", held)
	}
	var none *hold // calls not bounded: nothing to track
	none.keep()
	none.release()
	none.done()
}

func TestSlotReportIsWedgedOnlyWhenEverySlotIsStuck(t *testing.T) {
	for _, c := range []struct {
		r    SlotReport
		want bool
	}{
		{SlotReport{Slots: 2, Held: 2, Stuck: 1}, false},
		{SlotReport{Slots: 2, Held: 2, Stuck: 2}, true},
		{SlotReport{Slots: 2, Held: 5, Stuck: 3}, true}, // abandoned calls beside the slots in use
		{SlotReport{Slots: 0, Held: 4, Stuck: 4}, false},
	} {
		if got := c.r.Wedged(); got != c.want {
			t.Errorf("%+v: Wedged() = %v, want %v", c.r, got, c.want)
		}
	}
}

// slotFixture is a worker's activities with two call slots and short timeouts (a call's
// budget is 0.2 s + 0.2 s), calling p.
func slotFixture(t *testing.T, n int, p llm.Provider) (*Activities, *testsuite.TestActivityEnvironment) {
	t.Helper()
	dir := t.TempDir()
	cfg, err := config.Parse([]byte(`{"global": {"heartbeat_timeout_seconds": 1, "request_timeout_seconds": 0.2, "stream_idle_timeout_seconds": 0.1,
		"max_concurrent_activities": 2}, "annotators": {"1": {"urgency": {"enabled": true, "target_count": 100}}}}`), nil, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(context.Background(), filepath.Join(dir, "mha.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	var smp []store.Sample
	for i := range n {
		smp = append(smp, store.Sample{ID: "S" + string(rune('A'+i)), Text: "text " + string(rune('A'+i))})
	}
	if _, err := st.ImportSamples(context.Background(), smp); err != nil {
		t.Fatal(err)
	}
	a := &Activities{Store: st, Config: cfg, Prompts: prompts.Library{Dir: filepath.Join(dir, "prompts")},
		Provider:  func(config.Annotator) (llm.Provider, error) { return p, nil },
		CallSlots: make(chan struct{}, 2)}
	var suite testsuite.WorkflowTestSuite
	env := suite.NewTestActivityEnvironment()
	env.RegisterActivity(a.AnnotateBatch)
	return a, env
}

// wedged never answers, whatever its context says, until unblock is closed.
type wedged struct {
	unblock chan struct{}
	calls   atomic.Int32
}

func (w *wedged) Complete(context.Context, llm.Request) (llm.Response, error) {
	w.calls.Add(1)
	<-w.unblock
	return llm.Response{Text: "<<LEVEL_1>>"}, nil
}

func TestCallsThatIgnoreTheirContextWedgeTheWorker(t *testing.T) {
	p := &wedged{unblock: make(chan struct{})}
	a, env := slotFixture(t, 3, p)
	defer close(p.unblock)
	// Each call is abandoned after its budget and asked again in place twice; then the batch
	// ends and the run would wait: the batch gave its slot back every time.
	v, err := env.ExecuteActivity(a.AnnotateBatch, contract.BatchInput{Annotator: "1", Domain: labels.Urgency, From: 0, Count: 3, Target: 3})
	if err != nil {
		t.Fatal(err)
	}
	var res contract.BatchResult
	if err := v.Get(&res); err != nil || res.Wait == nil || res.Wait.Status != contract.StatusWaitingRetry {
		t.Fatalf("batch result %+v (%v); want a wait for a retry", res, err)
	}
	if n := len(a.CallSlots); n != 0 {
		t.Fatalf("%d call slots still taken after the batch; want none", n)
	}
	r := a.CallSlotReport(0)
	if r.Slots != 2 || r.Held != int(p.calls.Load()) || r.Held != 3 {
		t.Fatalf("report %+v after %d wedged calls; want 2 slots and the 3 abandoned calls held", r, p.calls.Load())
	}
	time.Sleep(r.Limit) // the last call too is past its budget now
	if r = a.CallSlotReport(0); !r.Wedged() || r.Stuck != 3 {
		t.Fatalf("report %+v; want wedged, with 3 stuck", r)
	}
	if r = a.CallSlotReport(time.Hour); r.Wedged() {
		t.Fatalf("report %+v with an hour's margin; want not wedged", r)
	}
}

// slow answers every call after a short pause.
type slow struct{ d time.Duration }

func (s slow) Complete(ctx context.Context, _ llm.Request) (llm.Response, error) {
	select {
	case <-time.After(s.d):
		return llm.Response{Text: "Fine.\n<<LEVEL_1>>"}, nil
	case <-ctx.Done():
		return llm.Response{}, ctx.Err()
	}
}

func TestABusyWorkerIsNotWedged(t *testing.T) {
	a, env := slotFixture(t, 20, slow{d: 30 * time.Millisecond})
	done, stop := make(chan struct{}), make(chan struct{})
	var busiest, stuck atomic.Int32
	go func() {
		defer close(done)
		for {
			r := a.CallSlotReport(0)
			busiest.Store(max(busiest.Load(), int32(r.Held)))
			stuck.Store(max(stuck.Load(), int32(r.Stuck)))
			if r.Wedged() {
				return
			}
			select {
			case <-time.After(5 * time.Millisecond):
			case <-stop:
				return
			}
		}
	}()
	v, err := env.ExecuteActivity(a.AnnotateBatch, contract.BatchInput{Annotator: "1", Domain: labels.Urgency, From: 0, Count: 20, Target: 20})
	close(stop)
	<-done
	if err != nil {
		t.Fatal(err)
	}
	var res contract.BatchResult
	if err := v.Get(&res); err != nil || res.Stored != 20 {
		t.Fatalf("batch result %+v (%v); want 20 stored", res, err)
	}
	if busiest.Load() == 0 || stuck.Load() != 0 {
		t.Fatalf("busiest %d slots held, at most %d stuck; want slots in use and none stuck", busiest.Load(), stuck.Load())
	}
	if r := a.CallSlotReport(0); r.Held != 0 {
		t.Fatalf("report %+v after the batch; want no slot held", r)
	}
}
