// Package fake is an in-process LLM provider server that speaks the Gemini REST API and the
// OpenAI chat-completions API on 127.0.0.1, with per-key quotas and injectable faults, so the
// real provider clients can be tested against their wire formats and failure modes without a
// network or a key.
//
// Request handling, in order: the key is checked (missing or unknown keys are answered as the
// provider would), the body is validated, then the first queued Fault that matches the request
// answers it; failing that, a random fault (Options.FaultRate); failing that, the key's quota
// decides between a 429 and a normal reply. Faulted requests neither consult nor consume the
// quota, so tests can drive faults and quotas independently.
//
// It also serves both batch APIs (Gemini batchGenerateContent with the File API, OpenAI's Batch
// API with its files): see batch.go for how a batch runs, what its lines answer and how its
// faults are injected.
package fake

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"
)

// Options configures a Server. The zero value serves nobody (no keys) but is otherwise usable.
type Options struct {
	// Addr is the listen address (default "127.0.0.1:0", a free loopback port).
	Addr string
	// Keys are the accepted API keys; any other key is answered as invalid (Gemini: 400
	// INVALID_ARGUMENT with ErrorInfo reason API_KEY_INVALID; OpenAI: 401 invalid_api_key).
	Keys map[string]Key
	// Latency is waited before every answer on the generate endpoints, errors included: a real
	// round trip costs time whatever the answer.
	Latency time.Duration
	// Jitter adds a uniform 0..Jitter to Latency, drawn from a generator seeded with Seed.
	Jitter time.Duration
	Seed   int64
	// ChunkCount is how many text deltas a streamed reply is split into (default 4).
	ChunkCount int
	// LargeFrame prefixes every reply text with more than 1 MiB of spaces, all in the first
	// stream event, to catch clients that read SSE lines with a small fixed buffer. The tag
	// stays the last thing in the text, so the reply still parses.
	LargeFrame bool
	// Now is the clock for quota windows and timestamps (default time.Now); tests pass a
	// fake clock to cross minute and day boundaries instantly.
	Now func() time.Time
	// DayLocation is where the daily quota resets at midnight (default America/Los_Angeles as
	// Gemini does; UTC when the time zone database is missing).
	DayLocation *time.Location
	// FaultRate is the probability that a request no queued fault matched gets a random fault
	// drawn from RandomFaults (for soak runs and the fakellm command).
	FaultRate    float64
	RandomFaults []FaultKind
	// RejectMaxTokens names the models that, like OpenAI's reasoning models (o1, o3, gpt-5),
	// refuse an OpenAI-format request carrying max_tokens: 400 invalid_request_error, param
	// max_tokens, code unsupported_parameter, "Use 'max_completion_tokens' instead." They take
	// max_completion_tokens. Such a request counts as Rejected, before faults and quota.
	RejectMaxTokens []string
	// BatchTurnaround is how long a batch takes, measured from its submission by Now: pending
	// (OpenAI validating) for the first quarter, running (in_progress, then finalizing for the
	// last tenth) while its lines are answered one after another, succeeded (completed) at the
	// end. Zero finishes a batch at once.
	BatchTurnaround time.Duration
}

// Key is one accepted API key and its quota. Only accepted requests count toward RPM and RPD,
// as the real APIs count the requests they served, so a client hammering through 429s does not
// extend its own penalty.
type Key struct {
	// RPM is the number of requests accepted per sliding 60 s window (0 = unlimited). Excess
	// requests get a per-minute 429 whose retry delay is the time until the oldest request in
	// the window leaves it.
	RPM int
	// RPD is the number of requests accepted per day (0 = unlimited), reset at midnight in
	// Options.DayLocation. Excess requests get a per-day 429.
	RPD int
	// NoQuota answers every request with Gemini's 429 "limit: 0" or OpenAI's 429
	// insufficient_quota: the key has no quota for the model at all.
	NoQuota bool
	// MaxBatches is how many of the key's batches may be unfinished at once (0 = unlimited);
	// MaxEnqueuedTokens how many input tokens their lines may hold in all (0 = unlimited). A
	// submission over either is refused with the provider's 429. Batch lines use neither RPM
	// nor RPD: batch mode has its own quota.
	MaxBatches        int
	MaxEnqueuedTokens int
}

