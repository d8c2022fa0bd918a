package server

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/danielgtaylor/huma/v2"

	"github.com/mhannotator/mha/api/events"
	"github.com/mhannotator/mha/internal/contract"
	"github.com/mhannotator/mha/internal/store"
)

func init() { registrations = append(registrations, (*Server).monitorRoutes) }

type overviewOutput struct {
	Body events.Overview
}

type runsInput struct {
	Annotator string `query:"annotator" maxLength:"64" doc:"one annotator's runs"`
	Domain    string `query:"domain" enum:"urgency,therapeutic,intensity,adjunct,modality,redressal," doc:"one domain's runs"`
	Status    string `query:"status" enum:"not_started,running,paused,waiting_quota,waiting_retry,failed,stopped,completed,terminated,canceled,timedout," doc:"runs in this status"`
}

type runsOutput struct {
	Body struct {
		Runs []events.Run `json:"runs"`
	}
}

type runInput struct {
	ID string `path:"id" pattern:"^annotation-[A-Za-z0-9_.-]+-[a-z]+$" doc:"the run's workflow ID, e.g. annotation-1-urgency"`
}

type runOutput struct {
	Body struct {
		events.Run
		RecentErrors []Annotation `json:"recent_errors" doc:"its newest annotations that ended in error, malformed or blocked"`
	}
}

// Waiting is a run waiting for its quota pool, and until when.
type Waiting struct {
	Run   string    `json:"run"`
	Until time.Time `json:"until,omitzero"`
}

type healthOutput struct {
	Body struct {
		OK           bool         `json:"ok" doc:"no run failed or stalled"`
		Failed       []events.Run `json:"failed"`
		Stalled      []events.Run `json:"stalled" doc:"running, but nothing stored for longer than the heartbeat timeout"`
		WaitingQuota []Waiting    `json:"waiting_quota"`
	}
}

type quotaOutput struct {
	Body struct {
		Pools []events.QuotaView `json:"pools"`
	}
}

// Tokens are an annotator's calls and tokens as stored with its annotations.
type Tokens struct {
	Annotator    string `json:"annotator"`
	InputTokens  int64  `json:"input_tokens"`
	OutputTokens int64  `json:"output_tokens"`
	Calls        int    `json:"calls" doc:"stored annotations"`
}

type tokensOutput struct {
	Body struct {
		Annotators []Tokens `json:"annotators"`
	}
}

func (s *Server) monitorRoutes() {
	huma.Register(s.api, huma.Operation{OperationID: "overview", Method: http.MethodGet, Path: "/api/overview",
		Summary: "Runs by status, total progress, aggregate rate and ETA", Tags: []string{"monitoring"}}, s.overview)
	huma.Register(s.api, huma.Operation{OperationID: "list-runs", Method: http.MethodGet, Path: "/api/runs",
		Summary: "Every configured run's status", Tags: []string{"monitoring"}}, s.listRuns)
	huma.Register(s.api, huma.Operation{OperationID: "get-run", Method: http.MethodGet, Path: "/api/runs/{id}",
		Summary: "One run's status and its recent errors", Tags: []string{"monitoring"}}, s.getRun)
	huma.Register(s.api, huma.Operation{OperationID: "health", Method: http.MethodGet, Path: "/api/health",
		Summary: "Failed runs, stalled runs and runs waiting for quota", Tags: []string{"monitoring"}}, s.health)
	huma.Register(s.api, huma.Operation{OperationID: "quota", Method: http.MethodGet, Path: "/api/quota",
		Summary: "Each quota pool's state: calls this minute and today against the limits", Tags: []string{"monitoring"}}, s.quota)
	huma.Register(s.api, huma.Operation{OperationID: "tokens", Method: http.MethodGet, Path: "/api/tokens",
		Summary: "Calls and tokens used per annotator", Tags: []string{"monitoring"}}, s.tokens)
}

func (s *Server) events() (Events, error) {
	if s.o.Events == nil || !s.o.Events.Ready() {
		return nil, huma.Error503ServiceUnavailable("the runs' state is still being loaded; try again in a moment")
	}
	return s.o.Events, nil
}

