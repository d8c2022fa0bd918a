package server

import (
	"context"
	"net/http"

	"github.com/danielgtaylor/huma/v2"

	"github.com/mhannotator/mha/internal/cost"
	"github.com/mhannotator/mha/internal/runs"
	"github.com/mhannotator/mha/internal/store"
)

func init() { registrations = append(registrations, (*Server).costRoutes) }

type costOutput struct {
	Body cost.Usage
}

type estimateInput struct {
	Body Selection
}

type estimateOutput struct {
	Body cost.Estimates
}

func (s *Server) costRoutes() {
	tags := []string{"analysis"}
	huma.Register(s.api, huma.Operation{OperationID: "cost", Method: http.MethodGet, Path: "/api/cost",
		Summary: "Tokens and estimated cost of the stored annotations per run, annotator and domain", Tags: tags,
		Description: "Prices come from the prices table of settings.json (US dollars per million input and output tokens, by model)."}, s.cost)
	huma.Register(s.api, huma.Operation{OperationID: "cost-estimate", Method: http.MethodPost, Path: "/api/cost/estimate",
		Summary: "What the selected runs' remaining samples are expected to cost", Tags: tags,
		Description: "Nothing is started. With all, only enabled runs are estimated, as start would start them."}, s.estimate)
}

func (s *Server) cost(ctx context.Context, _ *struct{}) (*costOutput, error) {
	cfg, err := s.currentConfig()
	if err != nil {
		return nil, err
	}
	stats, err := s.o.Store.Stats(ctx, store.Filter{})
	if err != nil {
		return nil, storeError(err)
	}
	return &costOutput{Body: cost.Used(cfg, stats)}, nil
}

func (s *Server) estimate(ctx context.Context, in *estimateInput) (*estimateOutput, error) {
	cfg, err := s.currentConfig()
	if err != nil {
		return nil, err
	}
	pairs, err := s.pairs(cfg, in.Body)
	if err != nil {
		return nil, err
	}
	if in.Body.All {
		pairs = runs.EnabledOnly(cfg, pairs)
	}
	want := make([]cost.Pair, len(pairs))
	for i, p := range pairs {
		want[i] = cost.Pair(p)
	}
	est, err := cost.Estimator{Config: cfg, Store: s.o.Store, Prompts: s.promptLibrary()}.Runs(ctx, want)
	if err != nil {
		return nil, storeError(err)
	}
	if est.Runs == nil {
		est.Runs = []cost.Estimate{}
	}
	return &estimateOutput{Body: est}, nil
}
