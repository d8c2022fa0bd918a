package main

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/uber-go/tally/v4"
	"go.temporal.io/sdk/client"

	"github.com/mhannotator/mha/activities"
	"github.com/mhannotator/mha/internal/health"
)

// wedgeMargin is how much longer than a call's budget (the request timeout and its margin)
// every call slot must have been held before /healthz fails. Calls are cut at their budget,
// so a slot held that long is held by a call that ignores its context.
const wedgeMargin = 5 * time.Second

// temporalCheckTimeout bounds the readiness probe's question to the Temporal server.
const temporalCheckTimeout = 2 * time.Second

// Worker states, for readiness.
const (
	starting int32 = iota
	polling
	stopping
)

// lifecycle is where the worker is between its start and its exit.
type lifecycle struct{ state atomic.Int32 }

func (l *lifecycle) set(s int32) { l.state.Store(s) }

func (l *lifecycle) check(context.Context) error {
	switch l.state.Load() {
	case starting:
		return errors.New("starting: not polling yet")
	case stopping:
		return errors.New("stopping: polling stopped, samples in flight are finishing")
	}
	return nil
}

// healthChecker is the part of the Temporal client readiness asks.
type healthChecker interface {
	CheckHealth(ctx context.Context, req *client.CheckHealthRequest) (*client.CheckHealthResponse, error)
}

// healthHandler serves the worker's /healthz (live while its call slots turn over) and
// /readyz (Temporal answers and the worker polls).
func healthHandler(c healthChecker, slots func(margin time.Duration) activities.SlotReport, life *lifecycle) *health.Handler {
	return &health.Handler{
		Live: []health.Check{{Name: "call_slots", Run: func(context.Context) error { return slotsWedged(slots(wedgeMargin)) }}},
		Ready: []health.Check{
			{Name: "temporal", Run: func(ctx context.Context) error {
				ctx, cancel := context.WithTimeout(ctx, temporalCheckTimeout)
				defer cancel()
				_, err := c.CheckHealth(ctx, &client.CheckHealthRequest{})
				return err
			}},
			{Name: "worker", Run: life.check},
		},
		Timeout: 3 * time.Second,
	}
}

// slotsWedged fails when every call slot has been held past a call's budget plus the margin:
// calls that ignore their deadline hold as many goroutines and connections as the worker has
// call slots, and only a restart (which loses nothing) frees them.
func slotsWedged(r activities.SlotReport) error {
	if !r.Wedged() {
		return nil
	}
	return fmt.Errorf("wedged: %d provider calls have held their call slot longer than %s (a call's budget plus %s) without returning, "+
		"as many as the worker's %d call slots; restart the worker, nothing is lost", r.Stuck, r.Limit, wedgeMargin, r.Slots)
}

// wedgedEvery is how often the wedged-slot gauge is brought up to date.
const wedgedEvery = 5 * time.Second

// reportWedged keeps mha_worker_wedged_slots at the number of call slots held past their
// budget, the figure /healthz fails on; the returned func stops it.
func reportWedged(scope tally.Scope, slots func(margin time.Duration) activities.SlotReport) (stop func()) {
	gauge := scope.Gauge("mha_worker_wedged_slots")
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(wedgedEvery)
		defer t.Stop()
		for {
			gauge.Update(float64(slots(wedgeMargin).Stuck))
			select {
			case <-t.C:
			case <-done:
				return
			}
		}
	}()
	return func() { close(done) }
}
