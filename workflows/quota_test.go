package workflows

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/mhannotator/mha/internal/contract"
)

var quotaStart = time.Date(2026, 1, 5, 10, 0, 0, 0, time.UTC)

// limitWindow is the window the pool keeps its limits in: a minute, widened by grantMargin so
// that calls starting a little after their slots still keep the provider's minute.
const limitWindow = quotaWindow + grantMargin

// heldTolerance is how late a requester of new-style asks may come back for its held slot,
// and askWindow how far apart a pool answering asks spaces the slots of a full minute: such
// calls may start up to SlotLateness after their slots.
const (
	heldTolerance = contract.SlotLateness
	askWindow     = limitWindow + contract.SlotLateness
)

func newQuotaTestEnv() *testsuite.TestWorkflowEnvironment {
	var suite testsuite.WorkflowTestSuite
	env := suite.NewTestWorkflowEnvironment()
	env.RegisterWorkflowWithOptions(Quota, workflow.RegisterOptions{Name: contract.QuotaName})
	env.SetStartTime(quotaStart)
	env.SetTestTimeout(time.Minute)
	return env
}

// requesters drives a quota workflow the way the previous release's runs do: each requester
// reserves one slot, and asks for the next one when its slot comes.
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
	return &requesters{t: t, env: newQuotaTestEnv(), waits: map[string][]time.Duration{}}
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
	r.env.UpdateWorkflow(contract.UpdateReserve, fmt.Sprint(r.ids), &testsuite.TestUpdateCallback{
		OnReject: func(err error) { r.t.Errorf("reserve rejected: %v", err) },
		OnAccept: func() {},
		OnComplete: func(v any, err error) {
			if err != nil {
				r.t.Errorf("reserve failed: %v", err)
				return
			}
			res := v.(contract.Reservation)
			if len(res.Grants) != 0 {
				r.t.Errorf("a previous-release request was answered in Grants: %+v", res)
			}
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
	}, contract.ReserveRequest{Requester: name, Count: 1, Tokens: 100})
}

func (r *requesters) execute(l contract.QuotaLimits, end time.Duration) error {
	r.env.RegisterDelayedCallback(r.env.CancelWorkflow, end)
	r.env.ExecuteWorkflow(Quota, contract.QuotaInput{Pool: "p", Limits: l})
	return r.env.GetWorkflowError()
}

// maxInWindow is the most grants in any window [t, t+d) of the grant log.
func maxInWindow(grants []time.Time, d time.Duration) int {
	g := slices.Clone(grants)
	slices.SortFunc(g, time.Time.Compare)
	most := 0
	for i, j := 0, 0; i < len(g); i++ {
		for j < len(g) && g[j].Before(g[i].Add(d)) {
			j++
		}
		most = max(most, j-i)
	}
	return most
}