func (s *Server) overview(context.Context, *struct{}) (*overviewOutput, error) {
	ev, err := s.events()
	if err != nil {
		return nil, err
	}
	return &overviewOutput{Body: ev.Overview()}, nil
}

func (s *Server) listRuns(_ context.Context, in *runsInput) (*runsOutput, error) {
	ev, err := s.events()
	if err != nil {
		return nil, err
	}
	out := &runsOutput{}
	out.Body.Runs = []events.Run{}
	for _, r := range ev.Runs() {
		if (in.Annotator == "" || r.Annotator == in.Annotator) && (in.Domain == "" || r.Domain == in.Domain) && (in.Status == "" || r.Status.Status == in.Status) {
			out.Body.Runs = append(out.Body.Runs, r)
		}
	}
	return out, nil
}

// recentErrors is how many of a run's bad annotations its page shows.
const recentErrors = 20

func (s *Server) getRun(ctx context.Context, in *runInput) (*runOutput, error) {
	ev, err := s.events()
	if err != nil {
		return nil, err
	}
	r, ok := ev.RunByID(in.ID)
	if !ok {
		return nil, huma.Error404NotFound(fmt.Sprintf("no run %q in the config", in.ID))
	}
	out := &runOutput{}
	out.Body.Run = r
	var bad []store.Row
	for _, status := range []string{store.StatusError, store.StatusMalformed, store.StatusBlocked} {
		rows, err := s.o.Store.Annotations(ctx, store.Filter{Annotator: r.Annotator, Domain: r.Domain, Status: status}, 0, recentErrors)
		if err != nil {
			return nil, storeError(err)
		}
		bad = append(bad, rows...)
	}
	slices.SortFunc(bad, func(a, b store.Row) int { return int(b.Seq - a.Seq) })
	out.Body.RecentErrors = annotationsOf(bad[:min(len(bad), recentErrors)])
	return out, nil
}

func (s *Server) health(context.Context, *struct{}) (*healthOutput, error) {
	ev, err := s.events()
	if err != nil {
		return nil, err
	}
	cfg, err := s.currentConfig()
	if err != nil {
		return nil, err
	}
	out := &healthOutput{}
	out.Body.Failed, out.Body.Stalled, out.Body.WaitingQuota = []events.Run{}, []events.Run{}, []Waiting{}
	now := time.Now()
	for _, r := range ev.Runs() {
		switch r.Status.Status {
		case contract.StatusFailed:
			out.Body.Failed = append(out.Body.Failed, r)
		case contract.StatusRunning:
			last := r.LastProgress
			if last.IsZero() {
				last = r.StartedAt
			}
			if !last.IsZero() && now.Sub(last) > cfg.Global.HeartbeatTimeout {
				out.Body.Stalled = append(out.Body.Stalled, r)
			}
		case contract.StatusWaitingQuota:
			out.Body.WaitingQuota = append(out.Body.WaitingQuota, Waiting{Run: r.WorkflowID, Until: r.NextTry})
		}
	}
	out.Body.OK = len(out.Body.Failed) == 0 && len(out.Body.Stalled) == 0
	return out, nil
}

func (s *Server) quota(context.Context, *struct{}) (*quotaOutput, error) {
	ev, err := s.events()
	if err != nil {
		return nil, err
	}
	out := &quotaOutput{}
	out.Body.Pools = ev.Quota()
	if out.Body.Pools == nil {
		out.Body.Pools = []events.QuotaView{}
	}
	return out, nil
}

func (s *Server) tokens(ctx context.Context, _ *struct{}) (*tokensOutput, error) {
	all, err := s.o.Store.Stats(ctx, store.Filter{})
	if err != nil {
		return nil, storeError(err)
	}
	out := &tokensOutput{}
	out.Body.Annotators = []Tokens{}
	for _, r := range all {
		n := len(out.Body.Annotators)
		if n == 0 || out.Body.Annotators[n-1].Annotator != r.Annotator {
			out.Body.Annotators = append(out.Body.Annotators, Tokens{Annotator: r.Annotator})
			n++
		}
		t := &out.Body.Annotators[n-1]
		t.InputTokens += r.InputTokens
		t.OutputTokens += r.OutputTokens
		t.Calls += r.Calls
	}
	return out, nil
}
