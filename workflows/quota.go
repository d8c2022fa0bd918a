package workflows

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"time"

	"go.temporal.io/sdk/workflow"

	"github.com/mhannotator/mha/internal/contract"
)

const (
	quotaWindow = time.Minute
	// grantMargin widens the minute slots are spaced by: a call starts a little after its
	// slot (timer wake-up, connection), by different amounts, and the provider counts
	// arrival times. Without it two calls a minute apart could land 59.99 s apart.
	grantMargin       = 500 * time.Millisecond
	maxQuotaHistory   = 4000
	maxRequesterStats = 1000 // also bounds how many requesters hold a slot
	// maxAsks and maxSlotsPerReserve bound one reserve Update's work and answer (each slot is
	// ~30 bytes of JSON in history). Past maxSlotsPerReserve an ask gets at most one slot.
	maxAsks            = 1000
	maxSlotsPerReserve = 5000
	// Past compactAbove grants, grants that already started and lie within compactSpan of
	// each other are merged into one at the latest of their times (see compact).
	compactAbove = 256
	compactSpan  = grantMargin
)

// Quota hands out request slots of one quota pool so that the provider's limits hold in every
// sliding window, across every run that shares the pool. Its reserve handler never waits: the
// server allows only a few Updates in flight per workflow, so callers wait on their own.
//
// A run asks for the slots it can use soon (within its horizon). When the pool has none that
// soon, the run gets the pool's next free slot, held for it: it sleeps on a durable timer,
// comes back shortly before the slot and gets it then. Slots are handed out in time order,
// so waiting runs are served in the order they came, whoever else asks meanwhile.
func Quota(ctx workflow.Context, in contract.QuotaInput) error {
	q := &quota{}
	if in.State != nil {
		q.st = *in.State
	} else {
		q.st = contract.QuotaState{Pool: in.Pool, Limits: in.Limits}
	}
	if q.st.Requesters == nil {
		q.st.Requesters = map[string]contract.RequesterStats{}
	}
	if err := q.st.Limits.Validate(); err != nil {
		return err
	}
	q.index()
	if err := workflow.SetQueryHandler(ctx, contract.QueryQuotaState, func() (contract.QuotaStatus, error) {
		return q.status(workflow.Now(ctx)), nil
	}); err != nil {
		return err
	}
	if err := workflow.SetUpdateHandlerWithOptions(ctx, contract.UpdateReserve,
		func(ctx workflow.Context, req contract.ReserveRequest) (contract.Reservation, error) {
			if req.Limits != nil {
				if err := q.adopt(*req.Limits); err != nil {
					workflow.GetLogger(ctx).Warn("Ignoring invalid quota limits of a reservation", "error", err)
				}
			}
			return q.reserve(workflow.Now(ctx), req), nil
		},
		workflow.UpdateHandlerOptions{Validator: q.validate}); err != nil {
		return err
	}
	// Registering handlers records nothing in history: pools started by earlier releases
	// replay unchanged and take batch requests from now on.
	if err := workflow.SetUpdateHandler(ctx, contract.UpdateBatchAdmit,
		func(ctx workflow.Context, req contract.BatchAdmit) (contract.BatchAdmission, error) {
			if req.Limits != nil {
				if err := q.adopt(*req.Limits); err != nil {
					workflow.GetLogger(ctx).Warn("Ignoring invalid quota limits of a batch", "error", err)
				}
			}
			return q.admitBatch(req), nil
		}); err != nil {
		return err
	}
	if err := workflow.SetUpdateHandler(ctx, contract.UpdateBatchRelease,
		func(ctx workflow.Context, name string) (contract.BatchAdmission, error) {
			delete(q.st.Batches, name)
			return q.batches(false), nil
		}); err != nil {
		return err
	}
	penalties := workflow.GetSignalChannel(ctx, contract.SignalPenalize)
	configures := workflow.GetSignalChannel(ctx, contract.SignalConfigure)
	workflow.Go(ctx, func(ctx workflow.Context) {
		for {
			var p contract.Penalty
			penalties.Receive(ctx, &p)
			q.penalize(p)
		}
	})
	workflow.Go(ctx, func(ctx workflow.Context) {
		for {
			var l contract.QuotaLimits
			configures.Receive(ctx, &l)
			q.configure(ctx, l)
		}
	})
	// The server suggests continuing as new before history or the Update count grows too big.
	if err := workflow.Await(ctx, func() bool { return continueAsNewDue(ctx, maxQuotaHistory) }); err != nil {
		return err
	}
	// Handlers still running or signals still buffered would be lost at continue-as-new.
	if err := workflow.Await(ctx, func() bool { return workflow.AllHandlersFinished(ctx) }); err != nil {
		return err
	}
	for {
		var p contract.Penalty
		if !penalties.ReceiveAsync(&p) {
			break
		}
		q.penalize(p)
	}
	for {
		var l contract.QuotaLimits
		if !configures.ReceiveAsync(&l) {
			break
		}
		q.configure(ctx, l)
	}
	q.prune(workflow.Now(ctx))
	st := q.st
	return workflow.NewContinueAsNewError(ctx, contract.QuotaName, contract.QuotaInput{Pool: st.Pool, Limits: st.Limits, State: &st})
}

