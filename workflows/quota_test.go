package workflows

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"
)

var quotaStart = time.Date(2026, 1, 5, 10, 0, 0, 0, time.UTC)

// requesters drives a quota workflow the way runs do: each requester reserves one slot, and
// asks for the next one when its slot comes.
type requesters struct {
	t       *testing.T
	env     *testsuite.TestWorkflowEnvironment
	grants  []time.Time
	asked   []time.Time                // when each grant was asked for
	waits   map[string][]time.Duration // per requester: time from request to slot
	refused int
	ids     int
}

func newQuotaEnv(t *testing.T) *requesters {
	var suite testsuite.WorkflowTestSuite
	env := suite.NewTestWorkflowEnvironment()
	env.RegisterWorkflowWithOptions(Quota, workflow.RegisterOptions{Name: QuotaName})
	env.SetStartTime(quotaStart)
	env.SetTestTimeout(time.Minute)
	return &requesters{t: t, env: env, waits: map[string][]time.Duration{}}
}

// run starts n requesters at start, each making up to calls calls.
func (r *requesters) run(n, calls int, start time.Duration) {
	for i := range n {
		name := fmt.Sprintf("annotation-%d-urgency", i)
		r.env.RegisterDelayedCallback(func() { r.reserve(name, calls) }, start+time.Duration(i)*time.Millisecond)
	}
}

func (r *requesters) reserve(name string, left int) {
	if left == 0 {
		return
	}
	asked := r.env.Now()
	r.ids++
	r.env.UpdateWorkflow(UpdateReserve, fmt.Sprint(r.ids), &testsuite.TestUpdateCallback{
		OnReject: func(err error) { r.t.Errorf("reserve rejected: %v", err) },
		OnAccept: func() {},
		OnComplete: func(v any, err error) {
			if err != nil {
				r.t.Errorf("reserve failed: %v", err)
				return
			}
			res := v.(Reservation)
			if len(res.Slots) == 0 {
				r.refused++
				return
			}
			slot := res.Slots[0]
			r.grants = append(r.grants, slot)
			r.asked = append(r.asked, asked)
			r.waits[name] = append(r.waits[name], slot.Sub(asked))
			r.env.RegisterDelayedCallback(func() { r.reserve(name, left-1) }, slot.Sub(r.env.Now())+time.Millisecond)
		},
	}, ReserveRequest{Requester: name, Count: 1, Tokens: 100})
}

func (r *requesters) execute(l QuotaLimits, end time.Duration) error {
	r.env.RegisterDelayedCallback(r.env.CancelWorkflow, end)
	r.env.ExecuteWorkflow(Quota, QuotaInput{Pool: "p", Limits: l})
	return r.env.GetWorkflowError()
}

// maxInWindow is the most grants in any window [t, t+d) of the grant log.
func maxInWindow(grants []time.Time, d time.Duration) int {
	g := slices.Clone(grants)
	slices.SortFunc(g, time.Time.Compare)
	most := 0
	for i := range g {
		n := 0
		for j := i; j < len(g) && g[j].Before(g[i].Add(d)); j++ {
			n++
		}
		most = max(most, n)
	}
	return most
}

func TestThirtyRequestersNeverExceedTheLimitsInAnyWindow(t *testing.T) {
	r := newQuotaEnv(t)
	r.run(30, 10, time.Second)
	limits := QuotaLimits{RequestsPerMinute: 15, RequestsPerDay: 250, DayZone: "UTC"}
	if err := r.execute(limits, 3*time.Hour); err != nil && !isCanceled(err) {
		t.Fatal(err)
	}
	// 300 calls wanted, 250 allowed a day: the requesters still wanting calls are refused.
	if len(r.grants) != 250 || r.refused == 0 || r.refused > 30 {
		t.Fatalf("granted %d and refused %d; want the day's 250, then refusals", len(r.grants), r.refused)
	}
	if most := maxInWindow(r.grants, time.Minute); most != 15 {
		t.Fatalf("a 60 s window holds %d grants, want at most (and, under load, exactly) 15", most)
	}
	// Fairness: with 30 requesters taking turns at 15 per minute, nobody waits much over
	// the 2 minutes a full round takes.
	for name, waits := range r.waits {
		if worst := slices.Max(waits); worst > 2*time.Minute+time.Second {
			t.Fatalf("%s waited %s for a slot; want at most one round (2m)", name, worst)
		}
		if len(waits) < 250/30-1 {
			t.Fatalf("%s got %d slots of the 250; want a fair share", name, len(waits))
		}
	}
}

func TestTheDayBoundaryFollowsTheConfiguredZone(t *testing.T) {
	r := newQuotaEnv(t)
	// 10:00 UTC is 02:00 in Los Angeles: that day ends at 08:00 UTC tomorrow.
	var res Reservation
	r.env.RegisterDelayedCallback(func() {
		r.env.UpdateWorkflow(UpdateReserve, "a", &testsuite.TestUpdateCallback{OnAccept: func() {}, OnReject: func(err error) { t.Error(err) },
			OnComplete: func(v any, err error) { res = v.(Reservation) }}, ReserveRequest{Requester: "x", Count: 5})
	}, time.Second)
	if err := r.execute(QuotaLimits{RequestsPerMinute: 10, RequestsPerDay: 3}, time.Hour); err != nil && !isCanceled(err) {
		t.Fatal(err)
	}
	want := time.Date(2026, 1, 6, 8, 0, 0, 0, time.UTC)
	if len(res.Slots) != 3 || !res.ExhaustedUntil.Equal(want) {
		t.Fatalf("reservation = %+v, want 3 slots and exhausted until %s", res, want)
	}
}

