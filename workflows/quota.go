package workflows

import (
	"errors"
	"fmt"
	"slices"
	"time"
	_ "time/tzdata" // the daily reset's time zone must load the same on every worker

	"go.temporal.io/sdk/workflow"
)

// Quota workflow names.
const (
	QuotaName       = "Quota"
	UpdateReserve   = "reserve"
	SignalPenalize  = "penalize"
	SignalConfigure = "configure"
	QueryQuotaState = "state"
	DefaultDayZone  = "America/Los_Angeles" // Gemini's daily quotas reset at midnight Pacific
	quotaWindow     = time.Minute
	// grantMargin widens the minute slots are spaced by: a call starts a little after its
	// slot (timer wake-up, connection), by different amounts, and the provider counts
	// arrival times. Without it two calls a minute apart could land 59.99 s apart.
	grantMargin       = 500 * time.Millisecond
	maxQuotaHistory   = 4000
	maxRequesterStats = 1000
)

// QuotaID is the workflow ID of a quota pool's workflow. The pool is a name from the config,
// never the key itself.
func QuotaID(pool string) string { return "quota-" + pool }

// QuotaLimits are a pool's provider limits.
type QuotaLimits struct {
	RequestsPerMinute int
	RequestsPerDay    int
	TokensPerMinute   int    // 0 = no token limit
	DayZone           string // IANA zone whose midnight resets the daily count; "" = DefaultDayZone
}

// Validate checks limits before they are applied.
func (l QuotaLimits) Validate() error {
	if l.RequestsPerMinute < 1 || l.RequestsPerDay < 1 || l.TokensPerMinute < 0 {
		return fmt.Errorf("quota limits must be positive (requests/min %d, requests/day %d, tokens/min %d)",
			l.RequestsPerMinute, l.RequestsPerDay, l.TokensPerMinute)
	}
	if _, err := time.LoadLocation(l.zone()); err != nil {
		return fmt.Errorf("quota day zone %q: %w", l.DayZone, err)
	}
	return nil
}

func (l QuotaLimits) zone() string {
	if l.DayZone == "" {
		return DefaultDayZone
	}
	return l.DayZone
}

// ReserveRequest asks for Count call slots for Requester (a run's workflow ID), each
// expected to use about Tokens tokens. A worker that coalesces the requests of several runs
// into one Update names each slot's requester in Requesters instead (Count = its length).
type ReserveRequest struct {
	Requester  string
	Requesters []string
	Count      int
	Tokens     int
}

// requester is who slot i is for.
func (r ReserveRequest) requester(i int) string {
	if i < len(r.Requesters) {
		return r.Requesters[i]
	}
	return r.Requester
}

// Reservation answers a ReserveRequest at once: the times at which each granted call may
// start, in order. When the day's budget runs out, fewer slots (maybe none) are granted and
// ExhaustedUntil says when it returns.
type Reservation struct {
	Slots          []time.Time
	ExhaustedUntil time.Time
}

// Penalty is a provider's 429: nothing is granted on the pool until Until.
type Penalty struct {
	Until time.Time
	By    string
}

// Grant is one granted call slot.
type Grant struct {
	At     time.Time
	Tokens int
}

// RequesterStats count a requester's grants.
type RequesterStats struct {
	Granted   int       `json:"granted"`
	LastGrant time.Time `json:"last_grant"`
}

// QuotaState is a pool's memory, handed over at continue-as-new so limits hold across it.
type QuotaState struct {
	Pool         string
	Limits       QuotaLimits
	Grants       []Grant // granted slots of the last minute and the future, in time order
	Day          string  // the date (in the day zone) DayCount counts
	DayCount     int
	PenaltyUntil time.Time
	Requesters   map[string]RequesterStats
}

// QuotaInput starts a quota workflow, or continues one.
type QuotaInput struct {
	Pool   string
	Limits QuotaLimits
	State  *QuotaState
}