func continueAsNewDue(ctx workflow.Context, maxEvents int) bool {
	info := workflow.GetInfo(ctx)
	return info.GetContinueAsNewSuggested() || info.GetCurrentHistoryLength() > maxEvents
}

type quota struct {
	st contract.QuotaState

	// Derived from st.Grants (never handed over): slots[i] and tokens[i] sum the slots and
	// tokens of Grants[:i], plus a base that pruning leaves behind, so that any range of grants
	// sums by one subtraction and the slot the window hinges on is found by binary search.
	// Both have len(Grants)+1 entries.
	slots, tokens []int
	compacted     int                   // len(Grants) after the last compaction
	day           quotaDay              // the day last looked up
	rejected      *contract.QuotaLimits // limits last ignored as invalid, so they warn once
}

// quotaDay is one day of the day zone: [start, end).
type quotaDay struct {
	loc        *time.Location
	start, end time.Time
	name       string
}

func (q *quota) validate(req contract.ReserveRequest) error {
	if len(req.Asks) == 0 {
		return q.validateLegacy(req)
	}
	switch {
	case req.Requester != "" || len(req.Requesters) > 0 || req.Count != 0 || req.Tokens != 0:
		return errors.New("reserve: asks and the previous release's requester, count and tokens exclude each other")
	case len(req.Asks) > maxAsks:
		return fmt.Errorf("reserve: %d asks in one request, at most %d", len(req.Asks), maxAsks)
	case req.Horizon < 0:
		return fmt.Errorf("reserve: horizon %s must not be negative", req.Horizon)
	}
	for i, a := range req.Asks {
		switch {
		case a.Requester == "":
			return fmt.Errorf("reserve: ask %d: requester is empty", i)
		case a.Count <= 0:
			return fmt.Errorf("reserve: ask %d: count %d must be at least 1", i, a.Count)
		case a.Tokens < 0:
			return fmt.Errorf("reserve: ask %d: tokens %d must not be negative", i, a.Tokens)
		}
	}
	return nil
}

// validateLegacy checks a request of the previous release exactly as that release did.
func (q *quota) validateLegacy(req contract.ReserveRequest) error {
	switch {
	case req.Requester == "" && len(req.Requesters) == 0:
		return errors.New("reserve: requester is empty")
	case len(req.Requesters) > 0 && len(req.Requesters) != req.Count:
		return fmt.Errorf("reserve: %d requesters for %d slots", len(req.Requesters), req.Count)
	case req.Count <= 0:
		return fmt.Errorf("reserve: count %d must be at least 1", req.Count)
	case req.Count > q.st.Limits.RequestsPerMinute:
		return fmt.Errorf("reserve: count %d is above the per-minute limit %d", req.Count, q.st.Limits.RequestsPerMinute)
	case req.Tokens < 0:
		return fmt.Errorf("reserve: tokens %d must not be negative", req.Tokens)
	case q.st.Limits.TokensPerMinute > 0 && req.Tokens > q.st.Limits.TokensPerMinute:
		return fmt.Errorf("reserve: %d tokens per call is above the per-minute limit %d", req.Tokens, q.st.Limits.TokensPerMinute)
	}
	return nil
}

