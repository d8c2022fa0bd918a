package main

import (
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/mhannotator/mha/internal/contract"
)

var tableStatuses = []contract.Status{
	{WorkflowID: "annotation-1-urgency", Status: contract.StatusRunning, Target: 60, Completed: 23, Malformed: 1, SamplesPerMinute: 11.83},
	{WorkflowID: "annotation-1-therapeutic", Status: contract.StatusFailed, Target: 60, Completed: 10, Errors: 3, Restarts: 3,
		LastError: "llm: invalid API key (401 Unauthorized):\ncheck api_keys.json for annotator_1 and try again"},
	// The dataset ends before the target, so the run is done at 50.
	{WorkflowID: "annotation-2-urgency", Status: contract.StatusCompleted, Target: 60, DatasetSize: 50, Completed: 50, Malformed: 2, Restarts: 1},
	{WorkflowID: "annotation-2-redressal", Status: "not_started", Target: 60},
}

func TestRenderTable(t *testing.T) {
	got := renderTable(tableStatuses, false)
	want := "" +
		"RUN                        STATUS        DONE/TARGET   MALFORMED   ERRORS   PER MIN   RESTARTS   LAST ERROR\n" +
		"annotation-1-urgency       running       23/60 38%             1        0      11.8          0\n" +
		"annotation-1-therapeutic   failed        10/60 16%             0        3       0.0          3   llm: invalid API key (401 Unauthorized): check ap…\n" +
		"annotation-2-urgency       completed     50/50 100%            2        0       0.0          1\n" +
		"annotation-2-redressal     not_started   0/60 0%               0        0       0.0          0\n" +
		"total: 83/230 36%, 3 malformed, 3 errors; 4 runs: 1 running, 1 failed, 1 completed, 1 not_started\n"
	if got != want {
		t.Errorf("got:\n%s\nwant:\n%s", got, want)
	}
}

func TestRenderTableWithProgressBar(t *testing.T) {
	got := renderTable(tableStatuses[:3], true)
	lines := strings.Split(got, "\n")
	for i, bar := range []string{"PROGRESS", "[#######-------------]", "[###-----------------]", "[####################]"} {
		if !strings.Contains(lines[i], "   "+bar+"   ") {
			t.Errorf("line %d lacks %s:\n%s", i, bar, got)
		}
	}
	// Columns stay aligned: every row has MALFORMED's last character where the header has it.
	end := strings.Index(lines[0], "MALFORMED") + len("MALFORMED")
	for _, l := range lines[1:4] {
		if l[end-1] == ' ' || l[end] != ' ' {
			t.Errorf("misaligned:\n%s", got)
		}
	}
}

func TestCut(t *testing.T) {
	long := strings.Repeat("é", 80)
	if got := cut(long, 50); utf8.RuneCountInString(got) != 50 || !strings.HasSuffix(got, "…") {
		t.Errorf("cut(80 runes) = %q", got)
	}
	if got := cut("short\n  error", 50); got != "short error" {
		t.Errorf("cut = %q", got)
	}
	if got := cut(strings.Repeat("x", 50), 50); got != strings.Repeat("x", 50) {
		t.Errorf("cut of exactly 50 = %q", got)
	}
}

func TestProgress(t *testing.T) {
	for _, tc := range []struct {
		done, target int
		pct          int
		bar          string
	}{
		{0, 60, 0, "[--------------------]"},
		{59, 60, 98, "[###################-]"},
		{60, 60, 100, "[####################]"},
		{0, 0, 100, "[####################]"}, // nothing to do is done
	} {
		if got := percent(tc.done, tc.target); got != tc.pct {
			t.Errorf("percent(%d, %d) = %d, want %d", tc.done, tc.target, got, tc.pct)
		}
		if got := progressBar(tc.done, tc.target); got != tc.bar {
			t.Errorf("progressBar(%d, %d) = %s, want %s", tc.done, tc.target, got, tc.bar)
		}
	}
}

func TestRenderNoRuns(t *testing.T) {
	if got := renderTable(nil, true); !strings.HasPrefix(got, "no runs to show") {
		t.Errorf("got %q", got)
	}
}

func TestTotalsOrderUnknownStatusesLast(t *testing.T) {
	got := renderTable([]contract.Status{
		{WorkflowID: "a", Status: "unknown", Target: 1},
		{WorkflowID: "b", Status: "terminated", Target: 1},
		{WorkflowID: "c", Status: contract.StatusPaused, Target: 1, Completed: 1},
	}, false)
	if !strings.HasSuffix(got, "total: 1/3 33%, 0 malformed, 0 errors; 3 runs: 1 paused, 1 terminated, 1 unknown\n") {
		t.Errorf("got:\n%s", got)
	}
}

func TestAWaitingRunShowsItsNextTry(t *testing.T) {
	next := time.Date(2026, 3, 4, 12, 30, 15, 0, time.Local)
	got := renderTable([]contract.Status{{WorkflowID: "annotation-1-urgency", Status: contract.StatusWaitingRetry, Target: 10,
		LastError: "gemini: unavailable (HTTP 503)", NextTry: next}}, false)
	if !strings.Contains(got, "next try 12:30:15: gemini: unavailable") || !strings.Contains(got, "1 waiting_retry") {
		t.Fatalf("table does not show the next try:\n%s", got)
	}
}

func TestBatchRunsShowTheirChunks(t *testing.T) {
	sent := time.Date(2026, 11, 25, 9, 30, 0, 0, time.Local)
	st := contract.Status{WorkflowID: "annotation-1-urgency", Status: contract.StatusRunning, Target: 100, Mode: contract.ModeBatch,
		Batch: &contract.BatchStatus{Chunks: []contract.ChunkView{{Seq: 1}, {Seq: 2}}, OldestSent: sent,
			ByState: map[string]int{contract.ChunkRunning: 1, contract.ChunkSubmitted: 1, "done_succeeded": 3}}}
	if got, want := lastError(st), "batches: 1 submitted, 1 running, oldest sent 09:30:00"; got != want {
		t.Errorf("note %q; want %q", got, want)
	}
	st.LastError = "gemini: unavailable"
	if got := lastError(st); !strings.HasSuffix(got, "; gemini: unavailable") {
		t.Errorf("note with an error %q", got)
	}
}
