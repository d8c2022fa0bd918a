package server

import (
	"context"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/danielgtaylor/huma/v2"

	"github.com/mhannotator/mha/internal/contract"
	"github.com/mhannotator/mha/internal/runs"
	"github.com/mhannotator/mha/internal/store"
)

func init() { registrations = append(registrations, (*Server).controlRoutes) }

// controlWait is the default of Options.ControlWait, which bounds how long a control request
// waits for the runs' answers: a pause waits for the call in flight, which can take up to the
// heartbeat timeout, and the request must not hang that long. Runs that have not answered are
// reported pending; the change reaches the dashboard as an event.
const controlWait = 3 * time.Second

// Restarted-in-background and deleted-after-stop outcomes.
const (
	Restarting = "restarting"
	Deleting   = "deleting"
)

type controlInput struct {
	Action string `path:"action" enum:"start,pause,resume,stop,reset,restart" doc:"what to do to the selected runs"`
	Body   Selection
}

// Results is what an operation did to each selected run.
type Results struct {
	Body struct {
		Results []runs.Result `json:"results"`
		Deleted int           `json:"deleted,omitempty" doc:"annotations deleted now (more may follow for runs still stopping)"`
	}
}

type targetInput struct {
	Body struct {
		Selection
		Target int `json:"target" minimum:"0" maximum:"10000000" doc:"samples the runs should annotate"`
	}
}

type redoInput struct {
	Body struct {
		Selection
		Statuses []string `json:"statuses" minItems:"1" uniqueItems:"true" doc:"statuses to annotate again: malformed, error, blocked" example:"[\"malformed\",\"error\"]"`
	}
}

type deleteInput struct {
	Body struct {
		Selection
		Confirm string `json:"confirm" doc:"must be \"delete\": stored annotations cannot be brought back"`
	}
}

func (s *Server) controlRoutes() {
	huma.Register(s.api, huma.Operation{OperationID: "control", Method: http.MethodPost, Path: "/api/control/{action}",
		Summary: "Start, pause, resume, stop, reset or restart runs", Tags: []string{"control"},
		Description: "Answers per run. Starting all runs starts the enabled ones. A control the run has not answered " +
			"within a few seconds is `pending`; a restart goes on in the background (`restarting`)."}, s.control)
	huma.Register(s.api, huma.Operation{OperationID: "set-target", Method: http.MethodPost, Path: "/api/control/target",
		Summary: "Change the target of running runs", Tags: []string{"control"}}, s.target)
	huma.Register(s.api, huma.Operation{OperationID: "redo", Method: http.MethodPost, Path: "/api/control/redo",
		Summary: "Annotate again the samples that ended malformed, in error or blocked", Tags: []string{"control"}}, s.redo)
	huma.Register(s.api, huma.Operation{OperationID: "delete-annotations", Method: http.MethodDelete, Path: "/api/annotations",
		Summary: "Delete stored annotations of runs, stopping them first", Tags: []string{"control"}}, s.deleteAnnotations)
}

func (s *Server) control(ctx context.Context, in *controlInput) (*Results, error) {
	cfg, err := s.currentConfig()
	if err != nil {
		return nil, err
	}
	pairs, err := s.pairs(cfg, in.Body)
	if err != nil {
		return nil, err
	}
	starts := in.Action == runs.ActionStart || in.Action == runs.ActionRestart
	if starts && in.Body.All {
		pairs = runs.EnabledOnly(cfg, pairs)
	}
	ctl := s.controller(cfg)
	out := &Results{}
	warn := func(err error) { s.o.Logger.Warn("control", "action", in.Action, "problem", err) }
	if in.Action == runs.ActionRestart {
		// A restart waits for each run to stop, up to the heartbeat timeout: it goes on after
		// the reply, detached from the request.
		var enabled []runs.Pair
		for _, p := range pairs {
			if runs.Enabled(cfg, p) {
				enabled = append(enabled, p)
				out.Body.Results = append(out.Body.Results, runs.Result{Run: p.ID(), Outcome: Restarting})
			} else {
				out.Body.Results = append(out.Body.Results, runs.Result{Run: p.ID(), Outcome: runs.Disabled, Detail: "enable it in the config to start it"})
			}
		}
		go func() {
			bg := context.WithoutCancel(ctx)
			for _, r := range ctl.Apply(bg, runs.ActionRestart, enabled, runs.ApplyOptions{Warn: warn}) {
				s.o.Logger.Info("restart", "run", r.Run, "outcome", r.Outcome, "detail", r.Detail)
				s.refresh(r.Run)
			}
		}()
		return out, nil
	}
	out.Body.Results = ctl.Apply(ctx, in.Action, pairs, runs.ApplyOptions{Wait: s.o.ControlWait, Warn: warn})
	s.refreshResults(out.Body.Results)
	return out, nil
}