func TestThirtyRequestersNeverExceedTheLimitsInAnyWindow(t *testing.T) {
	r := newQuotaEnv(t)
	r.run(30, 10, time.Second)
	limits := contract.QuotaLimits{RequestsPerMinute: 15, RequestsPerDay: 250, DayZone: "UTC"}
	if err := r.execute(limits, 3*time.Hour); err != nil && !isCanceled(err) {
		t.Fatal(err)
	}
	// 300 calls wanted, 250 allowed a day: the requesters still wanting calls are refused.
	if len(r.grants) != 250 || r.refused == 0 || r.refused > 30 {
		t.Fatalf("granted %d and refused %d; want the day's 250, then refusals", len(r.grants), r.refused)
	}
	if most := maxInWindow(r.grants, limitWindow); most != 15 {
		t.Fatalf("a 60.5 s window holds %d grants, want at most (and, under load, exactly) 15", most)
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
	var res contract.Reservation
	r.env.RegisterDelayedCallback(func() {
		r.env.UpdateWorkflow(contract.UpdateReserve, "a", &testsuite.TestUpdateCallback{OnAccept: func() {}, OnReject: func(err error) { t.Error(err) },
			OnComplete: func(v any, err error) { res = v.(contract.Reservation) }}, contract.ReserveRequest{Requester: "x", Count: 5})
	}, time.Second)
	if err := r.execute(contract.QuotaLimits{RequestsPerMinute: 10, RequestsPerDay: 3}, time.Hour); err != nil && !isCanceled(err) {
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
	r.env.RegisterDelayedCallback(func() {
		r.env.SignalWorkflow(contract.SignalPenalize, contract.Penalty{Until: until, By: "annotation-1-urgency"})
	}, 5*time.Minute)
	if err := r.execute(contract.QuotaLimits{RequestsPerMinute: 30, RequestsPerDay: 10000}, time.Hour); err != nil && !isCanceled(err) {
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
		r.env.SignalWorkflow(contract.SignalConfigure, contract.QuotaLimits{RequestsPerMinute: 60, RequestsPerDay: 10000})
	}, 10*time.Minute)
	if err := r.execute(contract.QuotaLimits{RequestsPerMinute: 15, RequestsPerDay: 10000}, 20*time.Minute); err != nil && !isCanceled(err) {
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
	for i, req := range []contract.ReserveRequest{
		{Requester: "a", Count: 0},
		{Requester: "a", Count: 16}, // a previous-release request above the per-minute limit
		{Requester: "", Count: 1},
		{Requester: "a", Count: 1, Tokens: -1},
		{Asks: []contract.Ask{{Requester: "", Count: 1}}},
		{Asks: []contract.Ask{{Requester: "a", Count: 0}}},
		{Asks: []contract.Ask{{Requester: "a", Count: 1, Tokens: -1}}},
		{Asks: []contract.Ask{{Requester: "a", Count: 1}}, Horizon: -time.Second},
		{Asks: []contract.Ask{{Requester: "a", Count: 1}}, Requester: "a", Count: 1},
		{Asks: make([]contract.Ask, maxAsks+1)},
	} {
		r.env.RegisterDelayedCallback(func() {
			r.env.UpdateWorkflow(contract.UpdateReserve, fmt.Sprint(i), &testsuite.TestUpdateCallback{OnAccept: func() { t.Errorf("accepted %+v", req) },
				OnReject: func(err error) { rejected = append(rejected, err.Error()) }, OnComplete: func(any, error) {}}, req)
		}, time.Second)
	}
	if err := r.execute(contract.QuotaLimits{RequestsPerMinute: 15, RequestsPerDay: 100}, time.Minute); err != nil && !isCanceled(err) {
		t.Fatal(err)
	}
	if len(rejected) != 10 {
		t.Fatalf("rejected %v, want all 10 requests refused", rejected)
	}
}

func TestQuotaStateSurvivesContinueAsNew(t *testing.T) {
	r := newQuotaEnv(t)
	r.run(5, 100, time.Second)
	r.env.RegisterDelayedCallback(func() { r.env.SetContinueAsNewSuggested(true) }, 150*time.Second)
	err := r.execute(contract.QuotaLimits{RequestsPerMinute: 10, RequestsPerDay: 1000, DayZone: "UTC"}, time.Hour)
	next := continuedInput(t, err)
	kept := 0
	for _, g := range next.State.Grants {
		kept += slotsOf(g)
	}
	if next.State.DayCount+kept != len(r.grants) || len(next.State.Requesters) != 5 {
		t.Fatalf("carried state %+v; want all %d grants counted and 5 requesters", next.State, len(r.grants))
	}
	before := slices.Clone(r.grants)

	// The next run keeps the window: its first grants continue the same pace.
	r2 := newQuotaEnv(t)
	r2.env.SetStartTime(r.env.Now())
	r2.run(5, 4, 0)
	r2.env.RegisterDelayedCallback(r2.env.CancelWorkflow, time.Hour)
	r2.env.ExecuteWorkflow(Quota, next)
	if most := maxInWindow(append(before, r2.grants...), limitWindow); most > 10 {
		t.Fatalf("%d grants in one minute across continue-as-new, limit 10", most)
	}
	if len(r2.grants) != 20 {
		t.Fatalf("the continued workflow granted %d slots, want 20", len(r2.grants))
	}
}

// continuedInput is the input a workflow that ended with err continues as new with.
func continuedInput(t *testing.T, err error) contract.QuotaInput {
	t.Helper()
	var can *workflow.ContinueAsNewError
	if !errors.As(err, &can) {
		t.Fatalf("workflow ended with %v, want continue-as-new", err)
	}
	var next contract.QuotaInput
	if err := converter.GetDefaultDataConverter().FromPayloads(can.Input, &next); err != nil {
		t.Fatal(err)
	}
	if next.State == nil {
		t.Fatal("continue-as-new carries no state")
	}
	return next
}

func isCanceled(err error) bool {
	var canceled *temporal.CanceledError
	return errors.As(err, &canceled)
}

// slot is one granted call slot in a ledger.
type slot struct {
	at     time.Time
	tokens int
}

// ledger records every slot a pool grants exactly once, from the answers its requesters get:
// a held slot is answered again each time its requester asks until it is handed over.
type ledger struct {
	t       testing.TB
	granted []slot
	held    map[string]time.Time // each requester's held slot, as last answered
	used    map[string][]time.Time
}

func newLedger(t testing.TB) *ledger {
	return &ledger{t: t, held: map[string]time.Time{}, used: map[string][]time.Time{}}
}

// record books the answer to one ask, made at asked, and checks its shape: slots in time
// order, none already passed, none beyond the horizon except one held slot, alone. It
// returns the held slot, if any.
func (l *ledger) record(a contract.Ask, asked time.Time, horizon time.Duration, slots []time.Time) (held time.Time) {
	l.t.Helper()
	if !slices.IsSortedFunc(slots, time.Time.Compare) {
		l.t.Errorf("%s asked at %s and got slots out of order: %v", a.Requester, asked, slots)
	}
	if len(slots) > a.Count {
		l.t.Errorf("%s asked for %d and got %d slots", a.Requester, a.Count, len(slots))
	}
	for _, s := range slots {
		if s.Before(asked.Add(-heldTolerance)) {
			l.t.Errorf("%s asked at %s and got a passed slot %s", a.Requester, asked, s)
		}
		if s.After(asked.Add(horizon)) {
			if len(slots) != 1 {
				l.t.Errorf("%s asked at %s (horizon %s) and got %v: a slot beyond the horizon must come alone", a.Requester, asked, horizon, slots)
			}
			held = s
		}
	}
	prev, holding := l.held[a.Requester]
	if holding && !prev.Before(asked.Add(-heldTolerance)) && (len(slots) == 0 || !slots[0].Equal(prev)) {
		l.t.Errorf("%s held %s, asked at %s and got %v instead", a.Requester, prev, asked, slots)
	}
	for _, s := range slots {
		if holding && s.Equal(prev) {
			holding = false // answered again, not granted again
			continue
		}
		l.granted = append(l.granted, slot{at: s, tokens: a.Tokens})
	}
	if held.IsZero() {
		delete(l.held, a.Requester)
		l.used[a.Requester] = append(l.used[a.Requester], slots...)
	} else {
		l.held[a.Requester] = held
	}
	return held
}

// checkWindows fails when a window [t, t+limitWindow) holds more slots or tokens than l allows.
func (l *ledger) checkWindows(lim contract.QuotaLimits) {
	l.t.Helper()
	g := slices.Clone(l.granted)
	slices.SortStableFunc(g, func(a, b slot) int { return a.at.Compare(b.at) })
	tokens := 0
	for i, j := 0, 0; i < len(g); i++ {
		for ; j < len(g) && g[j].at.Before(g[i].at.Add(limitWindow)); j++ {
			tokens += g[j].tokens
		}
		if j-i > lim.RequestsPerMinute {
			l.t.Fatalf("%d slots in the window from %s, limit %d", j-i, g[i].at, lim.RequestsPerMinute)
		}
		if lim.TokensPerMinute > 0 && tokens > lim.TokensPerMinute {
			l.t.Fatalf("%d tokens in the window from %s, limit %d", tokens, g[i].at, lim.TokensPerMinute)
		}
		tokens -= g[i].tokens
	}
}

// checkUsedWereGranted fails when slots handed over for use outnumber those granted at some
// time: a held slot went to two requesters.
func (l *ledger) checkUsedWereGranted() {
	l.t.Helper()
	granted := map[time.Time]int{}
	for _, s := range l.granted {
		granted[s.at.UTC()]++
	}
	for r, used := range l.used {
		for _, at := range used {
			if granted[at.UTC()]--; granted[at.UTC()] < 0 {
				l.t.Fatalf("%s used a slot at %s that was not granted to it", r, at)
			}
		}
	}
}

// asker is a run of this release: it asks for up to Count slots within horizon, uses those
// it gets (a call lasts call), and sleeps until lead before a held slot.
type asker struct {
	contract.Ask
	horizon, lead, call time.Duration
}

// askPool drives a quota workflow with askers, each sending its own Update.
type askPool struct {
	t      *testing.T
	env    *testsuite.TestWorkflowEnvironment
	ledger *ledger
	limits *contract.QuotaLimits // sent with every request when set
	ids    int
}

func newAskPool(t *testing.T) *askPool {
	return &askPool{t: t, env: newQuotaTestEnv(), ledger: newLedger(t)}
}

// start starts askers at start, a millisecond apart.
func (p *askPool) start(askers []asker, start time.Duration) {
	for i, a := range askers {
		p.env.RegisterDelayedCallback(func() { p.ask(a) }, start+time.Duration(i)*time.Millisecond)
	}
}

func (p *askPool) ask(a asker) {
	asked := p.env.Now()
	p.ids++
	p.env.UpdateWorkflow(contract.UpdateReserve, fmt.Sprint("ask-", p.ids), &testsuite.TestUpdateCallback{
		OnReject: func(err error) { p.t.Errorf("%s: reserve rejected: %v", a.Requester, err) },
		OnAccept: func() {},
		OnComplete: func(v any, err error) {
			if err != nil {
				p.t.Errorf("%s: reserve failed: %v", a.Requester, err)
				return
			}
			res := v.(contract.Reservation)
			if len(res.Grants) != 1 || len(res.Slots) != 0 {
				p.t.Errorf("%s: answer %+v, want one ask's grants", a.Requester, res)
				return
			}
			slots := res.Grants[0]
			var next time.Time
			switch held := p.ledger.record(a.Ask, asked, a.horizon, slots); {
			case !held.IsZero():
				next = held.Add(-a.lead)
			case len(slots) > 0:
				next = slots[len(slots)-1].Add(a.call)
			case !res.ExhaustedUntil.IsZero():
				next = res.ExhaustedUntil
			default:
				p.t.Errorf("%s asked at %s and got neither a slot nor an exhausted day", a.Requester, asked)
				return
			}
			p.env.RegisterDelayedCallback(func() { p.ask(a) }, max(next.Sub(p.env.Now()), time.Millisecond))
		},
	}, contract.ReserveRequest{Asks: []contract.Ask{a.Ask}, Horizon: a.horizon, Limits: p.limits})
}

func (p *askPool) execute(l contract.QuotaLimits, end time.Duration) {
	p.t.Helper()
	p.env.RegisterDelayedCallback(p.env.CancelWorkflow, end)
	p.env.ExecuteWorkflow(Quota, contract.QuotaInput{Pool: "p", Limits: l})
	if err := p.env.GetWorkflowError(); err != nil && !isCanceled(err) {
		p.t.Fatal(err)
	}
}

// runs are n askers named like runs, each asking for count slots within horizon.
func runs(n, count int, horizon time.Duration) []asker {
	out := make([]asker, n)
	for i := range out {
		out[i] = asker{Ask: contract.Ask{Requester: fmt.Sprintf("annotation-%d-urgency", i), Count: count, Tokens: 100},
			horizon: horizon, lead: horizon / 2, call: 2 * time.Second}
	}
	return out
}

func TestAsksNeverExceedTheLimitsInAnyWindow(t *testing.T) {
	for _, c := range []struct {
		name   string
		limits contract.QuotaLimits
		count  int
	}{
		{"requests per minute", contract.QuotaLimits{RequestsPerMinute: 15, RequestsPerDay: 100000}, 5},
		{"asks above the per-minute limit", contract.QuotaLimits{RequestsPerMinute: 4, RequestsPerDay: 100000}, 10},
		{"tokens per minute", contract.QuotaLimits{RequestsPerMinute: 100, RequestsPerDay: 100000, TokensPerMinute: 1000}, 3},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := newAskPool(t)
			p.start(runs(30, c.count, 20*time.Second), time.Second)
			p.execute(c.limits, 20*time.Minute)
			p.ledger.checkWindows(c.limits)
			p.ledger.checkUsedWereGranted()
			// Under load the pool is used up to its limit, not below it.
			ats := make([]time.Time, len(p.ledger.granted))
			for i, s := range p.ledger.granted {
				ats[i] = s.at
			}
			want := c.limits.RequestsPerMinute
			if tpm := c.limits.TokensPerMinute; tpm > 0 {
				want = tpm / 100
			}
			if most := maxInWindow(ats, limitWindow); most != want {
				t.Fatalf("the fullest window holds %d slots, want %d", most, want)
			}
		})
	}
}

