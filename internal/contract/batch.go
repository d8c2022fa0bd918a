package contract

import (
	"fmt"
	"time"

	"github.com/mhannotator/mha/internal/labels"
)

// Annotation modes: each sample its own call, or chunks of samples as provider batches.
const (
	ModeSync  = "sync"
	ModeBatch = "batch"
)

// Activities of a batch-mode run's chunks.
const (
	SubmitChunkName  = "SubmitChunk"
	PollChunkName    = "PollChunk"
	CollectChunkName = "CollectChunk"
	CancelChunkName  = "CancelChunk"
)

// Chunk states, as the status shows them.
const (
	ChunkBuilding   = "building"   // the submit activity runs
	ChunkSubmitted  = "submitted"  // the provider has it, not started
	ChunkRunning    = "running"    // the provider works on it
	ChunkCollecting = "collecting" // final at the provider; results are being stored
	ChunkDone       = "done"
)

// ChunkName names chunk seq of a run at the provider: a retried submit finds the batch by it.
// The run's start time keeps chunks of a restarted run (same workflow ID) apart.
func ChunkName(workflowID string, started time.Time, seq int) string {
	return fmt.Sprintf("%s-%d-chunk-%d", workflowID, started.Unix(), seq)
}

// SubmitChunkInput asks for up to Count samples from position From of a run that have no
// annotation yet to be submitted as one provider batch called Name.
type SubmitChunkInput struct {
	Annotator string
	Domain    labels.Domain
	Target    int
	From      int
	Count     int
	Name      string
}

// SubmitChunkResult is a submitted (or adopted) batch; an empty BatchID means every sample
// looked at was annotated already.
type SubmitChunkResult struct {
	BatchID    string
	PromptHash string   // of the template the requests were rendered from
	Keys       []string // the samples in it, by ID
	Next       int      // the position after the last sample looked at
	Adopted    bool     // the batch already existed: an earlier attempt submitted it
	Tokens     int      // estimated input tokens enqueued
	State      string   // the provider's state, normalised (llm.BatchState)
	// Wait, when set, says the pool's batch limits admit nothing more now: nothing was
	// submitted, and the run tries again after the wait.
	Wait *Wait `json:",omitempty"`
}

// ChunkRef names a submitted chunk for polling, collecting and cancelling.
type ChunkRef struct {
	Annotator string
	Domain    labels.Domain
	BatchID   string
	Name      string `json:",omitempty"` // its name, under which the quota pool admitted it
}

// PollChunkResult is a chunk's state at the provider.
type PollChunkResult struct {
	State         string // llm.BatchState
	ProviderState string
	Total         int
	Completed     int
	Failed        int
	Error         string // a failed batch's reason
}

// CollectChunkInput stores a final chunk's results.
type CollectChunkInput struct {
	ChunkRef
	Target     int
	Keys       []string
	PromptHash string
	// Reasks are the tries already spent on the chunk's samples by earlier chunks: a line
	// that failed or came back malformed goes to a later chunk until max_retries, then it is
	// stored as it is.
	Reasks map[string]int
}

// CollectChunkResult is what the results held.
type CollectChunkResult struct {
	Stored  int
	Retry   []string // samples to ask again in a later chunk
	Missing int      // lines without a result (an expired or cancelled batch)
	Counts  Counts   // the run's stored counts after collecting
}

// ChunkView is one chunk as a run's status shows it.
type ChunkView struct {
	Seq           int       `json:"seq"`
	BatchID       string    `json:"batch_id,omitempty"`
	State         string    `json:"state"`
	ProviderState string    `json:"provider_state,omitempty"`
	Lines         int       `json:"lines"`
	Completed     int       `json:"completed"`
	Failed        int       `json:"failed"`
	SubmittedAt   time.Time `json:"submitted_at,omitzero"`
}

// BatchStatus is a batch-mode run's chunks in its status.
type BatchStatus struct {
	Chunks     []ChunkView    `json:"chunks"`               // the chunks not done yet
	ByState    map[string]int `json:"by_state"`             // every chunk of the run by state, done ones included
	OldestSent time.Time      `json:"oldest_sent,omitzero"` // when the oldest chunk still at the provider was submitted
}
