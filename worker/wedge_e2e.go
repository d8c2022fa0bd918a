//go:build mha_e2e_wedge

package main

import (
	"context"
	"os"

	"github.com/mhannotator/mha/internal/config"
	"github.com/mhannotator/mha/internal/llm"
	"github.com/mhannotator/mha/internal/llm/offline"
	"github.com/mhannotator/mha/internal/llm/providers"
)

// This file is only in the worker the end-to-end health test builds (-tags mha_e2e_wedge):
// once the file MHA_E2E_WEDGE_FILE names exists, every provider call hangs and ignores its
// context, which no real provider client does, to wedge the worker's call slots.

func init() {
	path := os.Getenv("MHA_E2E_WEDGE_FILE")
	if path == "" {
		return
	}
	providerHook = func(cfg *config.Config) func(config.Annotator) (llm.Provider, error) {
		return func(ann config.Annotator) (llm.Provider, error) {
			var p llm.Provider = offline.Annotator{Latency: cfg.Global.OfflineLatency}
			if ann.Provider != config.ProviderOffline {
				var err error
				if p, err = providers.New(ann, cfg.Global); err != nil {
					return nil, err
				}
			}
			return wedging{Provider: p, path: path}, nil
		}
	}
}

type wedging struct {
	llm.Provider
	path string
}

func (w wedging) Complete(ctx context.Context, req llm.Request) (llm.Response, error) {
	if _, err := os.Stat(w.path); err == nil {
		select {} // until the process exits, whatever ctx says
	}
	return w.Provider.Complete(ctx, req)
}