// RequestInfo is what the server saw of one generate request, for tests that assert what a
// client sent.
type RequestInfo struct {
	Format string // "gemini" or "openai"
	Key    string
	Model  string
	Prompt string // the user text: Gemini contents parts, OpenAI user messages, joined by newlines
	Stream bool
	Body   map[string]any // the decoded JSON body; nil when it was not valid JSON
	Header http.Header    // as received, API key headers included
}

// Server is a running fake provider. All methods are safe for concurrent use.
type Server struct {
	opts    Options
	url     string
	srv     *http.Server
	served  chan struct{} // closed when Serve returns
	closing chan struct{} // closed by Close; hung and stalled handlers wait on it

	mu       sync.Mutex
	closed   bool
	handlers sync.WaitGroup // handlers started before Close; Add happens under mu, never after closed
	faults   []*queuedFault
	quota    map[string]*keyWindow
	answered map[answerKey]bool // kept across ResetStats: it is the server's memory of paid work
	stats    Stats
	last     RequestInfo
	seq      int // numbers response ids
	rng      *rand.Rand
	held     chan struct{} // non-nil while Hold holds the answers; closed by Release
	batch    batchStore
	prefix   map[string]string // by key: the input of its last call, for the prompt cache
}

type answerKey struct{ key, model, prompt string }

// maxBody bounds a request body; real prompts are far smaller.
const maxBody = 32 << 20

// Start listens on Options.Addr and serves until Close.
func Start(opts Options) (*Server, error) {
	if opts.Addr == "" {
		opts.Addr = "127.0.0.1:0"
	}
	if opts.ChunkCount <= 0 {
		opts.ChunkCount = 4
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.DayLocation == nil {
		loc, err := time.LoadLocation("America/Los_Angeles")
		if err != nil {
			loc = time.UTC
		}
		opts.DayLocation = loc
	}
	ln, err := net.Listen("tcp", opts.Addr)
	if err != nil {
		return nil, fmt.Errorf("fake llm server: %w", err)
	}
	s := &Server{
		opts:     opts,
		url:      "http://" + ln.Addr().String(),
		served:   make(chan struct{}),
		closing:  make(chan struct{}),
		quota:    map[string]*keyWindow{},
		answered: map[answerKey]bool{},
		stats:    Stats{ByKey: map[string]KeyStats{}},
		rng:      rand.New(rand.NewPCG(uint64(opts.Seed), 0x5eed)),
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1beta/models/{action}", func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.PathValue("action"), ":batchGenerateContent") {
			s.geminiBatchCreate(w, r)
			return
		}
		s.generate(w, r, geminiWire{s})
	})
	mux.HandleFunc("GET /v1beta/models", s.geminiModels)
	mux.HandleFunc("POST /v1/chat/completions", func(w http.ResponseWriter, r *http.Request) {
		s.generate(w, r, openaiWire{s})
	})
	mux.HandleFunc("GET /v1/models", s.openaiModels)
	s.routeBatches(mux)
	s.srv = &http.Server{Handler: s.track(mux), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		defer close(s.served)
		_ = s.srv.Serve(ln) // always ErrServerClosed after Close; nothing else stops it
	}()
	return s, nil
}

// URL is the base URL, "http://127.0.0.1:port". Gemini clients use URL()+"/v1beta", OpenAI
// clients URL()+"/v1".
func (s *Server) URL() string { return s.url }

// Close stops the server, unblocks hung and stalled handlers and waits for every handler to
// return. It is safe to call more than once.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	// Connections go first: a stalled handler released before its connection is closed would
	// end its response cleanly, and the client would take a cut-off stream for a whole one.
	err := s.srv.Close()
	close(s.closing)
	s.handlers.Wait()
	<-s.served
	return err
}

// LastRequest is the most recent generate request (any format, any outcome).
func (s *Server) LastRequest() RequestInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.last
}

// track counts requests in flight and registers each handler with Close.
func (s *Server) track(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			return
		}
		s.handlers.Add(1)
		s.stats.InFlight++
		s.stats.MaxInFlight = max(s.stats.MaxInFlight, s.stats.InFlight)
		s.mu.Unlock()
		defer func() {
			s.mu.Lock()
			s.stats.InFlight--
			s.mu.Unlock()
			s.handlers.Done()
		}()
		next.ServeHTTP(w, r)
	})
}

