package runs

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"

	"github.com/mhannotator/mha/internal/config"
	"github.com/mhannotator/mha/workflows"
)

// QuotaClient talks to the quota workflows: the annotate activity reserves call slots and
// reports 429s through it, and people read pool state. A pool's workflow starts with its first
// reservation (update-with-start), so nobody starts it by hand.
//
// The server takes only a few Updates in flight per workflow, so a worker's concurrent
// reservations for one pool are coalesced: at most one reserve Update per pool is in flight
// from this client, asking for the slots of everyone who queued meanwhile, in arrival order.
type QuotaClient struct {
	Client    client.Client
	TaskQueue string
	Limits    workflows.QuotaLimits // for pools that do not exist yet

	mu    sync.Mutex
	queue map[string][]*ticket // by pool; a pool is in the map while its Update is in flight
}

// ticket is one queued reservation.
type ticket struct {
	requester string
	tokens    int
	done      chan reserved
}

type reserved struct {
	start, exhaustedUntil time.Time
	err                   error
}

// LimitsFrom reads a pool's limits from the config.
func LimitsFrom(g config.Global) workflows.QuotaLimits {
	return workflows.QuotaLimits{RequestsPerMinute: g.RequestsPerMinute, RequestsPerDay: g.RequestsPerDay,
		TokensPerMinute: g.TokensPerMinute, DayZone: g.QuotaDayZone}
}

// Reserve asks pool for one call slot. It returns the time the call may start, or a non-zero
// exhaustedUntil when the day's budget is spent.
func (q *QuotaClient) Reserve(ctx context.Context, pool, requester string, tokens int) (start, exhaustedUntil time.Time, err error) {
	t := &ticket{requester: requester, tokens: tokens, done: make(chan reserved, 1)}
	q.mu.Lock()
	if q.queue == nil {
		q.queue = map[string][]*ticket{}
	}
	waiting, busy := q.queue[pool]
	q.queue[pool] = append(waiting, t)
	q.mu.Unlock()
	if !busy {
		go q.serve(pool)
	}
	select {
	case r := <-t.done:
		return r.start, r.exhaustedUntil, r.err
	case <-ctx.Done():
		return time.Time{}, time.Time{}, ctx.Err() // the slot, if granted, goes unused
	}
}

// serve sends the pool's queued tickets, a batch per Update, until the queue is empty.
func (q *QuotaClient) serve(pool string) {
	for {
		q.mu.Lock()
		batch := q.queue[pool]
		if len(batch) == 0 {
			delete(q.queue, pool)
			q.mu.Unlock()
			return
		}
		// The workflow refuses more slots per Update than its per-minute limit.
		batch = batch[:min(len(batch), max(1, q.Limits.RequestsPerMinute))]
		q.queue[pool] = q.queue[pool][len(batch):]
		q.mu.Unlock()

		req := workflows.ReserveRequest{Count: len(batch)}
		for _, t := range batch {
			req.Requesters = append(req.Requesters, t.requester)
			req.Tokens = max(req.Tokens, t.tokens)
		}
		res, err := q.update(pool, req)
		for i, t := range batch {
			switch {
			case err != nil:
				t.done <- reserved{err: err}
			case i < len(res.Slots):
				t.done <- reserved{start: res.Slots[i]}
			default:
				t.done <- reserved{exhaustedUntil: res.ExhaustedUntil}
			}
		}
	}
}

// reserveTimeout bounds one reserve Update, retries included.
const reserveTimeout = time.Minute

