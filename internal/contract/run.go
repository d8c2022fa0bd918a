package contract

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/mhannotator/mha/internal/labels"
)

// RunSettings are the config values the workflow itself needs; everything else (provider,
// model, key, re-asks) is read by the activities, so no secret enters history.
type RunSettings struct {
	BatchSize          int
	HeartbeatTimeout   time.Duration
	BatchTimeout       time.Duration // StartToClose of one batch attempt
	MaxRestartAttempts int
	// RetryBackoffCap caps the back-off between tries while a provider fails transiently;
	// 0 means DefaultRetryBackoffCap.
	RetryBackoffCap time.Duration
	// Mode is ModeSync ("" in runs of older releases) or ModeBatch: chunks of ChunkSize
	// samples as provider batches, at most MaxChunks at the provider at once.
	Mode      string `json:",omitempty"`
	ChunkSize int    `json:",omitempty"`
	MaxChunks int    `json:",omitempty"`
}

// DefaultRetryBackoffCap is the longest wait between two tries of a failing provider.
const DefaultRetryBackoffCap = 5 * time.Minute

// RunInput starts a run, and carries its state across continue-as-new.
type RunInput struct {
	Annotator string
	Domain    labels.Domain
	Target    int
	Settings  RunSettings
	State     *RunState // nil on a fresh start
}

// RunState is everything a run knows that the store does not.
type RunState struct {
	Status           string
	Paused           bool
	Position         int // next dataset position to work on
	Counts           Counts
	DatasetSize      int
	NeedsProgress    bool // re-read counts and position from the store before the next batch
	Restarts         int
	LastError        string
	StartedAt        time.Time
	LastProgress     time.Time
	RateSince        time.Time // start of the current running stretch, for samples per minute
	RateSamples      int
	SamplesPerMinute float64
	// Outages counts the provider waits in a row, for the back-off; NextTry is when the
	// current wait ends.
	Outages int
	NextTry time.Time
	Carry   Carry
	// A batch-mode run's chunks at the provider, the last chunk number used, and the chunks
	// finished, by how they ended.
	Chunks   []Chunk `json:",omitempty"`
	ChunkSeq int     `json:",omitempty"`
	// SubmitAfter: the pool's batch limits turned the last chunk away; none is submitted
	// before then, while the chunks out are still followed.
	SubmitAfter time.Time      `json:",omitzero"`
	ChunksDone  map[string]int `json:",omitempty"`
}

// Chunk is a submitted chunk a batch-mode run follows.
type Chunk struct {
	ChunkView
	Name       string
	Keys       []string
	PromptHash string
	NextPoll   time.Time
	Cancelling bool // stop asked the provider to cancel it
}

// Carry is what a batch hands to the next one of its run.
type Carry struct {
	// StreakError is the non-transient error the last StreakCount samples in a row ended
	// with; max_consecutive_errors of them fail the run.
	StreakError string
	StreakCount int
	// Reasks are the re-asks of a malformed reply already spent on samples (by ID) whose
	// batch ended before they were stored.
	Reasks map[string]int `json:",omitempty"`
}

// Counts are a run's stored annotations by status.
type Counts struct {
	OK        int
	Malformed int
	Error     int
	Blocked   int
}

// Total is the number of stored annotations.
func (c Counts) Total() int { return c.OK + c.Malformed + c.Error + c.Blocked }

// Status is the document the `status` query and every control Update return.
type Status struct {
	WorkflowID       string       `json:"workflow_id"`
	Annotator        string       `json:"annotator"`
	Domain           string       `json:"domain"`
	Status           string       `json:"status"`
	Target           int          `json:"target"`
	Completed        int          `json:"completed"` // stored annotations of any status, within target
	OK               int          `json:"ok"`
	Malformed        int          `json:"malformed"`
	Errors           int          `json:"errors"`
	Blocked          int          `json:"blocked"`
	DatasetSize      int          `json:"dataset_size"`
	SamplesPerMinute float64      `json:"samples_per_minute"`
	LastError        string       `json:"last_error,omitempty"`
	Restarts         int          `json:"restarts"`
	StartedAt        time.Time    `json:"started_at"`
	LastHeartbeat    time.Time    `json:"last_heartbeat"`    // when the last batch reported progress
	NextTry          time.Time    `json:"next_try,omitzero"` // while waiting: when the run goes on by itself
	Mode             string       `json:"mode,omitempty"`
	Batch            *BatchStatus `json:"batch,omitempty"` // a batch-mode run's chunks
}

// ParseTarget reads a `target` control's payload: a whole number of samples, 0 or more.
// JSON numbers and numeric strings are taken (the CLI sends what people type); anything
// else is refused with the reason.
func ParseTarget(raw json.RawMessage) (int, error) {
	s := strings.TrimSpace(string(raw))
	if s == "" || s == "null" {
		return 0, fmt.Errorf("target: a number of samples is required (e.g. --input 40)")
	}
	if unq, err := strconv.Unquote(s); err == nil {
		s = strings.TrimSpace(unq)
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		return 0, fmt.Errorf("target: %s is not a whole number of samples", raw)
	}
	if n < 0 {
		return 0, fmt.Errorf("target: %d must be 0 or more", n)
	}
	return n, nil
}

// ProgressInput asks for a run's stored progress.
type ProgressInput struct {
	Annotator string
	Domain    labels.Domain
	Target    int
}

// ProgressResult is a run's stored progress among its first Target samples.
type ProgressResult struct {
	Counts      Counts
	DatasetSize int
	// FirstMissing is the position of the first sample in range without an annotation,
	// or -1 when every sample in range has one.
	FirstMissing int
}

// BatchInput is one batch: dataset positions [From, From+Count) of a run.
type BatchInput struct {
	Annotator string
	Domain    labels.Domain
	From      int
	Count     int
	Target    int
	Carry     Carry
	// HaltKey names the batch among the run's batches. With it, a pause or stop reaches the
	// batch's lanes through the store (HaltBatchInput) before each call, and the lanes ask
	// the server only now and then; without it (runs of older releases), before every call.
	HaltKey string `json:",omitempty"`
}

// HaltBatchInput says that a run's batch must start no more calls: the run was paused or
// stopped.
type HaltBatchInput struct {
	WorkflowID string
	Key        string
}

// BatchResult is what a batch did.
type BatchResult struct {
	Next        int    // the position after the last sample the batch settled
	Stored      int    // annotations this attempt wrote
	Counts      Counts // the run's stored counts after the batch, within target
	DatasetSize int
	Attempt     int32 // the attempt that finished the batch (1 = first)
	Carry       Carry
	// Wait, when set, says the batch ended early because the run has to wait (for quota,
	// or for a provider that fails transiently) longer than is worth holding a worker slot
	// for; the run sleeps on a durable timer until Wait.Until and goes on from Next.
	Wait *Wait `json:",omitempty"`
}

// Wait is why and until when a run waits.
type Wait struct {
	Until  time.Time
	Status string // StatusWaitingQuota or StatusWaitingRetry
	Reason string // what a person reads: the provider's error, or the pool's state
}