// heldScript drives a pool with single asks at given times and keeps the answers.
type heldScript struct {
	p       *askPool
	answers map[string][]time.Time
	reserve map[string]contract.Reservation
}

func newHeldScript(t *testing.T) *heldScript {
	return &heldScript{p: newAskPool(t), answers: map[string][]time.Time{}, reserve: map[string]contract.Reservation{}}
}

// at makes requester ask for count slots within horizon at offset from the start; the
// answer is kept under label.
func (s *heldScript) at(offset time.Duration, label, requester string, count int, horizon time.Duration) {
	s.p.env.RegisterDelayedCallback(func() {
		asked := s.p.env.Now()
		ask := contract.Ask{Requester: requester, Count: count}
		s.p.env.UpdateWorkflow(contract.UpdateReserve, label, &testsuite.TestUpdateCallback{
			OnReject: func(err error) { s.p.t.Errorf("%s: rejected: %v", label, err) },
			OnAccept: func() {},
			OnComplete: func(v any, err error) {
				if err != nil {
					s.p.t.Errorf("%s: %v", label, err)
					return
				}
				res := v.(contract.Reservation)
				s.reserve[label] = res
				s.answers[label] = res.Grants[0]
				s.p.ledger.record(ask, asked, horizon, res.Grants[0])
			},
		}, contract.ReserveRequest{Asks: []contract.Ask{ask}, Horizon: horizon})
	}, offset)
}

