package fake

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mhannotator/mha/internal/labels"
)

func TestHangEndsWhenTheClientGivesUp(t *testing.T) {
	s := start(t, Options{})
	s.Inject(Fault{Kind: Hang, Times: 1})
	client := &http.Client{Timeout: 200 * time.Millisecond}
	begin := time.Now()
	_, err := client.Do(geminiRequest(t, s, key1, mustJSON(t, geminiBody(plainText)), false))
	var netErr interface{ Timeout() bool }
	if !errors.As(err, &netErr) || !netErr.Timeout() {
		t.Fatalf("err = %v, want a client timeout", err)
	}
	if d := time.Since(begin); d > 2*time.Second {
		t.Errorf("the client waited %v", d)
	}
	eventually(t, "the hung handler returns", func() bool { return s.Stats().InFlight == 0 })
	if res := gemini(t, s, key1, plainText); res.status != 200 {
		t.Errorf("after the hang: status %d", res.status)
	}
}

func TestCloseReleasesHungAndStalledHandlers(t *testing.T) {
	s, err := Start(Options{Keys: map[string]Key{key1: {}}})
	if err != nil {
		t.Fatal(err)
	}
	s.Inject(Fault{Kind: Hang, Match: "hang"})
	s.Inject(Fault{Kind: StallStream, Match: "stall"})
	errs := make(chan error, 2)
	go func() {
		_, err := http.DefaultClient.Do(openaiRequest(t, s, key1, mustJSON(t, openaiBody("hang", false, false))))
		errs <- err
	}()
	go func() {
		resp, err := http.DefaultClient.Do(geminiRequest(t, s, key1, mustJSON(t, geminiBody("stall")), true))
		if err == nil {
			_, err = io.ReadAll(resp.Body)
			resp.Body.Close()
		}
		errs <- err
	}()
	eventually(t, "both requests are in flight", func() bool { return s.Stats().InFlight == 2 })
	begin := time.Now()
	if err := s.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if d := time.Since(begin); d > time.Second {
		t.Errorf("Close took %v", d)
	}
	for range 2 {
		select {
		case err := <-errs:
			if err == nil {
				t.Error("a request cut off by Close reported success")
			}
		case <-time.After(5 * time.Second):
			t.Fatal("a client is still blocked after Close")
		}
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// readEvent reads one SSE event (up to a blank line) of either line ending.
func readEvent(r *bufio.Reader) (string, error) {
	var lines []string
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return strings.Join(lines, "\n"), err
		}
		line = strings.TrimRight(line, "\r\n")
		if line == "" {
			return strings.Join(lines, "\n"), nil
		}
		lines = append(lines, line)
	}
}

// readsNothingFor reports whether a read from body stays blocked for d.
func readsNothingFor(r *bufio.Reader, d time.Duration) bool {
	got := make(chan struct{})
	go func() {
		_, _ = r.ReadByte()
		close(got)
	}()
	select {
	case <-got:
		return false
	case <-time.After(d):
		return true
	}
}

func TestStallStreamKeepsTheConnectionOpen(t *testing.T) {
	for _, format := range []string{"gemini", "openai"} {
		t.Run(format, func(t *testing.T) {
			s := start(t, Options{ChunkCount: 4})
			s.Inject(Fault{Kind: StallStream, After: 2})
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			req := geminiRequest(t, s, key1, mustJSON(t, geminiBody(plainText)), true)
			if format == "openai" {
				req = openaiRequest(t, s, key1, mustJSON(t, openaiBody(plainText, true, true)))
			}
			resp := streamOpen(t, ctx, req)
			r := bufio.NewReader(resp.Body)
			for i := range 2 {
				ev, err := readEvent(r)
				if err != nil || !strings.HasPrefix(ev, "data: {") {
					t.Fatalf("event %d: %q, %v", i, ev, err)
				}
			}
			if !readsNothingFor(r, 300*time.Millisecond) {
				t.Fatal("the stream went on after After chunks")
			}
			if st := s.Stats(); st.InFlight != 1 {
				t.Errorf("InFlight = %d while stalled", st.InFlight)
			}
			cancel()
			eventually(t, "the stalled handler returns", func() bool { return s.Stats().InFlight == 0 })
		})
	}
}

