package fake

import (
	"maps"
	"slices"
	"time"
)

// Stats counts what the server saw since Start or the last ResetStats.
type Stats struct {
	Requests int                 // every request received, model listings included
	ByKey    map[string]KeyStats // by the API key as received ("" when none was sent)
	// Duplicates counts accepted requests whose (key, model, prompt) had already been
	// accepted and answered before: work paid twice. The memory of answered work survives
	// ResetStats, so a test can reset, restart a run and count repeats of earlier work.
	Duplicates int
	// Answered counts accepted requests that got to their normal reply (counted as it starts);
	// Abandoned those whose client left (or the server closed) before that, during Latency or
	// a Hold. Every accepted request that is not still waiting is one or the other, so the
	// calls a client paid for and never got are Abandoned.
	Answered, Abandoned int
	// Held is the number of requests waiting in a Hold now (accepted or not).
	Held        int
	InFlight    int
	MaxInFlight int

	// The batch APIs, both formats. Their requests count in Requests and ByKey too, as model
	// listings do (Requests, or Rejected for a bad key); a batch line is no generate request
	// and counts in no KeyStats field. A line answered normally counts toward Duplicates, as
	// paid work, once its batch has ended and been read.
	BatchSubmits     int // create-batch requests that made a batch (lost replies included)
	BatchDuplicates  int // of those, batches whose name the key had already given an earlier batch
	BatchRateLimited int // create-batch requests refused by Key.MaxBatches or Key.MaxEnqueuedTokens
	BatchRejected    int // create-batch requests refused otherwise: a bad key, body or input file
	BatchPolls       int // reads of one batch (Gemini GET batches/{id}, OpenAI GET /v1/batches/{id})
	BatchLists       int // pages of batch listings
	BatchFetches     int // downloads of a file's content (Gemini responses file, OpenAI output or error file)
	BatchCancels     int // cancel requests that cancelled something
	FileUploads      int // files stored (Gemini: finalized uploads; OpenAI: POST /v1/files)
	BatchLines       int // lines of the batches made
}

// KeyStats counts one key's requests. Every generate request lands in exactly one of
// Accepted (served a normal reply, counted against the quota), RateLimited (refused by the
// key's quota), Rejected (missing or unknown key, invalid body) or Faulted (answered by an
// injected or random fault). Model listings count only in Requests, or Rejected for bad keys.
type KeyStats struct {
	Requests, Accepted, RateLimited, Rejected, Faulted int
	AcceptedAt                                         []time.Time // by Options.Now
}

// Stats returns a copy of the counters.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.stats
	st.ByKey = maps.Clone(s.stats.ByKey)
	for k, ks := range st.ByKey {
		ks.AcceptedAt = slices.Clone(ks.AcceptedAt)
		st.ByKey[k] = ks
	}
	return st
}

// ResetStats zeroes the counters. Quota windows, queued faults and the memory of answered
// work are kept; Held and InFlight go on, and MaxInFlight restarts from the requests in
// flight now.
func (s *Server) ResetStats() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stats = Stats{ByKey: map[string]KeyStats{}, InFlight: s.stats.InFlight, MaxInFlight: s.stats.InFlight, Held: s.stats.Held}
}