func (s *heldScript) query(offset time.Duration, into *contract.QuotaStatus) {
	s.p.env.RegisterDelayedCallback(func() {
		v, err := s.p.env.QueryWorkflow(contract.QueryQuotaState)
		if err == nil {
			err = v.Get(into)
		}
		if err != nil {
			s.p.t.Errorf("query: %v", err)
		}
	}, offset)
}

func at(d time.Duration) time.Time { return quotaStart.Add(d) }

func TestAHeldSlotGoesBackToItsRequesterOnly(t *testing.T) {
	s := newHeldScript(t)
	h := 10 * time.Second
	s.at(1*time.Second, "a fills the minute", "a", 2, h)
	s.at(2*time.Second, "b waits", "b", 1, h)
	s.at(3*time.Second, "c waits", "c", 3, h)
	s.at(4*time.Second, "d waits longer", "d", 1, h)
	s.at(30*time.Second, "b asks early", "b", 1, h)
	s.at(55*time.Second, "a asks again", "a", 2, h)
	s.at(58*time.Second, "b comes back", "b", 3, h)
	s.at(59*time.Second, "b asks for more", "b", 1, h)
	var st contract.QuotaStatus
	s.query(59*time.Second+time.Millisecond, &st)
	s.p.execute(contract.QuotaLimits{RequestsPerMinute: 2, RequestsPerDay: 1000}, 5*time.Minute)

	first := at(1*time.Second + askWindow) // the minute after a's two slots
	for label, want := range map[string][]time.Time{
		"a fills the minute": {at(time.Second), at(time.Second)},
		"b waits":            {first},
		"c waits":            {first},
		"d waits longer":     {first.Add(askWindow)},
		"b asks early":       {first}, // still beyond the horizon: held, answered again
		"b comes back":       {first}, // handed over; nothing else free within the horizon
	} {
		if got := s.answers[label]; !slices.EqualFunc(got, want, time.Time.Equal) {
			t.Errorf("%s: got %v, want %v", label, got, want)
		}
	}
	if got := s.answers["a asks again"]; len(got) != 1 || !got[0].After(first) {
		t.Errorf("a asked while b and c held %s and got %v; want a later slot of its own", first, got)
	}
	if got := s.answers["b asks for more"]; len(got) != 1 || !got[0].After(s.answers["a asks again"][0]) {
		t.Errorf("b asked again after using its held slot and got %v; want to queue behind a", got)
	}
	// Held now: c (first), d, a and b.
	if st.Held != 4 {
		t.Errorf("state shows %d held slots, want 4: %+v", st.Held, st)
	}
	s.p.ledger.checkWindows(contract.QuotaLimits{RequestsPerMinute: 2})
	s.p.ledger.checkUsedWereGranted()
}

