package runs

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"

	"github.com/mhannotator/mha/internal/contract"
)

var slotBase = time.Date(2026, 1, 5, 10, 0, 0, 0, time.UTC)

// fakeQuota stands in for the server and a pool's workflow: it records every reserve Update
// the QuotaClient sends and answers it with answer. Calls the QuotaClient must not make hit
// the nil client.Client and panic.
type fakeQuota struct {
	client.Client

	mu     sync.Mutex
	sent   []sentUpdate
	answer func(n int, req contract.ReserveRequest) (contract.Reservation, error) // n counts Updates from 0
	gates  map[int]chan struct{}                                                  // Update n waits for its gate to close
	sentCh chan int                                                               // receives n as Update n arrives
}

type sentUpdate struct {
	id    string
	req   contract.ReserveRequest
	start contract.QuotaInput
}

func newFakeQuota() *fakeQuota {
	return &fakeQuota{gates: map[int]chan struct{}{}, sentCh: make(chan int, 100), answer: grantAll}
}

// grantAll grants every ask its count of slots; ask i of Update n gets slots at minute n, second i.
func grantAll(n int, req contract.ReserveRequest) (contract.Reservation, error) {
	var res contract.Reservation
	for i, a := range req.Asks {
		var slots []time.Time
		for range a.Count {
			slots = append(slots, slotBase.Add(time.Duration(n)*time.Minute+time.Duration(i)*time.Second))
		}
		res.Grants = append(res.Grants, slots)
	}
	return res, nil
}

// gate makes Update n wait until the returned function is called.
func (f *fakeQuota) gate(n int) (release func()) {
	ch := make(chan struct{})
	f.mu.Lock()
	f.gates[n] = ch
	f.mu.Unlock()
	return sync.OnceFunc(func() { close(ch) })
}

type fakeStart struct {
	input contract.QuotaInput
}

func (fakeStart) Get(context.Context) (client.WorkflowRun, error) { return nil, nil }

func (f *fakeQuota) NewWithStartWorkflowOperation(opts client.StartWorkflowOptions, workflow any, args ...any) client.WithStartWorkflowOperation {
	return fakeStart{input: args[0].(contract.QuotaInput)}
}

func (f *fakeQuota) UpdateWithStartWorkflow(ctx context.Context, opts client.UpdateWithStartWorkflowOptions) (client.WorkflowUpdateHandle, error) {
	req := opts.UpdateOptions.Args[0].(contract.ReserveRequest)
	f.mu.Lock()
	n := len(f.sent)
	f.sent = append(f.sent, sentUpdate{id: opts.UpdateOptions.UpdateID, req: req, start: opts.StartWorkflowOperation.(fakeStart).input})
	gate := f.gates[n]
	f.mu.Unlock()
	f.sentCh <- n
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	res, err := f.answer(n, req)
	if err != nil {
		return nil, err
	}
	return fakeHandle{res: res}, nil
}

func (f *fakeQuota) updates() []sentUpdate {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.sent)
}

// awaitUpdate waits until Update n was sent.
func (f *fakeQuota) awaitUpdate(t *testing.T, n int) {
	t.Helper()
	for {
		select {
		case got := <-f.sentCh:
			if got >= n {
				return
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("Update %d was never sent; sent %+v", n, f.updates())
		}
	}
}

type fakeHandle struct{ res contract.Reservation }

func (fakeHandle) WorkflowID() string { return "" }
func (fakeHandle) RunID() string      { return "" }
func (fakeHandle) UpdateID() string   { return "" }
func (h fakeHandle) Get(_ context.Context, v any) error {
	*v.(*contract.Reservation) = h.res
	return nil
}

// outcome is what one Reserve call returned.
type outcome struct {
	slots     []time.Time
	exhausted time.Time
	err       error
}

// reserve calls Reserve in the background and returns where its outcome arrives.
func reserve(ctx context.Context, q *QuotaClient, ask contract.Ask, horizon time.Duration, l contract.QuotaLimits) <-chan outcome {
	out := make(chan outcome, 1)
	go func() {
		slots, exhausted, err := q.Reserve(ctx, "p", ask, horizon, l)
		out <- outcome{slots, exhausted, err}
	}()
	return out
}

// awaitQueued waits until n reservations wait for the next Update of pool p.
func awaitQueued(t *testing.T, q *QuotaClient, n int) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		q.mu.Lock()
		queued := len(q.queue["p"])
		q.mu.Unlock()
		if queued == n {
			return
		}
	}
	t.Fatalf("%d reservations never queued", n)
}