func TestStallStreamOnAPlainRequestStallsTheBody(t *testing.T) {
	s := start(t, Options{})
	s.Inject(Fault{Kind: StallStream})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	resp := streamOpen(t, ctx, geminiRequest(t, s, key1, mustJSON(t, geminiBody(plainText)), false))
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	r := bufio.NewReader(resp.Body)
	if _, err := r.ReadByte(); err != nil { // part of the body did arrive
		t.Fatal(err)
	}
	_, _ = r.Discard(r.Buffered())
	if !readsNothingFor(r, 300*time.Millisecond) {
		t.Error("the body was completed")
	}
}

func TestResetConnectionGivesAConnectionError(t *testing.T) {
	s := start(t, Options{})
	s.Inject(Fault{Kind: ResetConnection, Times: 2})
	for _, req := range []*http.Request{
		geminiRequest(t, s, key1, mustJSON(t, geminiBody(plainText)), false),
		openaiRequest(t, s, key1, mustJSON(t, openaiBody(plainText, false, false))),
	} {
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			t.Fatalf("%s: got status %d, want a connection error", req.URL.Path, resp.StatusCode)
		}
		if !errors.Is(err, syscall.ECONNRESET) {
			t.Errorf("%s: %v, want connection reset by peer", req.URL.Path, err)
		}
	}
	if ks := s.Stats().ByKey[key1]; ks.Faulted != 2 {
		t.Errorf("key stats = %+v", ks)
	}
}

func TestMidStreamErrorGemini(t *testing.T) {
	s := start(t, Options{ChunkCount: 4})
	s.Inject(Fault{Kind: MidStreamError, After: 2})
	res := geminiStream(t, s, key1, plainText)
	lines := strings.Split(strings.TrimRight(string(res.raw), "\r\n"), "\r\n")
	// data, blank, data, blank, error line
	if res.status != 200 || len(lines) != 5 {
		t.Fatalf("status %d, lines %q", res.status, lines)
	}
	last := lines[4]
	if strings.HasPrefix(last, "data:") {
		t.Fatalf("the error line must not be an SSE event: %q", last)
	}
	var body map[string]any
	if err := json.Unmarshal([]byte(last), &body); err != nil {
		t.Fatalf("error line is not JSON: %v: %q", err, last)
	}
	if path(t, body, "error", "code") != float64(503) || path(t, body, "error", "status") != "UNAVAILABLE" {
		t.Errorf("error = %v", body)
	}
}

func TestMidStreamErrorOpenAI(t *testing.T) {
	s := start(t, Options{ChunkCount: 4})
	s.Inject(Fault{Kind: MidStreamError, After: 3})
	res := openaiStream(t, s, key1, plainText, true)
	events := sseEvents(res.raw, "\n")
	if len(events) != 4 {
		t.Fatalf("%d events: %q", len(events), events)
	}
	if strings.Contains(string(res.raw), "[DONE]") {
		t.Error("an interrupted stream sent [DONE]")
	}
	if got := path(t, decodeEvent(t, events[3]), "error", "type"); got != "server_error" {
		t.Errorf("error.type = %v", got)
	}
}

func TestMidStreamErrorOnAPlainRequestTruncatesTheBody(t *testing.T) {
	s := start(t, Options{})
	s.Inject(Fault{Kind: MidStreamError})
	resp, err := http.DefaultClient.Do(openaiRequest(t, s, key1, mustJSON(t, openaiBody(plainText, false, false))))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if _, err := io.ReadAll(resp.Body); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("reading the body: %v, want unexpected EOF", err)
	}
}

func TestStallAfterTheLastGeminiChunkNeverEndsTheStream(t *testing.T) {
	s := start(t, Options{ChunkCount: 2})
	s.Inject(Fault{Kind: StallStream, After: 99})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r := bufio.NewReader(streamOpen(t, ctx, geminiRequest(t, s, key1, mustJSON(t, geminiBody(plainText)), true)).Body)
	for range 2 {
		if _, err := readEvent(r); err != nil {
			t.Fatal(err)
		}
	}
	if !readsNothingFor(r, 300*time.Millisecond) {
		t.Error("the stream ended")
	}
}

