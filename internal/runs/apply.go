package runs

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/mhannotator/mha/internal/config"
	"github.com/mhannotator/mha/internal/contract"
)

// Actions a person applies to selected runs; the controls are sent as the Update (or, to runs
// of the previous release, the signal) of the same name.
const (
	ActionStart   = "start"
	ActionRestart = "restart"
)

// Actions lists every action Apply knows but the target control, in the order people read
// them.
var Actions = []string{ActionStart, contract.SignalPause, contract.SignalResume, contract.SignalStop, contract.SignalReset, ActionRestart}

// Pending is the outcome of a control the run accepted but has not answered within the wait,
// for example a pause waiting for the call in flight; the change shows in the run's status.
const Pending = "pending"

// applyConcurrency bounds the runs worked on at once: enough to finish 30 runs quickly, few
// enough not to flood the server.
const applyConcurrency = 8

// StopGrace is added to the heartbeat timeout when waiting for a run to stop: the sample in
// flight may take up to the heartbeat timeout.
const StopGrace = 30 * time.Second

// ApplyOptions tune Apply.
type ApplyOptions struct {
	// Wait bounds how long a control waits for the run's answer (the outcome is then Pending)
	// and how long a restart waits for the run to stop. Zero means the heartbeat timeout plus
	// StopGrace, long enough for any sample in flight.
	Wait time.Duration
	// Arg is the control's value (the target's number); nil for the others.
	Arg any
	// Warn receives problems that do not stop the action (search attributes or quota limits
	// that could not be set up).
	Warn func(error)
}

// IsAction says whether name is one of Actions.
func IsAction(name string) bool {
	for _, a := range Actions {
		if a == name {
			return true
		}
	}
	return false
}

// Apply performs action on pairs, at most applyConcurrency at a time, and returns one result
// per pair in the order of pairs. Starting registers the search attributes first and passes
// the config's limits to running quota pools, so changed limits arrive with the start.
func (c *Controller) Apply(ctx context.Context, action string, pairs []Pair, o ApplyOptions) []Result {
	warn := o.Warn
	if warn == nil {
		warn = func(error) {}
	}
	wait := o.Wait
	if wait <= 0 {
		wait = c.Config.Global.HeartbeatTimeout + StopGrace
	}
	var op func(context.Context, Pair) Result
	switch action {
	case ActionStart, ActionRestart:
		ok, err := EnsureSearchAttributes(ctx, c.Client, c.Namespace)
		if err != nil {
			// Search attributes only make runs filterable: start without them.
			warn(fmt.Errorf("%w; starting runs without search attributes", err))
		}
		c.SearchAttributes = ok
		c.configureQuota(ctx, warn)
		op = c.Start
		if action == ActionRestart {
			op = func(ctx context.Context, p Pair) Result { return c.Restart(ctx, p, wait) }
		}
	default:
		op = func(ctx context.Context, p Pair) Result {
			ctx, cancel := context.WithTimeout(ctx, wait)
			defer cancel()
			r, _ := c.Control(ctx, p, action, o.Arg)
			return r
		}
	}
	results := make([]Result, len(pairs))
	var wg sync.WaitGroup
	sem := make(chan struct{}, applyConcurrency)
	for i, p := range pairs {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			results[i] = op(ctx, p)
		})
	}
	wg.Wait()
	return results
}

// configureQuota hands the config's limits to every running quota pool.
func (c *Controller) configureQuota(ctx context.Context, warn func(error)) {
	quotas := QuotaClient{Client: c.Client, TaskQueue: c.TaskQueue}
	for _, a := range PoolAnnotators(c.Config) {
		if err := quotas.Configure(ctx, a.QuotaPool, a.QuotaLimits(c.Config.Global)); err != nil {
			warn(err)
		}
	}
}

// Enabled says whether p is enabled in cfg.
func Enabled(cfg *config.Config, p Pair) bool {
	a, ok := cfg.Annotator(p.Annotator)
	return ok && a.Domains[p.Domain].Enabled
}

// EnabledOnly keeps the enabled pairs.
func EnabledOnly(cfg *config.Config, pairs []Pair) []Pair {
	var out []Pair
	for _, p := range pairs {
		if Enabled(cfg, p) {
			out = append(out, p)
		}
	}
	return out
}