func receive(t *testing.T, ch <-chan outcome) outcome {
	t.Helper()
	select {
	case o := <-ch:
		return o
	case <-time.After(5 * time.Second):
		t.Fatal("Reserve never returned")
		return outcome{}
	}
}

func limits(rpm int) contract.QuotaLimits {
	return contract.QuotaLimits{RequestsPerMinute: rpm, RequestsPerDay: 1000}
}

func TestReservationsQueuedDuringAnUpdateGoInTheNextOneInArrivalOrder(t *testing.T) {
	f := newFakeQuota()
	q := &QuotaClient{Client: f, TaskQueue: "tq", Limits: limits(1)}
	release := f.gate(0)
	first := reserve(context.Background(), q, contract.Ask{Requester: "run-0", Count: 1}, 5*time.Second, limits(10))
	f.awaitUpdate(t, 0)

	var outs []<-chan outcome
	for i := 1; i <= 5; i++ {
		// Asks above the per-minute limit are sent as they are: the pool grants what it can.
		ask := contract.Ask{Requester: fmt.Sprint("run-", i), Count: 10 + i, Tokens: i}
		outs = append(outs, reserve(context.Background(), q, ask, 5*time.Second, limits(10+i)))
		awaitQueued(t, q, i)
	}
	release()
	if o := receive(t, first); o.err != nil || len(o.slots) != 1 {
		t.Fatalf("the first reservation got %+v", o)
	}
	for i, out := range outs {
		o := receive(t, out)
		want := slotBase.Add(time.Minute + time.Duration(i)*time.Second) // ask i of Update 1
		if o.err != nil || len(o.slots) != 11+i || !o.slots[0].Equal(want) {
			t.Fatalf("run-%d got %+v; want its own %d slots at %s", i+1, o, 11+i, want)
		}
	}

	sent := f.updates()
	if len(sent) != 2 {
		t.Fatalf("sent %d Updates, want 2: one in flight, one for all that queued meanwhile", len(sent))
	}
	next := sent[1].req
	var order []string
	for _, a := range next.Asks {
		order = append(order, a.Requester)
	}
	if !slices.Equal(order, []string{"run-1", "run-2", "run-3", "run-4", "run-5"}) || next.Asks[2].Count != 13 || next.Asks[2].Tokens != 3 {
		t.Fatalf("the second Update asks %+v; want run-1..run-5 in arrival order, each with its own ask", next.Asks)
	}
	if next.Horizon != 5*time.Second || next.Count != 0 || next.Requester != "" {
		t.Fatalf("the second Update is %+v; want the asks' horizon and none of the previous release's fields", next)
	}
	if next.Limits == nil || *next.Limits != limits(15) || sent[1].start.Limits != limits(15) {
		t.Fatalf("the second Update sends limits %v and would start the pool with %v; want the latest, %v", next.Limits, sent[1].start.Limits, limits(15))
	}
	if sent[0].start.Limits != limits(10) || sent[0].start.Pool != "p" {
		t.Fatalf("the first Update would start the pool with %+v; want pool p with the caller's limits", sent[0].start)
	}
}

func TestTransientRefusalsAreRetried(t *testing.T) {
	f := newFakeQuota()
	f.answer = func(n int, req contract.ReserveRequest) (contract.Reservation, error) {
		switch n {
		case 0:
			return contract.Reservation{}, serviceerror.NewResourceExhausted(0, "too many outstanding updates")
		case 1:
			return contract.Reservation{}, serviceerror.NewAborted("workflow is continuing as new")
		}
		return grantAll(n, req)
	}
	q := &QuotaClient{Client: f, Limits: limits(5)}
	slots, _, err := q.Reserve(context.Background(), "p", contract.Ask{Requester: "run", Count: 2}, time.Second, limits(5))
	if err != nil || len(slots) != 2 {
		t.Fatalf("Reserve = %v, %v; want 2 slots after two refusals", slots, err)
	}
	sent := f.updates()
	if len(sent) != 3 || sent[0].id == "" || sent[1].id != sent[0].id || sent[2].id != sent[0].id {
		t.Fatalf("sent %+v; want the same Update three times, under one ID", sent)
	}
}