// reserve answers a request at once; see contract.ReserveRequest. Every new slot lies at the
// earliest time that keeps every sliding minute within the request and token limits, after
// any penalty and no earlier than any slot granted before, within the day's budget: slots are
// handed out in arrival order, so requesters are served in turn.
func (q *quota) reserve(now time.Time, req contract.ReserveRequest) contract.Reservation {
	q.prune(now)
	if len(req.Asks) == 0 {
		return q.reserveLegacy(now, req)
	}
	q.st.Late = contract.SlotLateness // asking workers start calls up to this late
	res := contract.Reservation{Grants: make([][]time.Time, len(req.Asks))}
	horizon := now.Add(req.Horizon)
	granted := 0
	for i, a := range req.Asks {
		slots, waiting := q.takeHeld(a.Requester, horizon, a.Count)
		// A requester that still waits for its held slot gets only that back: anything new
		// would lie after it.
		for !waiting && len(slots) < a.Count && granted < maxSlotsPerReserve && res.ExhaustedUntil.IsZero() {
			at := q.nextSlot(now, a.Tokens)
			if at.After(horizon) {
				break
			}
			if res.ExhaustedUntil = q.admit(at, a.Requester, a.Tokens); !res.ExhaustedUntil.IsZero() {
				break
			}
			slots = append(slots, at)
			granted++
		}
		// Nothing soon: hold the next free slot, so the run gets it in its turn.
		if len(slots) == 0 && res.ExhaustedUntil.IsZero() {
			at := q.nextSlot(now, a.Tokens)
			if res.ExhaustedUntil = q.admit(at, a.Requester, a.Tokens); res.ExhaustedUntil.IsZero() {
				slots = append(slots, at)
				if at.After(horizon) {
					q.hold(a.Requester, at)
				}
			}
		}
		res.Grants[i] = slots
	}
	return res
}

// reserveLegacy answers the previous release's request as that release did: Count slots at
// whatever time they fall.
func (q *quota) reserveLegacy(now time.Time, req contract.ReserveRequest) contract.Reservation {
	var res contract.Reservation
	for i := range req.Count {
		at := q.nextSlot(now, req.Tokens)
		if res.ExhaustedUntil = q.admit(at, legacyRequester(req, i), req.Tokens); !res.ExhaustedUntil.IsZero() {
			break
		}
		res.Slots = append(res.Slots, at)
	}
	return res
}

// takeHeld hands back requester's held slots: those that start by horizon leave Held (they
// are the requester's to use now, up to count of them); one that starts later stays held and
// is answered again, and waiting says so. Slots that passed were dropped by prune.
func (q *quota) takeHeld(requester string, horizon time.Time, count int) (slots []time.Time, waiting bool) {
	held := q.st.Held[requester]
	keep := held[:0]
	for _, at := range held {
		switch {
		case at.After(horizon):
			slots = append(slots, at)
			keep = append(keep, at)
			waiting = true
		case len(slots) < count:
			slots = append(slots, at)
		default:
			keep = append(keep, at)
		}
	}
	if len(keep) == 0 {
		delete(q.st.Held, requester)
	} else {
		q.st.Held[requester] = keep
	}
	return slots, waiting
}

// hold records a slot granted beyond the requester's horizon. reserve holds a slot only for a
// requester that holds none, so each holds at most one. Past maxRequesterStats holders the
// slot is granted but not held: its run comes back, finds nothing and queues again.
func (q *quota) hold(requester string, at time.Time) {
	if q.st.Held == nil {
		q.st.Held = map[string][]time.Time{}
	}
	if _, known := q.st.Held[requester]; !known && len(q.st.Held) >= maxRequesterStats {
		return
	}
	q.st.Held[requester] = append(q.st.Held[requester], at)
}