// QuotaStatus is what the `state` query returns.
type QuotaStatus struct {
	Pool              string                    `json:"pool"`
	RequestsPerMinute int                       `json:"requests_per_minute"`
	RequestsPerDay    int                       `json:"requests_per_day"`
	TokensPerMinute   int                       `json:"tokens_per_minute"`
	DayZone           string                    `json:"day_zone"`
	CallsThisMinute   int                       `json:"calls_this_minute"`
	TokensThisMinute  int                       `json:"tokens_this_minute"`
	CallsToday        int                       `json:"calls_today"`
	NextFreeSlot      time.Time                 `json:"next_free_slot"`
	PenaltyUntil      time.Time                 `json:"penalty_until,omitzero"`
	Requesters        map[string]RequesterStats `json:"requesters"`
}

// Quota hands out request slots of one quota pool so that the provider's limits hold in every
// sliding window, across every run that shares the pool. Its reserve handler never waits: the
// server allows only a few Updates in flight per workflow, so callers wait on their own.
func Quota(ctx workflow.Context, in QuotaInput) error {
	q := &quota{}
	if in.State != nil {
		q.st = *in.State
	} else {
		q.st = QuotaState{Pool: in.Pool, Limits: in.Limits}
	}
	if q.st.Requesters == nil {
		q.st.Requesters = map[string]RequesterStats{}
	}
	if err := q.st.Limits.Validate(); err != nil {
		return err
	}
	if err := workflow.SetQueryHandler(ctx, QueryQuotaState, func() (QuotaStatus, error) {
		return q.status(workflow.Now(ctx)), nil
	}); err != nil {
		return err
	}
	if err := workflow.SetUpdateHandlerWithOptions(ctx, UpdateReserve,
		func(ctx workflow.Context, req ReserveRequest) (Reservation, error) {
			return q.reserve(workflow.Now(ctx), req), nil
		},
		workflow.UpdateHandlerOptions{Validator: q.validate}); err != nil {
		return err
	}
	penalties := workflow.GetSignalChannel(ctx, SignalPenalize)
	configures := workflow.GetSignalChannel(ctx, SignalConfigure)
	workflow.Go(ctx, func(ctx workflow.Context) {
		for {
			var p Penalty
			penalties.Receive(ctx, &p)
			q.penalize(p)
		}
	})
	workflow.Go(ctx, func(ctx workflow.Context) {
		for {
			var l QuotaLimits
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
		var p Penalty
		if !penalties.ReceiveAsync(&p) {
			break
		}
		q.penalize(p)
	}
	for {
		var l QuotaLimits
		if !configures.ReceiveAsync(&l) {
			break
		}
		q.configure(ctx, l)
	}
	q.prune(workflow.Now(ctx))
	st := q.st
	return workflow.NewContinueAsNewError(ctx, QuotaName, QuotaInput{Pool: st.Pool, Limits: st.Limits, State: &st})
}

func continueAsNewDue(ctx workflow.Context, maxEvents int) bool {
	info := workflow.GetInfo(ctx)
	return info.GetContinueAsNewSuggested() || info.GetCurrentHistoryLength() > maxEvents
}

type quota struct {
	st QuotaState
}

func (q *quota) validate(req ReserveRequest) error {
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

// reserve grants up to req.Count slots, each at the earliest time that keeps every sliding
// minute within the request and token limits, after any penalty, and within the day's
// budget. Slots are handed out in arrival order, so every requester is served in turn.
func (q *quota) reserve(now time.Time, req ReserveRequest) Reservation {
	q.prune(now)
	loc, _ := time.LoadLocation(q.st.Limits.zone()) // validated when the limits were set
	var res Reservation
	for i := range req.Count {
		at := q.nextSlot(now, req.Tokens)
		day := at.In(loc).Format(time.DateOnly)
		if q.countOnDay(day, loc) >= q.st.Limits.RequestsPerDay {
			res.ExhaustedUntil = nextMidnight(at, loc)
			break
		}
		q.st.Grants = append(q.st.Grants, Grant{At: at, Tokens: req.Tokens})
		res.Slots = append(res.Slots, at)
		q.count(req.requester(i), at)
	}
	return res
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
// minute ending at it within the limits.
func (q *quota) nextSlot(now time.Time, tokens int) time.Time {
	at := now
	if q.st.PenaltyUntil.After(at) {
		at = q.st.PenaltyUntil
	}
	g := q.st.Grants
	if n := len(g); n > 0 && g[n-1].At.After(at) {
		at = g[n-1].At
	}
	// A window [t, t+1m) holds the slot at `at` and every grant after at-1m. With
	// requests_per_minute grants already in it, wait until the oldest of them leaves.
	if rpm := q.st.Limits.RequestsPerMinute; len(g) >= rpm {
		if leave := g[len(g)-rpm].At.Add(quotaWindow + grantMargin); leave.After(at) {
			at = leave
		}
	}
	if tpm := q.st.Limits.TokensPerMinute; tpm > 0 {
		for {
			used, first := 0, -1
			for i, gr := range g {
				if gr.At.After(at.Add(-quotaWindow - grantMargin)) {
					used += gr.Tokens
					if first < 0 {
						first = i
					}
				}
			}
			if first < 0 || used+tokens <= tpm {
				break
			}
			at = g[first].At.Add(quotaWindow + grantMargin)
		}
	}
	return at
}

// countOnDay counts grants on day, both those already pruned (DayCount) and those kept.
func (q *quota) countOnDay(day string, loc *time.Location) int {
	n := 0
	if q.st.Day == day {
		n = q.st.DayCount
	}
	for _, g := range q.st.Grants {
		if g.At.In(loc).Format(time.DateOnly) == day {
			n++
		}
	}
	return n
}

// prune drops grants that left the sliding minute, folding them into the day's count.
func (q *quota) prune(now time.Time) {
	loc, _ := time.LoadLocation(q.st.Limits.zone())
	today := now.In(loc).Format(time.DateOnly)
	if q.st.Day != today {
		q.st.Day, q.st.DayCount = today, 0
	}
	keep := q.st.Grants[:0]
	for _, g := range q.st.Grants {
		if g.At.After(now.Add(-quotaWindow - grantMargin)) {
			keep = append(keep, g)
		} else if g.At.In(loc).Format(time.DateOnly) == today {
			q.st.DayCount++
		}
	}
	q.st.Grants = slices.Clip(keep)
}

func (q *quota) penalize(p Penalty) {
	if p.Until.After(q.st.PenaltyUntil) {
		q.st.PenaltyUntil = p.Until
	}
}

func (q *quota) configure(ctx workflow.Context, l QuotaLimits) {
	if err := l.Validate(); err != nil {
		workflow.GetLogger(ctx).Warn("Ignoring invalid quota limits", "error", err)
		return
	}
	q.st.Limits = l
}

func (q *quota) status(now time.Time) QuotaStatus {
	loc, _ := time.LoadLocation(q.st.Limits.zone())
	s := QuotaStatus{
		Pool: q.st.Pool, RequestsPerMinute: q.st.Limits.RequestsPerMinute, RequestsPerDay: q.st.Limits.RequestsPerDay,
		TokensPerMinute: q.st.Limits.TokensPerMinute, DayZone: q.st.Limits.zone(), PenaltyUntil: q.st.PenaltyUntil,
		Requesters: q.st.Requesters,
	}
	for _, g := range q.st.Grants {
		if g.At.After(now.Add(-quotaWindow)) && !g.At.After(now) {
			s.CallsThisMinute++
			s.TokensThisMinute += g.Tokens
		}
	}
	s.CallsToday = q.countOnDay(now.In(loc).Format(time.DateOnly), loc)
	// The query must not change state: look at a copy.
	probe := quota{st: q.st}
	probe.st.Grants = slices.Clone(q.st.Grants)
	s.NextFreeSlot = probe.nextSlot(now, 0)
	return s
}

func nextMidnight(t time.Time, loc *time.Location) time.Time {
	y, m, d := t.In(loc).Date()
	return time.Date(y, m, d+1, 0, 0, 0, 0, loc)
}