func TestPassedHeldSlotsAreDropped(t *testing.T) {
	s := newHeldScript(t)
	h := 10 * time.Second
	first := at(1*time.Second + askWindow)
	s.at(1*time.Second, "a fills the minute", "a", 2, h)
	s.at(2*time.Second, "b waits", "b", 1, h)
	s.at(3*time.Second, "c waits", "c", 1, h)
	s.at(first.Sub(quotaStart)+heldTolerance/2, "b comes back a little late", "b", 1, h)
	s.at(first.Sub(quotaStart)+2*heldTolerance, "c comes back too late", "c", 1, h)
	var st contract.QuotaStatus
	s.query(first.Sub(quotaStart)+2*heldTolerance+time.Millisecond, &st)
	s.p.execute(contract.QuotaLimits{RequestsPerMinute: 2, RequestsPerDay: 1000}, 5*time.Minute)

	if got := s.answers["b comes back a little late"]; !slices.EqualFunc(got, []time.Time{first}, time.Time.Equal) {
		t.Errorf("b came back %s after its slot and got %v, want its held slot %s", heldTolerance/2, got, first)
	}
	// c's slot is wasted, and still counts: c queues a minute later.
	if got := s.answers["c comes back too late"]; len(got) != 1 || got[0].Before(first.Add(askWindow)) {
		t.Errorf("c came back %s after its slot and got %v; want a new slot a minute later", 2*heldTolerance, got)
	}
	if st.Held != 1 {
		t.Errorf("state shows %d held slots, want only c's new one: %+v", st.Held, st)
	}
}

func TestWaitingRunsAreServedInTurn(t *testing.T) {
	p := newAskPool(t)
	askers := runs(30, 5, 20*time.Second)
	p.start(askers, time.Second)
	limits := contract.QuotaLimits{RequestsPerMinute: 15, RequestsPerDay: 100000}
	p.execute(limits, 15*time.Minute)
	p.ledger.checkWindows(limits)
	p.ledger.checkUsedWereGranted()

	share := func(from, to time.Duration) map[string]int {
		got := map[string]int{}
		for _, a := range askers {
			for _, u := range p.ledger.used[a.Requester] {
				if !u.Before(at(from)) && u.Before(at(to)) {
					got[a.Requester]++
				}
			}
		}
		return got
	}
	check := func(from, to time.Duration, low, high float64) {
		t.Helper()
		got := share(from, to)
		total := 0
		for _, n := range got {
			total += n
		}
		fair := float64(total) / float64(len(askers))
		for _, a := range askers {
			if n := float64(got[a.Requester]); n < low*fair || n > high*fair {
				t.Errorf("from %s to %s %s used %v slots; its fair share of %d is %.1f: %v", from, to, a.Requester, n, total, fair, got)
				return
			}
		}
	}
	// From the start every run gets at least half its share, though the first to ask took
	// the empty pool's whole first minute.
	check(0, 5*time.Minute, 0.5, 100)
	// Once the pool is saturated, every 5 minutes every run gets its share, give or take half.
	for from := 2 * time.Minute; from+5*time.Minute <= 15*time.Minute; from += time.Minute {
		check(from, from+5*time.Minute, 0.5, 1.5)
	}
}

func TestALoweredLimitSlowsRunsAndFailsNone(t *testing.T) {
	p := newAskPool(t)
	p.limits = &contract.QuotaLimits{RequestsPerMinute: 5, RequestsPerDay: 100000}
	askers := runs(3, 20, 3*time.Minute) // 20 slots each, 4 times the new limit
	p.start(askers, time.Second)
	var before, after contract.QuotaStatus
	p.env.RegisterDelayedCallback(func() {
		v, _ := p.env.QueryWorkflow(contract.QueryQuotaState)
		_ = v.Get(&before)
		// An invalid config is ignored: the pool keeps the limits it has.
		p.limits = &contract.QuotaLimits{RequestsPerMinute: 0, RequestsPerDay: 100000}
	}, 10*time.Minute)
	p.env.RegisterDelayedCallback(func() {
		v, _ := p.env.QueryWorkflow(contract.QueryQuotaState)
		_ = v.Get(&after)
	}, 15*time.Minute)
	p.execute(contract.QuotaLimits{RequestsPerMinute: 60, RequestsPerDay: 100000}, 16*time.Minute)

	if before.RequestsPerMinute != 5 || after.RequestsPerMinute != 5 {
		t.Fatalf("requests per minute: %d after the config lowered it, %d after an invalid config; want 5 both times",
			before.RequestsPerMinute, after.RequestsPerMinute)
	}
	p.ledger.checkWindows(contract.QuotaLimits{RequestsPerMinute: 5})
	total := 0
	for _, a := range askers {
		used := len(p.ledger.used[a.Requester])
		if used < 5 {
			t.Errorf("%s used %d slots in 16 minutes", a.Requester, used)
		}
		total += used
	}
	if total < 15*5 {
		t.Errorf("the runs used %d slots in 16 minutes at 5 a minute", total)
	}
}

func TestPreviousReleaseRequestsShareThePoolWithAsks(t *testing.T) {
	r := newQuotaEnv(t)
	r.run(10, 20, time.Second)
	p := &askPool{t: t, env: r.env, ledger: newLedger(t)}
	p.start(runs(10, 3, 20*time.Second), time.Second+50*time.Millisecond)
	limits := contract.QuotaLimits{RequestsPerMinute: 10, RequestsPerDay: 100000}
	if err := r.execute(limits, 20*time.Minute); err != nil && !isCanceled(err) {
		t.Fatal(err)
	}
	for _, g := range r.grants {
		p.ledger.granted = append(p.ledger.granted, slot{at: g})
	}
	p.ledger.checkWindows(limits)
	if len(r.grants) == 0 || len(p.ledger.used) != 10 {
		t.Fatalf("previous-release requesters got %d slots and %d askers used some; want both served", len(r.grants), len(p.ledger.used))
	}
}

