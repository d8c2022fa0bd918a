package runs

import (
	"context"
	"errors"
	"fmt"
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
type QuotaClient struct {
	Client    client.Client
	TaskQueue string
	Limits    workflows.QuotaLimits // for pools that do not exist yet
}

// LimitsFrom reads a pool's limits from the config.
func LimitsFrom(g config.Global) workflows.QuotaLimits {
	return workflows.QuotaLimits{RequestsPerMinute: g.RequestsPerMinute, RequestsPerDay: g.RequestsPerDay,
		TokensPerMinute: g.TokensPerMinute, DayZone: g.QuotaDayZone}
}

// Reserve asks pool for one call slot. It returns the time the call may start, or a non-zero
// exhaustedUntil when the day's budget is spent.
func (q *QuotaClient) Reserve(ctx context.Context, pool, requester string, tokens int) (start, exhaustedUntil time.Time, err error) {
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
			Args:         []any{workflows.ReserveRequest{Requester: requester, Count: 1, Tokens: tokens}},
			WaitForStage: client.WorkflowUpdateStageCompleted,
		},
	})
	if err != nil {
		return time.Time{}, time.Time{}, fmt.Errorf("reserve quota of pool %s: %w", pool, err)
	}
	var res workflows.Reservation
	if err := h.Get(ctx, &res); err != nil {
		return time.Time{}, time.Time{}, fmt.Errorf("reserve quota of pool %s: %w", pool, err)
	}
	if len(res.Slots) == 0 {
		return time.Time{}, res.ExhaustedUntil, nil
	}
	return res.Slots[0], time.Time{}, nil
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