func TestAnUpdateErrorReachesEveryCallerOfThatUpdate(t *testing.T) {
	f := newFakeQuota()
	rejected := errors.New("reserve: ask 0: requester is empty")
	f.answer = func(n int, req contract.ReserveRequest) (contract.Reservation, error) {
		if n == 1 {
			return contract.Reservation{}, rejected
		}
		return grantAll(n, req)
	}
	q := &QuotaClient{Client: f}
	release := f.gate(0)
	first := reserve(context.Background(), q, contract.Ask{Requester: "run-0", Count: 1}, time.Second, limits(5))
	f.awaitUpdate(t, 0)
	var outs []<-chan outcome
	for i := 1; i <= 3; i++ {
		outs = append(outs, reserve(context.Background(), q, contract.Ask{Requester: fmt.Sprint("run-", i), Count: 1}, time.Second, limits(5)))
		awaitQueued(t, q, i)
	}
	release()
	if o := receive(t, first); o.err != nil {
		t.Fatalf("the first reservation failed: %v", o.err)
	}
	for i, out := range outs {
		if o := receive(t, out); !errors.Is(o.err, rejected) || len(o.slots) != 0 {
			t.Fatalf("run-%d got %+v; want the Update's error", i+1, o)
		}
	}
	if n := len(f.updates()); n != 2 {
		t.Fatalf("sent %d Updates; an error that is not the server's busy signal is not retried", n)
	}
	// The client is not stuck: the next reservation goes out.
	if _, _, err := q.Reserve(context.Background(), "p", contract.Ask{Requester: "run-4", Count: 1}, time.Second, limits(5)); err != nil {
		t.Fatalf("a reservation after the error failed: %v", err)
	}
}

func TestACancelledCallerReturnsAtOnceAndOthersGoOn(t *testing.T) {
	f := newFakeQuota()
	q := &QuotaClient{Client: f}
	release := f.gate(0)
	inFlightCtx, cancelInFlight := context.WithCancel(context.Background())
	inFlight := reserve(inFlightCtx, q, contract.Ask{Requester: "run-0", Count: 1}, time.Second, limits(5))
	f.awaitUpdate(t, 0)
	other := reserve(context.Background(), q, contract.Ask{Requester: "run-1", Count: 1}, time.Second, limits(5))
	awaitQueued(t, q, 1)
	queuedCtx, cancelQueued := context.WithCancel(context.Background())
	queued := reserve(queuedCtx, q, contract.Ask{Requester: "run-2", Count: 1}, time.Second, limits(5))
	awaitQueued(t, q, 2)
	last := reserve(context.Background(), q, contract.Ask{Requester: "run-3", Count: 1}, time.Second, limits(5))
	awaitQueued(t, q, 3)

	// Both give up while the Update is still in flight, and return without waiting for it.
	cancelInFlight()
	cancelQueued()
	for _, out := range []<-chan outcome{inFlight, queued} {
		select {
		case o := <-out:
			if !errors.Is(o.err, context.Canceled) {
				t.Fatalf("a cancelled caller got %+v, want context.Canceled", o)
			}
		case <-time.After(time.Second):
			t.Fatal("a cancelled caller still waits for the Update in flight")
		}
	}
	release()
	for _, out := range []<-chan outcome{other, last} {
		if o := receive(t, out); o.err != nil || len(o.slots) != 1 {
			t.Fatalf("a caller that did not cancel got %+v", o)
		}
	}
	sent := f.updates()
	if len(sent) != 2 || len(sent[1].req.Asks) != 2 || sent[1].req.Asks[0].Requester != "run-1" || sent[1].req.Asks[1].Requester != "run-3" {
		t.Fatalf("sent %+v; want the withdrawn run-2 left out of the second Update", sent)
	}
}

