package activities

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/mhannotator/mha/internal/config"
)

// This file is how the worker's health check sees its call slots. A call slot is held from
// the moment a batch takes it until the batch has given it back and the provider call made
// in it has returned. complete abandons a call that outlives its deadline, so the batch gives
// the slot back and goes on, but a call that ignores its context keeps a goroutine and a
// connection: it is still counted here, for as long as it has not returned. A busy worker's
// slots turn over within a call's budget; a slot held much longer than that means a call
// that will never end.

// slotTracker records when each held call slot was taken. The zero value is ready to use.
type slotTracker struct {
	mu   sync.Mutex
	next uint64
	held map[uint64]time.Time
}

// hold is one use of a call slot. It ends when every party to it (the batch that took the
// slot, and the provider call made in it) is done.
type hold struct {
	t    *slotTracker
	id   uint64
	refs atomic.Int32
	free func() // gives the slot back to the worker
}

// take records a slot taken now, held by the caller until release; free gives it back.
func (t *slotTracker) take(free func()) *hold {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.held == nil {
		t.held = map[uint64]time.Time{}
	}
	t.next++
	t.held[t.next] = time.Now()
	h := &hold{t: t, id: t.next, free: free}
	h.refs.Store(1)
	return h
}

// release gives the slot back to the worker: the batch is done with it. A call made in it
// that has not returned keeps the hold. A nil hold (the worker's calls are not bounded) is a
// no-op, as for keep and done.
func (h *hold) release() {
	if h == nil {
		return
	}
	h.free()
	h.done()
}

// keep adds a party to the hold (the provider call); each keep needs its done.
func (h *hold) keep() {
	if h != nil {
		h.refs.Add(1)
	}
}

// done ends one party's part in the hold; the last one frees it.
func (h *hold) done() {
	if h == nil || h.refs.Add(-1) != 0 {
		return
	}
	h.t.mu.Lock()
	defer h.t.mu.Unlock()
	delete(h.t.held, h.id)
}

// count returns how many slots are held, and how many of them for longer than limit.
func (t *slotTracker) count(limit time.Duration, now time.Time) (held, stuck int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, since := range t.held {
		if now.Sub(since) > limit {
			stuck++
		}
	}
	return len(t.held), stuck
}

// SlotReport is what the worker's health check sees of its call slots.
type SlotReport struct {
	// Slots is the number of call slots of the worker (0 when calls are not bounded).
	Slots int
	// Held counts the slots in use, with the calls a batch abandoned after their deadline
	// and that have not returned yet: it can exceed Slots.
	Held int
	// Stuck counts the held slots taken longer ago than Limit.
	Stuck int
	// Limit is a call's budget (the request timeout and its margin) plus the health margin.
	Limit time.Duration
}

// Wedged reports whether every call slot has been held longer than Limit: the worker's
// calls no longer end, and only a restart frees what they hold.
func (r SlotReport) Wedged() bool { return r.Slots > 0 && r.Stuck >= r.Slots }

// CallSlotReport reports how long the worker's call slots have been held, against the budget
// of a call under the current config plus margin.
func (a *Activities) CallSlotReport(margin time.Duration) SlotReport {
	var g config.Global
	a.mu.Lock()
	if a.Config != nil {
		g = a.Config.Global
	}
	a.mu.Unlock()
	r := SlotReport{Slots: cap(a.CallSlots), Limit: callTimeout(g) + margin}
	r.Held, r.Stuck = a.slots.count(r.Limit, time.Now())
	return r
}