// update sends one reserve Update, starting the pool's workflow if needed. The server can
// refuse or abort an Update while the workflow is busy (its task failed, it is continuing as
// new); those are retried here, so a run's batch does not fail for them.
func (q *QuotaClient) update(pool string, req workflows.ReserveRequest) (workflows.Reservation, error) {
	ctx, cancel := context.WithTimeout(context.Background(), reserveTimeout)
	defer cancel()
	backoff := 100 * time.Millisecond
	for {
		res, err := q.updateOnce(ctx, pool, req)
		if err == nil || !transient(err) || ctx.Err() != nil {
			return res, err
		}
		select {
		case <-ctx.Done():
			return res, err
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}

func (q *QuotaClient) updateOnce(ctx context.Context, pool string, req workflows.ReserveRequest) (workflows.Reservation, error) {
	op := q.Client.NewWithStartWorkflowOperation(client.StartWorkflowOptions{
		ID:                       workflows.QuotaID(pool),
		TaskQueue:                q.TaskQueue,
		WorkflowIDConflictPolicy: enumspb.WORKFLOW_ID_CONFLICT_POLICY_USE_EXISTING,
		StaticSummary:            "request quota of pool " + pool,
	}, workflows.QuotaName, workflows.QuotaInput{Pool: pool, Limits: q.Limits})
	h, err := q.Client.UpdateWithStartWorkflow(ctx, client.UpdateWithStartWorkflowOptions{
		StartWorkflowOperation: op,
		UpdateOptions: client.UpdateWorkflowOptions{
			UpdateName:   workflows.UpdateReserve,
			Args:         []any{req},
			WaitForStage: client.WorkflowUpdateStageCompleted,
		},
	})
	var res workflows.Reservation
	if err == nil {
		err = h.Get(ctx, &res)
	}
	if err != nil {
		return res, fmt.Errorf("reserve quota of pool %s: %w", pool, err)
	}
	return res, nil
}

// transient reports whether the server turned an Update away for now.
func transient(err error) bool {
	var exhausted *serviceerror.ResourceExhausted
	var unavailable *serviceerror.Unavailable
	var aborted *serviceerror.Aborted
	var multi *serviceerror.MultiOperationExecution
	return errors.As(err, &exhausted) || errors.As(err, &unavailable) || errors.As(err, &aborted) || errors.As(err, &multi)
}

// Penalize reports a provider's 429: the pool grants nothing until until.
func (q *QuotaClient) Penalize(ctx context.Context, pool string, until time.Time, by string) error {
	err := q.Client.SignalWorkflow(ctx, workflows.QuotaID(pool), "", workflows.SignalPenalize, workflows.Penalty{Until: until, By: by})
	if err != nil {
		return fmt.Errorf("penalize pool %s: %w", pool, err)
	}
	return nil
}

// Configure applies limits to a running pool; a pool that does not run yet starts with
// them on its first reservation anyway.
func (q *QuotaClient) Configure(ctx context.Context, pool string, l workflows.QuotaLimits) error {
	err := q.Client.SignalWorkflow(ctx, workflows.QuotaID(pool), "", workflows.SignalConfigure, l)
	var notFound *serviceerror.NotFound
	if err != nil && !errors.As(err, &notFound) {
		return fmt.Errorf("configure pool %s: %w", pool, err)
	}
	return nil
}

// State reads a pool's state; ok is false when the pool has not started yet.
func (q *QuotaClient) State(ctx context.Context, pool string) (st workflows.QuotaStatus, ok bool, err error) {
	qctx, cancel := context.WithTimeout(ctx, queryTimeout)
	defer cancel()
	v, err := q.Client.QueryWorkflow(qctx, workflows.QuotaID(pool), "", workflows.QueryQuotaState)
	var notFound *serviceerror.NotFound
	if errors.As(err, &notFound) {
		return workflows.QuotaStatus{Pool: pool}, false, nil
	}
	if err == nil {
		err = v.Get(&st)
	}
	if err != nil {
		return workflows.QuotaStatus{}, false, fmt.Errorf("query pool %s: %w", pool, err)
	}
	return st, true, nil
}

// Pools lists the quota pools of the config's annotators that use a network provider.
func Pools(cfg *config.Config) []string {
	var out []string
	seen := map[string]bool{}
	for _, a := range cfg.Annotators {
		if a.Provider != config.ProviderOffline && !seen[a.QuotaPool] {
			seen[a.QuotaPool] = true
			out = append(out, a.QuotaPool)
		}
	}
	return out
}