// admit grants the slot at `at` unless the budget of its day is spent; then it grants nothing
// and returns when that day ends.
func (q *quota) admit(at time.Time, requester string, tokens int) (exhaustedUntil time.Time) {
	if day := q.dayOf(at); q.countOnDay(day) >= q.st.Limits.RequestsPerDay {
		return day.end
	}
	q.grant(at, tokens)
	q.count(requester, at)
	return time.Time{}
}

// grant appends a slot; one at the same time and with the same tokens as the last grant joins
// it, which keeps the state small when many slots are granted at once.
func (q *quota) grant(at time.Time, tokens int) {
	g := q.st.Grants
	n := len(g)
	if n > 0 && g[n-1].At.Equal(at) && g[n-1].Tokens == tokens {
		g[n-1].Count = slotsOf(g[n-1]) + 1
		q.slots[n]++
		q.tokens[n] += tokens
		return
	}
	q.st.Grants = append(g, contract.Grant{At: at, Tokens: tokens})
	q.slots = append(q.slots, q.slots[n]+1)
	q.tokens = append(q.tokens, q.tokens[n]+tokens)
}

// slotsOf is how many slots a grant stands for; the previous release recorded one per grant.
func slotsOf(g contract.Grant) int { return max(g.Count, 1) }

// index rebuilds the sums that nextSlot and countOnDay search, after Grants was replaced.
func (q *quota) index() {
	q.slots = make([]int, 1, len(q.st.Grants)+1)
	q.tokens = make([]int, 1, len(q.st.Grants)+1)
	for i, g := range q.st.Grants {
		q.slots = append(q.slots, q.slots[i]+slotsOf(g))
		q.tokens = append(q.tokens, q.tokens[i]+slotsOf(g)*g.Tokens)
	}
}

// count adds a grant to a requester's stats; past maxRequesterStats names, new ones are not
// tracked, so a flood of requesters cannot grow the state without bound.
func (q *quota) count(requester string, at time.Time) {
	s, known := q.st.Requesters[requester]
	if !known && len(q.st.Requesters) >= maxRequesterStats {
		return
	}
	s.Granted++
	s.LastGrant = at
	q.st.Requesters[requester] = s
}

// nextSlot is the earliest start time, no earlier than the last grant, that keeps the
// minute ending at it within the limits. A call of more tokens than the per-minute limit
// (possible after the limit was lowered) waits for a minute of its own instead of forever.
func (q *quota) nextSlot(now time.Time, tokens int) time.Time {
	at := now
	if q.st.PenaltyUntil.After(at) {
		at = q.st.PenaltyUntil
	}
	g := q.st.Grants
	n := len(g)
	if n > 0 && g[n-1].At.After(at) {
		at = g[n-1].At
	}
	// A window [t, t+1m) holds the slot at `at` and every slot after at-1m. With
	// requests_per_minute slots already in it, wait until the rpm-th latest of them leaves.
	if rpm := q.st.Limits.RequestsPerMinute; q.slots[n]-q.slots[0] >= rpm {
		k := q.slots[n] - rpm // that slot's place in the running count
		i := sort.Search(n, func(i int) bool { return q.slots[i+1] > k })
		at = later(at, g[i].At.Add(quotaWindow+q.margin()))
	}
	// Likewise for tokens: the latest grants whose tokens fit beside this call's may stay in
	// the window, every earlier one must leave it.
	if tpm := q.st.Limits.TokensPerMinute; tpm > 0 {
		c := min(tokens, tpm)
		j := sort.Search(n+1, func(j int) bool { return q.tokens[n]-q.tokens[j]+c <= tpm })
		if j > 0 {
			at = later(at, g[j-1].At.Add(quotaWindow+q.margin()))
		}
	}
	return at
}

// margin is how much longer than a minute a slot stays in the windows: the arrival jitter,
// plus how late a call may start after its slot.
func (q *quota) margin() time.Duration { return grantMargin + q.st.Late }