func TestHeldSlotsSurviveContinueAsNew(t *testing.T) {
	s := newHeldScript(t)
	h := 10 * time.Second
	s.at(1*time.Second, "a fills the minute", "a", 1, h)
	s.at(2*time.Second, "b waits", "b", 1, h)
	s.p.env.RegisterDelayedCallback(func() { s.p.env.SetContinueAsNewSuggested(true) }, 3*time.Second)
	s.p.env.ExecuteWorkflow(Quota, contract.QuotaInput{Pool: "p", Limits: contract.QuotaLimits{RequestsPerMinute: 1, RequestsPerDay: 100}})
	next := continuedInput(t, s.p.env.GetWorkflowError())
	held := s.answers["b waits"]
	if len(held) != 1 || !slices.EqualFunc(next.State.Held["b"], held, time.Time.Equal) {
		t.Fatalf("b holds %v; continue-as-new carries %v", held, next.State.Held)
	}

	s2 := newHeldScript(t)
	s2.p.env.SetStartTime(s.p.env.Now())
	s2.at(held[0].Sub(s.p.env.Now())-time.Second, "b comes back", "b", 1, h)
	s2.p.env.RegisterDelayedCallback(s2.p.env.CancelWorkflow, 5*time.Minute)
	s2.p.env.ExecuteWorkflow(Quota, next)
	if got := s2.answers["b comes back"]; !slices.EqualFunc(got, held, time.Time.Equal) {
		t.Fatalf("b came back to the continued pool and got %v, want its held %v", got, held)
	}
}

// newTestQuota is a pool's state without a workflow around it.
func newTestQuota(l contract.QuotaLimits) *quota {
	q := &quota{st: contract.QuotaState{Pool: "p", Limits: l, Requesters: map[string]contract.RequesterStats{}}}
	q.index()
	return q
}

func TestRandomAsksKeepEveryWindowWithinTheLimits(t *testing.T) {
	for _, c := range []struct {
		limits   contract.QuotaLimits
		maxCount int
	}{
		{contract.QuotaLimits{RequestsPerMinute: 15, RequestsPerDay: 1 << 30}, 30},
		{contract.QuotaLimits{RequestsPerMinute: 7, RequestsPerDay: 1 << 30, TokensPerMinute: 3000}, 14},
		{contract.QuotaLimits{RequestsPerMinute: 400, RequestsPerDay: 1 << 30, TokensPerMinute: 100000}, 50},
		{contract.QuotaLimits{RequestsPerMinute: 5000, RequestsPerDay: 1 << 30}, 3},                         // busy, not full: grants get compacted
		{contract.QuotaLimits{RequestsPerMinute: 500, RequestsPerDay: 1 << 30, TokensPerMinute: 200000}, 2}, // busy and full: compacted too
	} {
		l := c.limits
		t.Run(fmt.Sprintf("%d per minute, %d tokens", l.RequestsPerMinute, l.TokensPerMinute), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(1, uint64(l.RequestsPerMinute)))
			q, led := newTestQuota(l), newLedger(t)
			now := quotaStart
			compacted := false
			for range 5000 {
				now = now.Add(time.Duration(rng.IntN(int(200 * time.Millisecond))))
				req := contract.ReserveRequest{Horizon: time.Duration(rng.IntN(int(2 * time.Minute)))}
				for range 1 + rng.IntN(4) {
					req.Asks = append(req.Asks, contract.Ask{Requester: fmt.Sprint("r", rng.IntN(40)),
						Count: 1 + rng.IntN(c.maxCount), Tokens: rng.IntN(1000)})
				}
				if err := q.validate(req); err != nil {
					t.Fatal(err)
				}
				res := q.reserve(now, req)
				for i, a := range req.Asks {
					led.record(a, now, req.Horizon, res.Grants[i])
				}
				compacted = compacted || q.compacted > 0
			}
			led.checkWindows(l)
			led.checkUsedWereGranted()
			if l.RequestsPerMinute >= 500 && !compacted {
				t.Error("the busy pool never compacted its grants")
			}
		})
	}
}

func TestAsksStopAtTheDaysBudget(t *testing.T) {
	q := newTestQuota(contract.QuotaLimits{RequestsPerMinute: 10, RequestsPerDay: 3, DayZone: "UTC"})
	now := quotaStart
	res := q.reserve(now, contract.ReserveRequest{Horizon: time.Minute, Asks: []contract.Ask{{Requester: "a", Count: 2}, {Requester: "b", Count: 2}, {Requester: "c", Count: 1}}})
	midnight := time.Date(2026, 1, 6, 0, 0, 0, 0, time.UTC)
	if len(res.Grants[0]) != 2 || len(res.Grants[1]) != 1 || len(res.Grants[2]) != 0 || !res.ExhaustedUntil.Equal(midnight) {
		t.Fatalf("reservation %+v; want 2, 1 and no slots, exhausted until %s", res, midnight)
	}
	if len(q.st.Held) != 0 {
		t.Fatalf("held %v; nothing is held past the day's budget", q.st.Held)
	}
}

func TestACallAboveTheTokenLimitGetsAMinuteOfItsOwn(t *testing.T) {
	// The limit was lowered below what a run's calls use: they are slowed, not refused.
	q := newTestQuota(contract.QuotaLimits{RequestsPerMinute: 100, RequestsPerDay: 100, TokensPerMinute: 1000})
	req := contract.ReserveRequest{Horizon: 3 * time.Minute, Asks: []contract.Ask{{Requester: "a", Count: 3, Tokens: 5000}}}
	if err := q.validate(req); err != nil {
		t.Fatal(err)
	}
	got := q.reserve(quotaStart, req).Grants[0]
	want := []time.Time{quotaStart, quotaStart.Add(askWindow), quotaStart.Add(2 * askWindow)}
	if !slices.EqualFunc(got, want, time.Time.Equal) {
		t.Fatalf("got %v, want a slot a minute apart: %v", got, want)
	}
}