func TestReservationsWithoutLimitsStartThePoolWithTheClients(t *testing.T) {
	f := newFakeQuota()
	q := &QuotaClient{Client: f, Limits: limits(7)}
	if _, _, err := q.Reserve(context.Background(), "p", contract.Ask{Requester: "run", Count: 1}, time.Second, contract.QuotaLimits{}); err != nil {
		t.Fatal(err)
	}
	if sent := f.updates(); sent[0].req.Limits != nil || sent[0].start.Limits != limits(7) {
		t.Fatalf("sent limits %v and start input %+v; want none sent and the client's limits to start with", sent[0].req.Limits, sent[0].start)
	}
}

func TestOnlyShortReservationsSeeTheExhaustedDay(t *testing.T) {
	f := newFakeQuota()
	midnight := slotBase.Add(14 * time.Hour)
	f.answer = func(n int, req contract.ReserveRequest) (contract.Reservation, error) {
		if n == 0 {
			return grantAll(n, req)
		}
		return contract.Reservation{Grants: [][]time.Time{{slotBase, slotBase}, nil}, ExhaustedUntil: midnight}, nil
	}
	q := &QuotaClient{Client: f}
	release := f.gate(0)
	busy := reserve(context.Background(), q, contract.Ask{Requester: "run-0", Count: 1}, time.Second, limits(5))
	f.awaitUpdate(t, 0)
	full := reserve(context.Background(), q, contract.Ask{Requester: "run-1", Count: 2}, time.Second, limits(5))
	awaitQueued(t, q, 1)
	short := reserve(context.Background(), q, contract.Ask{Requester: "run-2", Count: 2}, time.Second, limits(5))
	awaitQueued(t, q, 2)
	release()
	receive(t, busy)
	if o := receive(t, full); len(o.slots) != 2 || !o.exhausted.IsZero() {
		t.Fatalf("a reservation that got all it asked for got %+v", o)
	}
	if o := receive(t, short); len(o.slots) != 0 || !o.exhausted.Equal(midnight) {
		t.Fatalf("a reservation that got nothing got %+v; want the day exhausted until %s", o, midnight)
	}
}

func TestAnAnswerOfTheWrongShapeFailsItsCallers(t *testing.T) {
	f := newFakeQuota()
	f.answer = func(int, contract.ReserveRequest) (contract.Reservation, error) {
		// A pool still running the previous release's code answers in Slots.
		return contract.Reservation{Slots: []time.Time{slotBase}}, nil
	}
	q := &QuotaClient{Client: f}
	if slots, _, err := q.Reserve(context.Background(), "p", contract.Ask{Requester: "run", Count: 1}, time.Second, limits(5)); err == nil {
		t.Fatalf("Reserve = %v, nil; want an error", slots)
	}
}

func TestReservationsWithDifferentHorizonsGoInSeparateUpdates(t *testing.T) {
	f := newFakeQuota()
	q := &QuotaClient{Client: f}
	release := f.gate(0)
	first := reserve(context.Background(), q, contract.Ask{Requester: "run-0", Count: 1}, time.Second, limits(5))
	f.awaitUpdate(t, 0)
	var outs []<-chan outcome
	for i, h := range []time.Duration{time.Second, time.Second, 2 * time.Second, time.Second} {
		outs = append(outs, reserve(context.Background(), q, contract.Ask{Requester: fmt.Sprint("run-", i+1), Count: 1}, h, limits(5)))
		awaitQueued(t, q, i+1)
	}
	release()
	receive(t, first)
	for _, out := range outs {
		if o := receive(t, out); o.err != nil || len(o.slots) != 1 {
			t.Fatalf("got %+v", o)
		}
	}
	var shape []string
	for _, u := range f.updates()[1:] {
		shape = append(shape, fmt.Sprint(len(u.req.Asks), "@", u.req.Horizon))
	}
	if !slices.Equal(shape, []string{"2@1s", "1@2s", "1@1s"}) {
		t.Fatalf("Updates after the first: %v; want arrival order kept, a horizon per Update", shape)
	}
}