func (s *Server) target(ctx context.Context, in *targetInput) (*Results, error) {
	cfg, err := s.currentConfig()
	if err != nil {
		return nil, err
	}
	pairs, err := s.pairs(cfg, in.Body.Selection)
	if err != nil {
		return nil, err
	}
	out := &Results{}
	out.Body.Results = s.controller(cfg).Apply(ctx, contract.SignalTarget, pairs, runs.ApplyOptions{Wait: s.o.ControlWait, Arg: in.Body.Target})
	s.refreshResults(out.Body.Results)
	return out, nil
}

func (s *Server) redo(ctx context.Context, in *redoInput) (*Results, error) {
	cfg, err := s.currentConfig()
	if err != nil {
		return nil, err
	}
	for i, st := range in.Body.Statuses {
		if err := runs.CheckRedoStatuses([]string{st}); err != nil {
			return nil, huma.Error422UnprocessableEntity("a status cannot be redone", &huma.ErrorDetail{
				Location: "body.statuses[" + strconv.Itoa(i) + "]", Message: err.Error(), Value: st})
		}
	}
	pairs, err := s.pairs(cfg, in.Body.Selection)
	if err != nil {
		return nil, err
	}
	ctl := s.controller(cfg)
	out := &Results{}
	out.Body.Results = make([]runs.Result, len(pairs))
	for i, p := range pairs {
		rctx, cancel := context.WithTimeout(ctx, s.o.ControlWait)
		out.Body.Results[i] = ctl.Redo(rctx, p, s.o.Store, in.Body.Statuses)
		cancel()
	}
	s.refreshResults(out.Body.Results)
	return out, nil
}

// deleteAnnotations stops the selected runs, then deletes their annotations. A run that
// stops within the request's wait is cleared at once; one still finishing its call is cleared
// in the background as soon as it has stopped, so its last write cannot come after the delete.
func (s *Server) deleteAnnotations(ctx context.Context, in *deleteInput) (*Results, error) {
	if in.Body.Confirm != "delete" {
		return nil, huma.Error422UnprocessableEntity("deleting needs a confirmation", &huma.ErrorDetail{
			Location: "body.confirm", Message: `must be "delete": stored annotations cannot be brought back`, Value: in.Body.Confirm})
	}
	cfg, err := s.currentConfig()
	if err != nil {
		return nil, err
	}
	pairs, err := s.pairs(cfg, in.Body.Selection)
	if err != nil {
		return nil, err
	}
	ctl := s.controller(cfg)
	stops := ctl.Apply(ctx, contract.SignalStop, pairs, runs.ApplyOptions{Wait: s.o.ControlWait})
	out := &Results{}
	var later []runs.Pair
	for i, p := range pairs {
		r := stops[i]
		switch r.Outcome {
		case runs.Stopped, runs.NotRunning:
			n, err := s.o.Store.DeleteAnnotations(ctx, p.Annotator, string(p.Domain), allStatuses)
			if err != nil {
				r = runs.Result{Run: p.ID(), Outcome: runs.Failed, Detail: "stopped, but nothing was deleted: " + err.Error()}
			} else {
				r = runs.Result{Run: p.ID(), Outcome: "deleted", Detail: strconv.Itoa(n) + " annotations"}
				out.Body.Deleted += n
			}
		case runs.Pending:
			later = append(later, p)
			r = runs.Result{Run: p.ID(), Outcome: Deleting, Detail: "the run is finishing its call; its annotations are deleted once it has stopped"}
		default:
			r.Detail = "not stopped, so nothing was deleted: " + r.Detail
		}
		out.Body.Results = append(out.Body.Results, r)
	}
	if len(later) > 0 {
		go s.deleteAfterStop(context.WithoutCancel(ctx), cfg.Global.HeartbeatTimeout+runs.StopGrace, later)
	}
	s.refreshResults(out.Body.Results)
	return out, nil
}

var allStatuses = []string{store.StatusOK, store.StatusMalformed, store.StatusError, store.StatusBlocked}

func (s *Server) deleteAfterStop(ctx context.Context, wait time.Duration, pairs []runs.Pair) {
	for _, p := range pairs {
		wctx, cancel := context.WithTimeout(ctx, wait)
		err := s.o.Client.GetWorkflow(wctx, p.ID(), "").Get(wctx, nil)
		timedOut := wctx.Err() != nil // before cancel, after which it is always set
		cancel()
		if timedOut {
			s.o.Logger.Error("delete annotations: the run did not stop; nothing deleted", "run", p.ID(), "error", err)
			continue
		}
		n, err := s.o.Store.DeleteAnnotations(ctx, p.Annotator, string(p.Domain), allStatuses)
		s.o.Logger.Info("delete annotations after stop", "run", p.ID(), "deleted", n, "error", err)
		s.refresh(p.ID())
	}
}

func (s *Server) refreshResults(results []runs.Result) {
	ids := make([]string, 0, len(results))
	for _, r := range results {
		if !slices.Contains([]string{runs.Disabled, runs.Failed}, r.Outcome) {
			ids = append(ids, r.Run)
		}
	}
	s.refresh(ids...)
}

func (s *Server) refresh(ids ...string) {
	if s.o.Events != nil && len(ids) > 0 {
		s.o.Events.Refresh(ids...)
	}
}