func TestPenaltyDelaysEveryRequester(t *testing.T) {
	r := newQuotaEnv(t)
	r.run(6, 30, time.Second)
	penalty := quotaStart.Add(5 * time.Minute)
	until := penalty.Add(7 * time.Minute)
	r.env.RegisterDelayedCallback(func() { r.env.SignalWorkflow(SignalPenalize, Penalty{Until: until, By: "annotation-1-urgency"}) }, 5*time.Minute)
	if err := r.execute(QuotaLimits{RequestsPerMinute: 30, RequestsPerDay: 10000}, time.Hour); err != nil && !isCanceled(err) {
		t.Fatal(err)
	}
	late := 0
	for i, g := range r.grants {
		// Slots asked for before the penalty may fall after it began; none asked for after it
		// lies inside it.
		if r.asked[i].After(penalty) && g.Before(until) {
			t.Fatalf("slot at %s, asked at %s, lies inside the penalty (%s..%s)", g, r.asked[i], penalty, until)
		}
		if !g.Before(until) {
			late++
		}
	}
	if late == 0 {
		t.Fatal("no slot was granted after the penalty ended")
	}
}

func TestConfigureChangesTheLimitLive(t *testing.T) {
	r := newQuotaEnv(t)
	r.run(30, 40, time.Second)
	r.env.RegisterDelayedCallback(func() {
		r.env.SignalWorkflow(SignalConfigure, QuotaLimits{RequestsPerMinute: 60, RequestsPerDay: 10000})
	}, 10*time.Minute)
	if err := r.execute(QuotaLimits{RequestsPerMinute: 15, RequestsPerDay: 10000}, 20*time.Minute); err != nil && !isCanceled(err) {
		t.Fatal(err)
	}
	var before, after []time.Time
	for _, g := range r.grants {
		if g.Before(quotaStart.Add(10 * time.Minute)) {
			before = append(before, g)
		} else if g.After(quotaStart.Add(12 * time.Minute)) {
			after = append(after, g)
		}
	}
	if most := maxInWindow(before, time.Minute); most > 15 {
		t.Fatalf("%d grants in a minute before the change, limit 15", most)
	}
	if most := maxInWindow(after, time.Minute); most <= 15 || most > 60 {
		t.Fatalf("%d grants in a minute after raising the limit to 60; want more than 15 and at most 60", most)
	}
}

func TestReserveRejectsNonsense(t *testing.T) {
	r := newQuotaEnv(t)
	var rejected []string
	for i, req := range []ReserveRequest{{Requester: "a", Count: 0}, {Requester: "a", Count: 16}, {Requester: "", Count: 1}, {Requester: "a", Count: 1, Tokens: -1}} {
		r.env.RegisterDelayedCallback(func() {
			r.env.UpdateWorkflow(UpdateReserve, fmt.Sprint(i), &testsuite.TestUpdateCallback{OnAccept: func() { t.Errorf("accepted %+v", req) },
				OnReject: func(err error) { rejected = append(rejected, err.Error()) }, OnComplete: func(any, error) {}}, req)
		}, time.Second)
	}
	if err := r.execute(QuotaLimits{RequestsPerMinute: 15, RequestsPerDay: 100}, time.Minute); err != nil && !isCanceled(err) {
		t.Fatal(err)
	}
	if len(rejected) != 4 {
		t.Fatalf("rejected %v, want all 4 requests refused", rejected)
	}
}

func TestQuotaStateSurvivesContinueAsNew(t *testing.T) {
	r := newQuotaEnv(t)
	r.run(5, 100, time.Second)
	r.env.RegisterDelayedCallback(func() { r.env.SetContinueAsNewSuggested(true) }, 150*time.Second)
	err := r.execute(QuotaLimits{RequestsPerMinute: 10, RequestsPerDay: 1000, DayZone: "UTC"}, time.Hour)
	var can *workflow.ContinueAsNewError
	if !errors.As(err, &can) {
		t.Fatalf("workflow ended with %v, want continue-as-new", err)
	}
	var next QuotaInput
	if err := converter.GetDefaultDataConverter().FromPayloads(can.Input, &next); err != nil {
		t.Fatal(err)
	}
	if next.State == nil || next.State.DayCount+len(next.State.Grants) != len(r.grants) || len(next.State.Requesters) != 5 {
		t.Fatalf("carried state %+v; want all %d grants counted and 5 requesters", next.State, len(r.grants))
	}
	before := slices.Clone(r.grants)

	// The next run keeps the window: its first grants continue the same pace.
	r2 := newQuotaEnv(t)
	r2.env.SetStartTime(r.env.Now())
	r2.run(5, 4, 0)
	r2.env.RegisterDelayedCallback(r2.env.CancelWorkflow, time.Hour)
	r2.env.ExecuteWorkflow(Quota, next)
	if most := maxInWindow(append(before, r2.grants...), time.Minute); most > 10 {
		t.Fatalf("%d grants in one minute across continue-as-new, limit 10", most)
	}
	if len(r2.grants) != 20 {
		t.Fatalf("the continued workflow granted %d slots, want 20", len(r2.grants))
	}
}

func isCanceled(err error) bool {
	var canceled *temporal.CanceledError
	return errors.As(err, &canceled)
}