// generate is the one pipeline both wire formats go through; wire supplies the format.
func (s *Server) generate(w http.ResponseWriter, r *http.Request, wf wire) {
	raw, readErr := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	key, hasKey := wf.key(r)
	c, perr := wf.parse(r, raw)
	c.key = key
	if readErr != nil && perr == nil {
		perr = &apiErr{kind: failBadRequest, msg: "could not read the request body: " + readErr.Error()}
	}

	s.mu.Lock()
	s.stats.Requests++
	s.last = RequestInfo{Format: wf.name(), Key: key, Model: c.model, Prompt: c.prompt,
		Stream: c.stream, Body: c.body, Header: r.Header.Clone()}
	_, known := s.opts.Keys[key]
	var (
		verdict apiErr
		fault   *Fault
	)
	switch {
	case !hasKey:
		verdict = apiErr{kind: failMissingKey}
	case !known:
		verdict = apiErr{kind: failInvalidKey}
	case perr != nil:
		verdict = *perr
	default:
		fault = s.takeFault(c)
	}
	ks := s.stats.ByKey[key]
	ks.Requests++
	switch {
	case verdict.kind != failNone:
		ks.Rejected++
	case fault != nil:
		ks.Faulted++
	default:
		now := s.opts.Now()
		verdict = s.admit(c, now)
		if verdict.kind != failNone {
			ks.RateLimited++
		} else {
			ks.Accepted++
			ks.AcceptedAt = append(ks.AcceptedAt, now)
			a := answerKey{key, c.model, c.prompt}
			if s.answered[a] {
				s.stats.Duplicates++
			}
			s.answered[a] = true
		}
	}
	s.stats.ByKey[key] = ks
	accepted := fault == nil && verdict.kind == failNone
	s.mu.Unlock()

	if !s.pause(r.Context()) {
		if accepted {
			s.mu.Lock()
			s.stats.Abandoned++
			s.mu.Unlock()
		}
		return
	}
	if fault != nil {
		s.applyFault(w, r, wf, c, *fault)
		return
	}
	if verdict.kind != failNone {
		wf.writeError(w, c, verdict)
		return
	}
	s.mu.Lock()
	s.stats.Answered++
	s.mu.Unlock()
	wf.writeReply(w, r, c, normalReply(c), noFault)
}

// Hold makes every generate request, once its Latency has passed, wait before it is answered
// until Release: the calls in flight stay in flight, and new ones join them, so a test can act
// (kill a client, say) while it knows which calls are open. A held request whose client leaves
// ends at once (an accepted one counts as Abandoned); Close ends them all. Holding twice is
// holding once.
func (s *Server) Hold() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.held == nil {
		s.held = make(chan struct{})
	}
}

// Release answers the requests Hold held, and lets later ones through. Without a Hold it does
// nothing.
func (s *Server) Release() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.held != nil {
		close(s.held)
		s.held = nil
	}
}

// pause waits Latency plus jitter, then while Hold holds the answers; false when the client
// left or the server is closing.
func (s *Server) pause(ctx context.Context) bool {
	d := s.opts.Latency
	if s.opts.Jitter > 0 {
		s.mu.Lock()
		d += time.Duration(s.rng.Int64N(int64(s.opts.Jitter) + 1))
		s.mu.Unlock()
	}
	if d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			return false
		case <-s.closing:
			return false
		}
	}
	s.mu.Lock()
	held := s.held
	if held != nil {
		s.stats.Held++
	}
	s.mu.Unlock()
	if held == nil {
		return true
	}
	defer func() {
		s.mu.Lock()
		s.stats.Held--
		s.mu.Unlock()
	}()
	select {
	case <-held:
		return true
	case <-ctx.Done():
	case <-s.closing:
	}
	return false
}

// block waits until the client gives up or the server closes.
func (s *Server) block(ctx context.Context) {
	select {
	case <-ctx.Done():
	case <-s.closing:
	}
}

// nextID numbers responses so that ids are unique but deterministic.
func (s *Server) nextID() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seq++
	return s.seq
}

// resetConnection closes the TCP connection without a response. SO_LINGER 0 makes the kernel
// send RST instead of FIN, so the client sees "connection reset by peer" as with a crashed
// proxy, not a clean EOF.
func resetConnection(w http.ResponseWriter) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		// Only HTTP/2 cannot hijack, and this server speaks HTTP/1.1 only.
		panic(http.ErrAbortHandler)
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = conn.Close()
}