// heldTolerance is how late a run may come back for its held slot and still get it: as late
// as a call may start after its slot (half the jitter margin before calls could be late).
// Later, the slot is wasted (it still counts in the windows) and the run queues again.
func (q *quota) heldTolerance() time.Duration {
	if q.st.Late > 0 {
		return q.st.Late
	}
	return grantMargin / 2
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// dayOf is the day (in the day zone) t falls on.
func (q *quota) dayOf(t time.Time) quotaDay {
	loc, _ := q.st.Limits.Location() // validated when the limits were set
	if d := q.day; d.loc == loc && !t.Before(d.start) && t.Before(d.end) {
		return d
	}
	y, m, dd := t.In(loc).Date()
	d := quotaDay{loc: loc, start: time.Date(y, m, dd, 0, 0, 0, 0, loc), end: time.Date(y, m, dd+1, 0, 0, 0, 0, loc)}
	d.name = d.start.Format(time.DateOnly)
	if !t.Before(d.start) && t.Before(d.end) { // a zone may skip its midnight; then look up again
		q.day = d
	}
	return d
}

// countOnDay counts grants on day, both those already pruned (DayCount) and those kept.
func (q *quota) countOnDay(day quotaDay) int {
	n := 0
	if q.st.Day == day.name {
		n = q.st.DayCount
	}
	g := q.st.Grants
	from := sort.Search(len(g), func(i int) bool { return !g[i].At.Before(day.start) })
	to := sort.Search(len(g), func(i int) bool { return !g[i].At.Before(day.end) })
	return n + q.slots[to] - q.slots[from]
}

// prune drops grants that left the sliding minute, folding them into the day's count, and
// held slots that passed or fall inside a penalty (their runs queue again).
func (q *quota) prune(now time.Time) {
	today := q.dayOf(now)
	if q.st.Day != today.name {
		q.st.Day, q.st.DayCount = today.name, 0
	}
	g := q.st.Grants
	k := sort.Search(len(g), func(i int) bool { return g[i].At.After(now.Add(-quotaWindow - q.margin())) })
	first := sort.Search(k, func(i int) bool { return !g[i].At.Before(today.start) })
	q.st.DayCount += q.slots[k] - q.slots[first]
	q.st.Grants, q.slots, q.tokens = g[k:], q.slots[k:], q.tokens[k:]

	for r, held := range q.st.Held {
		held = slices.DeleteFunc(held, func(at time.Time) bool {
			return at.Before(now.Add(-q.heldTolerance())) || at.Before(q.st.PenaltyUntil)
		})
		if len(held) == 0 {
			delete(q.st.Held, r)
		} else {
			q.st.Held[r] = held
		}
	}

	if len(q.st.Grants) > max(compactAbove, 2*q.compacted) {
		q.compact(now)
		q.compacted = len(q.st.Grants)
	}
}

// compact merges grants that already started within compactSpan of each other (on the same
// day) into one at the latest of their times, with their tokens spread over its slots rounded
// up. A slot counted later than it was granted stays longer in the windows it is in, so the
// limits still hold; the cost is at most compactSpan of a minute's capacity. Without it a busy
// pool (requests in every workflow task, each at its own time) would keep thousands of grants.
func (q *quota) compact(now time.Time) {
	g := q.st.Grants
	started := sort.Search(len(g), func(i int) bool { return g[i].At.After(now) })
	out := make([]contract.Grant, 0, len(g))
	for i := 0; i < started; {
		day := q.dayOf(g[i].At)
		slots, tokens := slotsOf(g[i]), slotsOf(g[i])*g[i].Tokens
		j := i + 1
		for ; j < started && g[j].At.Sub(g[i].At) < compactSpan && g[j].At.Before(day.end); j++ {
			slots += slotsOf(g[j])
			tokens += slotsOf(g[j]) * g[j].Tokens
		}
		m := contract.Grant{At: g[j-1].At, Tokens: (tokens + slots - 1) / slots}
		if slots > 1 {
			m.Count = slots
		}
		out = append(out, m)
		i = j
	}
	q.st.Grants = append(out, g[started:]...)
	q.index()
}

func (q *quota) penalize(p contract.Penalty) {
	if p.Until.After(q.st.PenaltyUntil) {
		q.st.PenaltyUntil = p.Until
	}
}

func (q *quota) configure(ctx workflow.Context, l contract.QuotaLimits) {
	if err := l.Validate(); err != nil {
		workflow.GetLogger(ctx).Warn("Ignoring invalid quota limits", "error", err)
		return
	}
	q.st.Limits = l
}

// adopt takes the limits a worker sent with its request: workers send their config every
// time, so the pool follows the config file while they run. Invalid limits are ignored; the
// error says so the first time they come.
func (q *quota) adopt(l contract.QuotaLimits) error {
	if l == q.st.Limits || (q.rejected != nil && *q.rejected == l) {
		return nil
	}
	if err := l.Validate(); err != nil {
		q.rejected = &l
		return err
	}
	q.st.Limits, q.rejected = l, nil
	return nil
}

func (q *quota) status(now time.Time) contract.QuotaStatus {
	s := contract.QuotaStatus{
		Pool: q.st.Pool, RequestsPerMinute: q.st.Limits.RequestsPerMinute, RequestsPerDay: q.st.Limits.RequestsPerDay,
		TokensPerMinute: q.st.Limits.TokensPerMinute, DayZone: q.st.Limits.Zone(), PenaltyUntil: q.st.PenaltyUntil,
		Requesters: q.st.Requesters,
	}
	for _, g := range q.st.Grants {
		if g.At.After(now.Add(-quotaWindow)) && !g.At.After(now) {
			s.CallsThisMinute += slotsOf(g)
			s.TokensThisMinute += slotsOf(g) * g.Tokens
		}
	}
	for _, held := range q.st.Held {
		for _, at := range held {
			if at.After(now) {
				s.Held++
			}
		}
	}
	b := q.batches(false)
	s.Batches, s.EnqueuedTokens, s.MaxBatches, s.MaxEnqueuedTokens = b.Batches, b.EnqueuedTokens, q.st.Limits.MaxBatches, q.st.Limits.MaxEnqueuedTokens
	s.CallsToday = q.countOnDay(q.dayOf(now))
	s.NextFreeSlot = q.nextSlot(now, 0)
	return s
}

// admitBatch lets a chunk go to the provider when the pool's batches stay within MaxBatches
// and MaxEnqueuedTokens; a chunk admitted before (a retried submit) is admitted again without
// counting twice. A chunk larger than MaxEnqueuedTokens alone is admitted when nothing else is
// enqueued, or it could never go.
func (q *quota) admitBatch(req contract.BatchAdmit) contract.BatchAdmission {
	if _, ok := q.st.Batches[req.Name]; ok {
		return q.batches(true)
	}
	l, now := q.st.Limits, q.batches(false)
	if (l.MaxBatches > 0 && now.Batches >= l.MaxBatches) ||
		(l.MaxEnqueuedTokens > 0 && now.Batches > 0 && now.EnqueuedTokens+req.Tokens > l.MaxEnqueuedTokens) {
		return now
	}
	if q.st.Batches == nil {
		q.st.Batches = map[string]int{}
	}
	q.st.Batches[req.Name] = req.Tokens
	return q.batches(true)
}

// batches is the pool's batch accounting as an answer.
func (q *quota) batches(admitted bool) contract.BatchAdmission {
	a := contract.BatchAdmission{Admitted: admitted, Batches: len(q.st.Batches)}
	for _, tokens := range q.st.Batches {
		a.EnqueuedTokens += tokens
	}
	return a
}

// legacyRequester is who slot i of a previous-release request is for.
func legacyRequester(r contract.ReserveRequest, i int) string {
	if i < len(r.Requesters) {
		return r.Requesters[i]
	}
	return r.Requester
}
