package fake

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"
)

// Batches. Both batch APIs (batch_gemini.go, batch_openai.go) run a batch the same way, by the
// server's clock (Options.Now), from its submission over T = Options.BatchTurnaround:
//
//   - pending (Gemini BATCH_STATE_PENDING, OpenAI validating) until T/4;
//   - running (RUNNING; in_progress) while its lines are answered one after another, evenly
//     spread until 9T/10, then (OpenAI only) finalizing;
//   - succeeded (SUCCEEDED; completed) at T.
//
// A line is read as a call with its body would be, and answered as that call would be: the
// reply of the same deterministic generator (reply.go), so a batch run and a synchronous run
// store the same labels. Faults reach lines through the same queue as calls (Inject): a queued
// Fault whose Match is in a line's prompt (and whose Key, if set, is the batch's key) answers
// that line, taken when the batch is accepted and used up like a call's. The reply kinds
// (SafetyBlockPrompt, SafetyFinish, MaxTokensEmpty, Malformed) give the line that reply; the
// error kinds give an error line (Gemini: a google.rpc.Status with its canonical code; OpenAI:
// a line of the error file with the error's HTTP status and body); the connection kinds, which
// a line cannot have, give the error a client would make of them: Hang a 504, StallStream,
// MidStreamError and ResetConnection a 503. Random faults (FaultRate) reach lines as well.
//
// Whole batches misbehave by BatchFault (InjectBatch). A cancel stops a batch where it is
// (OpenAI: cancelling for T/10 first). An expired or cancelled batch has results for the lines
// answered before it ended; OpenAI's error file lists the others with the code batch_expired or
// batch_cancelled.
//
// Per key, Key.MaxBatches and Key.MaxEnqueuedTokens bound the unfinished batches and the input
// tokens of their lines: a submission over either gets the provider's 429, whose retry delay is
// the time until the key's first unfinished batch is due to end.

// BatchFaultKind is one way a whole batch can go wrong.
type BatchFaultKind string

const (
	// BatchFail fails the batch at the end of its pending time, with Reason (Gemini: the
	// operation's error; OpenAI: errors.data, with Code).
	BatchFail BatchFaultKind = "batch_fail"
	// BatchExpire lets the batch answer Done of its lines, in order, then expire at the end of
	// its turnaround.
	BatchExpire BatchFaultKind = "batch_expire"
	// BatchLostReply makes the batch, then resets the connection instead of replying, as a
	// network that drops the reply would: the client cannot know the batch exists.
	BatchLostReply BatchFaultKind = "batch_lost_reply"
	// BatchHangingReply makes the batch, then never replies: only the client's deadline, or
	// its death, ends the request. A worker killed while it waits is the case to test.
	BatchHangingReply BatchFaultKind = "batch_hanging_reply"
)

// BatchFault is a queued misbehaviour of whole batches, tried in the order injected; the first
// that matches a batch that the key's limits accept takes it.
type BatchFault struct {
	Kind BatchFaultKind
	// Times is how many batches the fault takes; 0 = every matching one.
	Times int
	// Match limits the fault to batches whose name (Gemini display name, OpenAI metadata
	// "name") contains it ("" = any).
	Match string
	// Key limits the fault to batches of this API key ("" = any).
	Key string
	// Done is how many lines a BatchExpire lets finish: 0 means half of them (rounded down),
	// a negative number none.
	Done int
	// Reason is a BatchFail's message (default "The batch failed."); Code its OpenAI error
	// code (default "batch_failed").
	Reason, Code string
}

type queuedBatchFault struct {
	BatchFault
	left int
}