func TestAPenaltyDropsTheSlotsHeldInIt(t *testing.T) {
	q := newTestQuota(contract.QuotaLimits{RequestsPerMinute: 1, RequestsPerDay: 100})
	ask := func(now time.Time, r string) []time.Time {
		return q.reserve(now, contract.ReserveRequest{Horizon: 10 * time.Second, Asks: []contract.Ask{{Requester: r, Count: 1}}}).Grants[0]
	}
	ask(quotaStart, "a")
	held := ask(quotaStart, "b")
	until := held[0].Add(30 * time.Second)
	q.penalize(contract.Penalty{Until: until})
	got := ask(held[0].Add(-5*time.Second), "b")
	if len(got) != 1 || got[0].Before(until) {
		t.Fatalf("b held %v inside a penalty until %s, came back and got %v; want a slot after the penalty", held, until, got)
	}
}

// busyPool asks the way 30 runs of a fast provider do: each asks for 10 slots every 600 ms,
// a request every 20 ms, 500 slots a second, at 100000 a minute.
func busyPool(q *quota, now time.Time, requests int, check func(contract.Reservation)) time.Time {
	for i := range requests {
		now = now.Add(20 * time.Millisecond)
		res := q.reserve(now, contract.ReserveRequest{Horizon: 10 * time.Second,
			Asks: []contract.Ask{{Requester: fmt.Sprint("annotation-", i%30, "-urgency"), Count: 10, Tokens: 300}}})
		if check != nil {
			check(res)
		}
	}
	return now
}

func TestABusyPoolKeepsItsStateSmall(t *testing.T) {
	q := newTestQuota(contract.QuotaLimits{RequestsPerMinute: 100000, RequestsPerDay: 1 << 30})
	most := 0
	now := busyPool(q, quotaStart, 30000, func(res contract.Reservation) { // 10 minutes
		if len(res.Grants[0]) != 10 {
			t.Fatalf("a pool used at a third of its limit granted %d of 10 slots", len(res.Grants[0]))
		}
		most = max(most, len(q.st.Grants))
	})
	q.prune(now)
	data, err := json.Marshal(q.st)
	if err != nil {
		t.Fatal(err)
	}
	if most > 2*compactAbove || len(data) > 64<<10 {
		t.Fatalf("up to %d grants kept, %d bytes handed over; want at most %d grants and 64 KiB", most, len(data), 2*compactAbove)
	}
	if st := q.status(now); st.CallsThisMinute < 29000 || st.CallsThisMinute > 30500 {
		t.Fatalf("state shows %d calls this minute, want about 30000", st.CallsThisMinute)
	}
}

func BenchmarkReserveBusyPool(b *testing.B) {
	q := newTestQuota(contract.QuotaLimits{RequestsPerMinute: 100000, RequestsPerDay: 1 << 30, TokensPerMinute: 1 << 30})
	now := busyPool(q, quotaStart, 3000, nil) // a full minute of grants first
	b.ResetTimer()
	busyPool(q, now, b.N, nil)
}