func TestFaultMatchKeyAndTimes(t *testing.T) {
	s := start(t, Options{})
	s.Inject(Fault{Kind: ServerError, Match: "poison", Times: 2})
	s.Inject(Fault{Kind: Overloaded, Key: key2})
	s.Inject(Fault{Kind: ModelNotFound, Match: "poison", Times: 1}) // behind the first poison fault

	want := []struct {
		key, prompt string
		status      int
	}{
		{key1, plainText, 200},
		{key1, "a poison pill", 500},
		{key2, "more poison", 500}, // the first matching fault wins, whatever the key
		{key1, "poison again", 404},
		{key1, "poison once more", 200}, // both poison faults are used up
		{key2, plainText, 503},
		{key2, plainText, 503}, // Times 0 repeats
	}
	for i, w := range want {
		if res := gemini(t, s, w.key, w.prompt); res.status != w.status {
			t.Errorf("request %d (%s, %q): status %d, want %d", i, w.key, w.prompt, res.status, w.status)
		}
	}
	s.ClearFaults()
	if res := gemini(t, s, key2, plainText); res.status != 200 {
		t.Errorf("after ClearFaults: status %d", res.status)
	}
	if ks := s.Stats().ByKey; ks[key1].Faulted != 2 || ks[key2].Faulted != 3 || ks[key2].Accepted != 1 {
		t.Errorf("key stats = %+v", ks)
	}
}

func TestFaultsDoNotConsumeQuota(t *testing.T) {
	s := start(t, Options{Keys: map[string]Key{key1: {RPM: 1}}})
	s.Inject(Fault{Kind: Malformed, Times: 3})
	for range 3 {
		gemini(t, s, key1, plainText)
	}
	if res := gemini(t, s, key1, plainText); res.status != 200 {
		t.Errorf("status %d: faulted requests were counted against RPM", res.status)
	}
}

func TestRejectedRequestsDoNotUseFaults(t *testing.T) {
	s := start(t, Options{})
	s.Inject(Fault{Kind: ServerError, Times: 1})
	if res := gemini(t, s, "unknown", plainText); res.status != 400 {
		t.Fatalf("status %d", res.status)
	}
	if res := gemini(t, s, key1, plainText); res.status != 500 {
		t.Errorf("status %d: the fault was spent on a rejected request", res.status)
	}
}

func TestRandomFaults(t *testing.T) {
	s := start(t, Options{FaultRate: 1, RandomFaults: []FaultKind{Overloaded}})
	for range 3 {
		if res := openai(t, s, key1, plainText); res.status != 503 {
			t.Errorf("status %d", res.status)
		}
	}
	if ks := s.Stats().ByKey[key1]; ks.Faulted != 3 {
		t.Errorf("key stats = %+v", ks)
	}
}

func TestInjectRejectsUnknownKinds(t *testing.T) {
	s := start(t, Options{})
	defer func() {
		if recover() == nil {
			t.Error("no panic")
		}
	}()
	s.Inject(Fault{Kind: "gremlins"})
}

func TestParseFaultKind(t *testing.T) {
	for _, k := range FaultKinds {
		if got, err := ParseFaultKind(strings.ToUpper(string(k))); err != nil || got != k {
			t.Errorf("ParseFaultKind(%q) = %q, %v", k, got, err)
		}
	}
	if _, err := ParseFaultKind("gremlins"); err == nil {
		t.Error("gremlins accepted")
	}
}

func TestLargeFrame(t *testing.T) {
	s := start(t, Options{LargeFrame: true, ChunkCount: 3})
	for _, format := range []string{"gemini", "openai"} {
		t.Run(format, func(t *testing.T) {
			var res result
			var textOf func(map[string]any) string
			sep := "\r\n"
			if format == "gemini" {
				res = geminiStream(t, s, key1, plainText)
				textOf = func(ev map[string]any) string {
					return path(t, ev, "candidates", 0, "content", "parts", 0, "text").(string)
				}
			} else {
				sep = "\n"
				res = openaiStream(t, s, key1, plainText, false)
				textOf = func(ev map[string]any) string {
					s, _ := path(t, ev, "choices", 0, "delta").(map[string]any)["content"].(string)
					return s
				}
			}
			// A default bufio.Scanner (64 KiB) and one raised to 1 MiB both fail on the frame.
			sc := bufio.NewScanner(strings.NewReader(string(res.raw)))
			sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
			for sc.Scan() {
			}
			if !errors.Is(sc.Err(), bufio.ErrTooLong) {
				t.Errorf("a 1 MiB line buffer read the stream: %v", sc.Err())
			}
			var text strings.Builder
			big := 0
			for _, e := range sseEvents(res.raw, sep) {
				if e == "data: [DONE]" {
					continue
				}
				if len(e) > 1<<20 {
					big++
				}
				text.WriteString(textOf(decodeEvent(t, e)))
			}
			if big != 1 {
				t.Errorf("%d events over 1 MiB, want 1", big)
			}
			if o := labels.Parse(labels.Redressal, text.String()); !o.OK() {
				t.Errorf("padded reply does not parse: %+v", o)
			}
		})
	}
}