// InjectBatch queues f behind the batch faults already queued. It panics on an unknown kind.
func (s *Server) InjectBatch(f BatchFault) {
	if !slices.Contains([]BatchFaultKind{BatchFail, BatchExpire, BatchLostReply, BatchHangingReply}, f.Kind) {
		panic(fmt.Sprintf("fake.InjectBatch: unknown batch fault kind %q", f.Kind))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.batch.faults = append(s.batch.faults, &queuedBatchFault{BatchFault: f, left: f.Times})
}

// takeBatchFault returns the batch fault that takes a batch of key named name, if any, using up
// one of its Times. Called with s.mu held.
func (s *Server) takeBatchFault(key, name string) *BatchFault {
	for i, q := range s.batch.faults {
		if (q.Match != "" && !strings.Contains(name, q.Match)) || (q.Key != "" && q.Key != key) {
			continue
		}
		f := q.BatchFault
		if q.Times > 0 {
			q.left--
			if q.left == 0 {
				s.batch.faults = slices.Delete(s.batch.faults, i, i+1)
			}
		}
		return &f
	}
	return nil
}

// batchStore is the server's batches and files, guarded by Server.mu.
type batchStore struct {
	jobs    []*batchJob // in the order made
	byID    map[string]*batchJob
	files   map[string]*storedFile // by Gemini name ("files/…") or OpenAI id ("file-…")
	uploads map[string]*upload     // Gemini resumable uploads not finalized yet, by upload id
	faults  []*queuedBatchFault
}

// storedFile is an uploaded input file or a batch's output.
type storedFile struct {
	key, name, displayName, mime, purpose string
	data                                  []byte
	created                               time.Time
}

// batchJob is one batch. Everything but cancelled and the output is fixed when it is made.
type batchJob struct {
	format    string // "gemini" or "openai"
	id        string // Gemini "batches/…", OpenAI "batch_…"
	key       string
	name      string // Gemini display name, OpenAI metadata "name" ("" when none)
	model     string
	created   time.Time
	lines     []*batchLine
	tokens    int    // the input tokens of its lines, as the fake counts them (words)
	inputFile string // the input file's name or id; "" for Gemini inline requests
	metadata  map[string]string
	endpoint  string

	failMsg, failCode string // a batch that fails at the end of its pending time
	failLine          int    // OpenAI: the 1-based input line at fault, 0 for none
	expire            bool
	expireDone        int       // lines answered before the expiry
	cancelled         time.Time // when a cancel arrived, zero for none

	once sync.Once
	out  *batchOutput // rendered once, when the batch has ended
}

// batchLine is one request of a batch and the answer it will get.
type batchLine struct {
	key  string // Gemini key (file lines) or metadata key (inline), OpenAI custom_id
	meta any    // Gemini inline metadata, echoed with the answer
	c    *call
	rep  reply
	err  *apiErr // the line's error, instead of rep
	// plain is set when the line gets the normal reply: paid work, for Stats.Duplicates.
	plain bool
}

// batchOutput is what an ended batch produced.
type batchOutput struct {
	inlined    []gemInlined // Gemini inline requests: the answered lines, in order
	responses  string       // Gemini input file: the responses file's name
	outputFile string       // OpenAI: the output file's id, "" when no line succeeded
	errorFile  string       // OpenAI: the error file's id, "" when no line failed
}

// phase is where a batch stands.
type phase int

const (
	phasePending phase = iota
	phaseRunning
	phaseFinalizing
	phaseSucceeded
	phaseFailed
	phaseCancelling
	phaseCancelled
	phaseExpired
)

func (p phase) final() bool {
	return p == phaseSucceeded || p == phaseFailed || p == phaseCancelled || p == phaseExpired
}

// Fractions of the turnaround: the end of pending, and the start of finalizing.
func (s *Server) pendingFor() time.Duration { return s.opts.BatchTurnaround / 4 }
func (s *Server) answeredBy() time.Duration { return s.opts.BatchTurnaround * 9 / 10 }

// cancelDelay is how long a cancel takes: OpenAI reports cancelling first, Gemini cancels at once.
func (s *Server) cancelDelay(j *batchJob) time.Duration {
	if j.format == fmtOpenAI {
		return s.opts.BatchTurnaround / 10
	}
	return 0
}

const (
	fmtGemini = "gemini"
	fmtOpenAI = "openai"
)

// phaseOf is j's phase at now. Called with s.mu held (cancelled changes).
func (s *Server) phaseOf(j *batchJob, now time.Time) phase {
	age := now.Sub(j.created)
	switch {
	case !j.cancelled.IsZero() && now.Sub(j.cancelled) < s.cancelDelay(j):
		return phaseCancelling
	case !j.cancelled.IsZero():
		return phaseCancelled
	case j.failMsg != "" && age >= s.pendingFor():
		return phaseFailed
	case age < s.pendingFor():
		return phasePending
	case age >= s.opts.BatchTurnaround && j.expire:
		return phaseExpired
	case age >= s.opts.BatchTurnaround:
		return phaseSucceeded
	case age >= s.answeredBy():
		return phaseFinalizing
	}
	return phaseRunning
}

// endedAt is when j reached its final phase p.
func (s *Server) endedAt(j *batchJob, p phase) time.Time {
	switch p {
	case phaseFailed:
		return j.created.Add(s.pendingFor())
	case phaseCancelled:
		return j.cancelled.Add(s.cancelDelay(j))
	}
	return j.created.Add(s.opts.BatchTurnaround)
}

// lineDone reports whether line i of j has its answer at now. Called with s.mu held.
func (s *Server) lineDone(j *batchJob, i int, now time.Time) bool {
	if j.failMsg != "" || (j.expire && i >= j.expireDone) || len(j.lines) == 0 {
		return false
	}
	if !j.cancelled.IsZero() && j.cancelled.Before(now) {
		now = j.cancelled
	}
	run := s.answeredBy() - s.pendingFor()
	at := j.created.Add(s.pendingFor() + run*time.Duration(i+1)/time.Duration(len(j.lines)))
	return !at.After(now)
}

// batchView is j as one request sees it: its phase and progress at that moment, and its
// output once it has ended.
type batchView struct {
	j                *batchJob
	now              time.Time
	phase            phase
	cancelled        time.Time
	done             []bool
	answered, failed int // lines answered so far: with a reply, with an error
	out              *batchOutput
}

// view reads j now, and renders its output the first time it is seen ended. Called without
// s.mu held.
func (s *Server) view(j *batchJob) batchView {
	s.mu.Lock()
	now := s.opts.Now()
	v := batchView{j: j, now: now, phase: s.phaseOf(j, now), cancelled: j.cancelled, done: make([]bool, len(j.lines))}
	for i, l := range j.lines {
		if v.done[i] = s.lineDone(j, i, now); v.done[i] {
			if l.err != nil {
				v.failed++
			} else {
				v.answered++
			}
		}
	}
	s.mu.Unlock()
	if v.phase.final() {
		j.once.Do(func() { j.out = s.finish(j, v) })
		v.out = j.out
	}
	return v
}

// finish renders the output of j, which has ended, stores its files and records the work it
// did. Rendering takes response ids, so it runs without s.mu held.
func (s *Server) finish(j *batchJob, v batchView) *batchOutput {
	var (
		out   batchOutput
		files []*storedFile
	)
	if j.format == fmtGemini {
		out, files = geminiWire{s}.batchOutput(v)
	} else {
		out, files = openaiWire{s}.batchOutput(v)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, f := range files {
		s.storeFile(f)
	}
	for i, l := range j.lines {
		if v.done[i] && l.plain {
			a := answerKey{j.key, l.c.model, l.c.prompt}
			if s.answered[a] {
				s.stats.Duplicates++
			}
			s.answered[a] = true
		}
	}
	return &out
}

// storeFile keeps f. Called with s.mu held.
func (s *Server) storeFile(f *storedFile) {
	if s.batch.files == nil {
		s.batch.files = map[string]*storedFile{}
	}
	s.batch.files[f.name] = f
}

// file returns key's file named name, or nil. Called with s.mu held.
func (s *Server) file(key, name string) *storedFile {
	if f := s.batch.files[name]; f != nil && f.key == key {
		return f
	}
	return nil
}

// job returns key's batch of format with the given id, or nil.
func (s *Server) job(format, key, id string) *batchJob {
	s.mu.Lock()
	defer s.mu.Unlock()
	if j := s.batch.byID[id]; j != nil && j.key == key && j.format == format {
		return j
	}
	return nil
}

// jobs returns key's batches of format, newest first.
func (s *Server) jobs(format, key string) []*batchJob {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*batchJob
	for i := len(s.batch.jobs) - 1; i >= 0; i-- {
		if j := s.batch.jobs[i]; j.key == key && j.format == format {
			out = append(out, j)
		}
	}
	return out
}

// batchLimit is a refusal by a key's batch limits.
type batchLimit struct {
	tokens bool // the enqueued-token limit, else the unfinished-batch limit
	limit  int
	retry  time.Duration
}

// overLimit checks whether key may add a batch of tokens input tokens now. Called with s.mu
// held.
func (s *Server) overLimit(key string, tokens int, now time.Time) *batchLimit {
	k := s.opts.Keys[key]
	active, enqueued := 0, 0
	var retry time.Duration
	for _, j := range s.batch.jobs {
		if j.key != key {
			continue
		}
		p := s.phaseOf(j, now)
		if p.final() {
			continue
		}
		active++
		enqueued += j.tokens
		end := j.created.Add(s.opts.BatchTurnaround)
		if p == phaseCancelling {
			end = j.cancelled.Add(s.cancelDelay(j))
		}
		if d := end.Sub(now); retry == 0 || d < retry {
			retry = d
		}
	}
	retry = max(retry, time.Second)
	switch {
	case k.MaxBatches > 0 && active >= k.MaxBatches:
		return &batchLimit{limit: k.MaxBatches, retry: retry}
	case k.MaxEnqueuedTokens > 0 && enqueued+tokens > k.MaxEnqueuedTokens:
		return &batchLimit{tokens: true, limit: k.MaxEnqueuedTokens, retry: retry}
	}
	return nil
}

// admitBatch makes j, whose lines are parsed, unless the key's limits refuse it: it numbers j,
// lets the queued faults take it and its lines, and stores it. It returns the refusal, or the
// batch fault that took j (nil for none).
func (s *Server) admitBatch(j *batchJob) (*batchLimit, *BatchFault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.opts.Now()
	for _, l := range j.lines {
		if l.c != nil && l.err == nil {
			j.tokens += words(l.c.input)
		}
	}
	if lim := s.overLimit(j.key, j.tokens, now); lim != nil {
		s.stats.BatchRateLimited++
		return lim, nil
	}
	s.seq++
	if j.format == fmtGemini {
		j.id = fmt.Sprintf("batches/fakebatch%d", s.seq)
	} else {
		j.id = fmt.Sprintf("batch_fake%d", s.seq)
	}
	j.created = now
	f := s.takeBatchFault(j.key, j.name)
	if f != nil {
		switch f.Kind {
		case BatchFail:
			j.failMsg, j.failCode = orString(f.Reason, "The batch failed."), orString(f.Code, "batch_failed")
		case BatchExpire:
			j.expire = true
			switch {
			case f.Done > 0:
				j.expireDone = min(f.Done, len(j.lines))
			case f.Done == 0:
				j.expireDone = len(j.lines) / 2
			}
		}
	}
	for _, l := range j.lines {
		switch {
		case l.err != nil:
		case j.failMsg != "":
			// A batch that fails answers nothing, so its lines take no faults.
		default:
			if lf := s.takeFault(l.c); lf != nil {
				l.rep, l.err = s.faultAnswer(l.c, *lf)
			} else {
				l.rep, l.plain = normalReply(l.c), true
			}
		}
	}
	if j.name != "" {
		for _, o := range s.batch.jobs {
			if o.key == j.key && o.format == j.format && o.name == j.name {
				s.stats.BatchDuplicates++
				break
			}
		}
	}
	s.batch.jobs = append(s.batch.jobs, j)
	if s.batch.byID == nil {
		s.batch.byID = map[string]*batchJob{}
	}
	s.batch.byID[j.id] = j
	s.stats.BatchSubmits++
	s.stats.BatchLines += len(j.lines)
	return nil, f
}

// count adds one to a batch counter of the stats.
func (s *Server) count(field *int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	*field++
}

func orString(s, def string) string {
	if s != "" {
		return s
	}
	return def
}

// maxUpload bounds an uploaded file; the real APIs take far larger ones (Gemini 2 GB, OpenAI
// 200 MB), which no test needs.
const maxUpload = 256 << 20

// routeBatches serves both batch APIs and the file endpoints they need. Gemini's create,
// POST /v1beta/models/{model}:batchGenerateContent, shares its route with generateContent.
func (s *Server) routeBatches(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1beta/batches", s.geminiBatchList)
	mux.HandleFunc("GET /v1beta/batches/{id}", s.geminiBatchGet)
	mux.HandleFunc("POST /v1beta/batches/{action}", s.geminiBatchCancel)
	mux.HandleFunc("POST /upload/v1beta/files", s.geminiUpload)
	mux.HandleFunc("GET /download/v1beta/files/{action}", s.geminiDownload)

	mux.HandleFunc("POST /v1/files", s.openaiFileUpload)
	mux.HandleFunc("GET /v1/files/{id}/content", s.openaiFileContent)
	mux.HandleFunc("POST /v1/batches", s.openaiBatchCreate)
	mux.HandleFunc("GET /v1/batches", s.openaiBatchList)
	mux.HandleFunc("GET /v1/batches/{id}", s.openaiBatchGet)
	mux.HandleFunc("POST /v1/batches/{id}/cancel", s.openaiBatchCancel)
}

// hang waits until the client leaves or the server closes.
func (s *Server) hang(ctx context.Context) {
	select {
	case <-ctx.Done():
	case <-s.closing:
	}
}