// TestRecordedAnswersAreGivenAgain feeds the requests and signals of the recorded quota
// histories to the pool in their order and times, and expects the answers recorded: the
// previous release's requests are answered as that release did.
func TestRecordedAnswersAreGivenAgain(t *testing.T) {
	files, err := filepath.Glob("testdata/quota_*.json")
	if err != nil || len(files) == 0 {
		t.Fatalf("no recorded quota histories: %v", err)
	}
	dc := converter.GetDefaultDataConverter()
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			var h historypb.History
			if err := protojson.Unmarshal(data, &h); err != nil {
				t.Fatal(err)
			}
			var (
				q       *quota
				now     time.Time
				answers = map[string]any{} // by update ID: a Reservation or a BatchAdmission
				checked int
			)
			for _, e := range h.Events {
				switch e.GetEventType() {
				case enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED:
					var in contract.QuotaInput
					if err := dc.FromPayloads(e.GetWorkflowExecutionStartedEventAttributes().GetInput(), &in); err != nil {
						t.Fatal(err)
					}
					q = newTestQuota(in.Limits)
				case enumspb.EVENT_TYPE_WORKFLOW_TASK_STARTED:
					now = e.GetEventTime().AsTime() // workflow.Now during the task
				case enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED:
					a := e.GetWorkflowExecutionSignaledEventAttributes()
					switch a.GetSignalName() {
					case contract.SignalPenalize:
						var p contract.Penalty
						if err := dc.FromPayloads(a.GetInput(), &p); err != nil {
							t.Fatal(err)
						}
						q.penalize(p)
					case contract.SignalConfigure:
						var l contract.QuotaLimits
						if err := dc.FromPayloads(a.GetInput(), &l); err != nil {
							t.Fatal(err)
						}
						if l.Validate() == nil {
							q.st.Limits = l
						}
					}
				case enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED:
					a := e.GetWorkflowExecutionUpdateAcceptedEventAttributes().GetAcceptedRequest()
					id, args := a.GetMeta().GetUpdateId(), a.GetInput().GetArgs()
					switch a.GetInput().GetName() {
					case contract.UpdateBatchAdmit:
						var req contract.BatchAdmit
						if err := dc.FromPayloads(args, &req); err != nil {
							t.Fatal(err)
						}
						if req.Limits != nil {
							_ = q.adopt(*req.Limits)
						}
						answers[id] = q.admitBatch(req)
					case contract.UpdateBatchRelease:
						var name string
						if err := dc.FromPayloads(args, &name); err != nil {
							t.Fatal(err)
						}
						delete(q.st.Batches, name)
						answers[id] = q.batches(false)
					default:
						var req contract.ReserveRequest
						if err := dc.FromPayloads(args, &req); err != nil {
							t.Fatal(err)
						}
						if err := q.validate(req); err != nil {
							t.Fatalf("a request accepted then is refused now: %+v: %v", req, err)
						}
						if req.Limits != nil {
							_ = q.adopt(*req.Limits)
						}
						answers[id] = q.reserve(now, req)
					}
				case enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_COMPLETED:
					a := e.GetWorkflowExecutionUpdateCompletedEventAttributes()
					id := a.GetMeta().GetUpdateId()
					switch got := answers[id].(type) {
					case contract.BatchAdmission:
						var want contract.BatchAdmission
						if err := dc.FromPayloads(a.GetOutcome().GetSuccess(), &want); err != nil {
							t.Fatal(err)
						}
						if got != want {
							t.Fatalf("update %s (event %d): answered %+v, recorded %+v", id, e.GetEventId(), got, want)
						}
					case contract.Reservation:
						var want contract.Reservation
						if err := dc.FromPayloads(a.GetOutcome().GetSuccess(), &want); err != nil {
							t.Fatal(err)
						}
						if !sameReservation(got, want) {
							t.Fatalf("update %s (event %d): answered %+v, recorded %+v", id, e.GetEventId(), got, want)
						}
					default:
						t.Fatalf("update %s (event %d) completed without being accepted", id, e.GetEventId())
					}
					checked++
				}
			}
			if checked == 0 {
				t.Fatal("no reservations in the history")
			}
		})
	}
}

func sameReservation(a, b contract.Reservation) bool {
	if !a.ExhaustedUntil.Equal(b.ExhaustedUntil) || !slices.EqualFunc(a.Slots, b.Slots, time.Time.Equal) || len(a.Grants) != len(b.Grants) {
		return false
	}
	for i := range a.Grants {
		if !slices.EqualFunc(a.Grants[i], b.Grants[i], time.Time.Equal) {
			return false
		}
	}
	return true
}

// The pool admits chunks of batch-mode runs within MaxBatches and MaxEnqueuedTokens, admits a
// chunk it admitted before again without counting it twice, and frees its place once released.
func TestQuotaAdmitsBatchesWithinItsLimits(t *testing.T) {
	r := newQuotaEnv(t)
	var answers []contract.BatchAdmission
	send := func(name string, arg any) {
		r.env.UpdateWorkflow(name, fmt.Sprint(len(answers), name), &testsuite.TestUpdateCallback{OnAccept: func() {}, OnReject: func(err error) { t.Error(err) },
			OnComplete: func(v any, err error) {
				if err != nil {
					t.Error(err)
				}
				answers = append(answers, v.(contract.BatchAdmission))
			}}, arg)
	}
	steps := []func(){
		func() { send(contract.UpdateBatchAdmit, contract.BatchAdmit{Name: "c1", Tokens: 600}) },
		func() { send(contract.UpdateBatchAdmit, contract.BatchAdmit{Name: "c2", Tokens: 600}) }, // over the tokens
		func() { send(contract.UpdateBatchAdmit, contract.BatchAdmit{Name: "c1", Tokens: 600}) }, // a retried submit
		func() { send(contract.UpdateBatchAdmit, contract.BatchAdmit{Name: "c3", Tokens: 300}) },
		func() { send(contract.UpdateBatchAdmit, contract.BatchAdmit{Name: "c4", Tokens: 10}) }, // over the jobs
		func() { send(contract.UpdateBatchRelease, "c1") },
		func() { send(contract.UpdateBatchRelease, "c1") }, // released twice: once
		func() { send(contract.UpdateBatchAdmit, contract.BatchAdmit{Name: "c2", Tokens: 600}) },
	}
	for i, step := range steps {
		r.env.RegisterDelayedCallback(step, time.Duration(i+1)*time.Second)
	}
	limits := contract.QuotaLimits{RequestsPerMinute: 10, RequestsPerDay: 100, MaxBatches: 2, MaxEnqueuedTokens: 1000}
	if err := r.execute(limits, time.Minute); err != nil && !isCanceled(err) {
		t.Fatal(err)
	}
	want := []contract.BatchAdmission{
		{Admitted: true, Batches: 1, EnqueuedTokens: 600},
		{Admitted: false, Batches: 1, EnqueuedTokens: 600},
		{Admitted: true, Batches: 1, EnqueuedTokens: 600},
		{Admitted: true, Batches: 2, EnqueuedTokens: 900},
		{Admitted: false, Batches: 2, EnqueuedTokens: 900},
		{Admitted: false, Batches: 1, EnqueuedTokens: 300},
		{Admitted: false, Batches: 1, EnqueuedTokens: 300},
		{Admitted: true, Batches: 2, EnqueuedTokens: 900},
	}
	if fmt.Sprint(answers) != fmt.Sprint(want) {
		t.Errorf("answers\n %v\nwant\n %v", answers, want)
	}
}
