package main

import (
	"strings"
	"testing"
	"time"

	"github.com/mhannotator/mha/internal/contract"
)

func TestQuotaTableShowsUseLimitsAndPenalties(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	got := renderQuota([]contract.QuotaStatus{
		{Pool: "projA", RequestsPerMinute: 15, RequestsPerDay: 1500, CallsThisMinute: 15, CallsToday: 120,
			NextFreeSlot: now.Add(20 * time.Second), PenaltyUntil: now.Add(30 * time.Second)},
		{Pool: "projB", RequestsPerMinute: 60, RequestsPerDay: 100, TokensPerMinute: 1000, TokensThisMinute: 250, NextFreeSlot: now,
			Batches: 2, EnqueuedTokens: 9000, MaxBatches: 3, MaxEnqueuedTokens: 10000},
		{Pool: "unused"},
	}, []bool{true, true, false}, now)
	for _, want := range []string{"POOL", "projA", "15/15", "120/1500", "in 20s", "429, 30s left", "projB", "250/1000", "2/3 (9000/10000 tokens)", "now", "unused", "not_started"} {
		if !strings.Contains(got, want) {
			t.Errorf("quota table lacks %q:\n%s", want, got)
		}
	}
}
