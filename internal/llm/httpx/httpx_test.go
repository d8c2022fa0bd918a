package httpx

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"testing/iotest"
	"time"

	"github.com/mhannotator/mha/internal/llm"
)

func TestTransportBoundsEveryPhaseAndPingsHTTP2(t *testing.T) {
	tr := NewTransport(TransportOptions{ResponseHeaderTimeout: 45 * time.Second, MaxIdleConnsPerHost: 10})
	if tr.ResponseHeaderTimeout != 45*time.Second || tr.TLSHandshakeTimeout != 10*time.Second ||
		tr.IdleConnTimeout != 30*time.Second || tr.MaxIdleConnsPerHost != 10 || !tr.ForceAttemptHTTP2 {
		t.Errorf("transport = %+v", tr)
	}
	if tr.HTTP2 == nil || tr.HTTP2.SendPingTimeout != 15*time.Second || tr.HTTP2.PingTimeout != 5*time.Second {
		t.Errorf("HTTP/2 health checks = %+v, want a ping after 15s of silence, 5s to answer", tr.HTTP2)
	}
	if tr.DialContext == nil || tr.Proxy == nil {
		t.Error("want a bounded dialer and the environment's proxy")
	}
}

// stallingPipe writes chunks into a pipe, then stops writing without closing it.
func stallingPipe(chunks ...string) io.ReadCloser {
	r, w := io.Pipe()
	go func() {
		for _, c := range chunks {
			if _, err := w.Write([]byte(c)); err != nil {
				return
			}
		}
	}()
	return r
}

func TestIdleReaderCutsAStreamThatStopsSendingAndCountsItsChunks(t *testing.T) {
	var progress atomic.Int32
	r := NewIdleReader(stallingPipe("one ", "two"), 100*time.Millisecond, func() { progress.Add(1) })
	defer r.Close()
	start := time.Now()
	got, err := io.ReadAll(r)
	elapsed := time.Since(start)
	if string(got) != "one two" {
		t.Errorf("read %q before the stall, want %q", got, "one two")
	}
	var e *llm.Error
	if !errors.As(err, &e) || e.Kind != llm.Unavailable || e.Message != "stream stalled: no data for 100ms" {
		t.Fatalf("err = %v, want an Unavailable stall", err)
	}
	if elapsed > 2*time.Second {
		t.Errorf("the stall was cut after %v, want about 100ms", elapsed)
	}
	if n := progress.Load(); n != 2 {
		t.Errorf("progress called %d times, want once per chunk (2)", n)
	}
}

func TestIdleReaderLetsASlowButSteadyStreamFinish(t *testing.T) {
	r, w := io.Pipe()
	go func() {
		for range 8 {
			time.Sleep(30 * time.Millisecond)
			w.Write([]byte("x"))
		}
		w.Close()
	}()
	ir := NewIdleReader(r, 150*time.Millisecond, nil) // a nil callback is allowed
	defer ir.Close()
	got, err := io.ReadAll(ir)
	if err != nil || string(got) != "xxxxxxxx" {
		t.Fatalf("ReadAll = %q, %v: a stream 240ms long with 30ms gaps must not be cut at 150ms idle", got, err)
	}
}

// hangingServer answers each request with first, then waits for the client to go away or the
// test to end.
func hangingServer(t *testing.T, first string) *httptest.Server {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if first != "" {
			w.Write([]byte(first))
			w.(http.Flusher).Flush()
		}
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(release) }) // runs first, so no handler keeps Close waiting
	return srv
}

func TestIdleReaderUnblocksARealResponseBody(t *testing.T) {
	srv := hangingServer(t, "data: first\n\n")
	resp, err := srv.Client().Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	r := NewIdleReader(resp.Body, 150*time.Millisecond, nil)
	defer r.Close()
	start := time.Now()
	_, err = io.ReadAll(r)
	if k, _ := llm.KindOf(err); k != llm.Unavailable {
		t.Fatalf("err = %v, want Unavailable", err)
	}
	if elapsed := time.Since(start); elapsed > 2*time.Second {
		t.Errorf("a read blocked on the network was cut after %v, want about 150ms", elapsed)
	}
}

func readEvents(t *testing.T, r io.Reader) (events []string, bare []string) {
	t.Helper()
	s := NewSSE(r)
	for {
		data, isBare, err := s.Next()
		if errors.Is(err, io.EOF) {
			return events, bare
		}
		if err != nil {
			t.Fatalf("Next: %v", err)
		}
		if isBare {
			bare = append(bare, string(data))
		} else {
			events = append(events, string(data))
		}
	}
}

func TestSSEAcceptsEveryLineEndingAndBothDataSpellings(t *testing.T) {
	want := []string{`{"a":1}`, `{"b":2}`, "two\nlines"}
	for name, sep := range map[string]string{"LF": "\n", "CRLF": "\r\n", "CR": "\r"} {
		stream := "data: {\"a\":1}" + sep + sep +
			": a comment" + sep + "event: message" + sep + "id: 7" + sep + "data:{\"b\":2}" + sep + sep +
			"data: two" + sep + "data: lines" + sep + sep
		for _, how := range []struct {
			name string
			r    io.Reader
		}{
			{"whole", strings.NewReader(stream)},
			// One byte per read puts every CR at the end of the data read so far.
			{"byte by byte", iotest.OneByteReader(strings.NewReader(stream))},
		} {
			t.Run(name+" "+how.name, func(t *testing.T) {
				events, bare := readEvents(t, how.r)
				if !reflect.DeepEqual(events, want) || bare != nil {
					t.Errorf("events = %q, bare = %q; want %q", events, bare, want)
				}
			})
		}
	}
}

func TestSSEHandsOverACRFramedEventWithoutWaitingForMoreBytes(t *testing.T) {
	r, w := io.Pipe()
	go w.Write([]byte("data: first\r\r")) // then nothing: the stream stays open
	s := NewSSE(r)
	got := make(chan string, 1)
	go func() {
		data, _, _ := s.Next()
		got <- string(data)
	}()
	select {
	case data := <-got:
		if data != "first" {
			t.Errorf("event = %q, want first", data)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("a complete CR-framed event was held back waiting for the next byte")
	}
	w.Close()
}

func TestSSEReturnsBareJSONLinesApartAndKeepsTheirOrder(t *testing.T) {
	stream := "data: {\"n\":1}\n\n{\"error\": {\"code\": 503}}\ndata: {\"n\":2}\n{\"error\": {\"code\": 500}}\n"
	s := NewSSE(strings.NewReader(stream))
	var got []string
	for {
		data, bare, err := s.Next()
		if err != nil {
			break
		}
		got = append(got, map[bool]string{true: "bare ", false: "event "}[bare]+string(data))
	}
	want := []string{`event {"n":1}`, `bare {"error": {"code": 503}}`, `event {"n":2}`, `bare {"error": {"code": 500}}`}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %q\nwant %q", got, want)
	}
}

func TestSSEReadsAnEventWithoutAFinalBlankLineAndFramesOverOneMiB(t *testing.T) {
	big := strings.Repeat("x", 3<<20)
	events, _ := readEvents(t, strings.NewReader("data: "+big+"\r\n\r\ndata: last"))
	if len(events) != 2 || events[0] != big || events[1] != "last" {
		t.Errorf("got %d events (first %d bytes), want the 3 MiB event and the unterminated last one", len(events), len(events[0]))
	}
}

func TestSSEReportsALineLongerThanMaxFrame(t *testing.T) {
	s := NewSSE(io.MultiReader(strings.NewReader("data: "), bytes.NewReader(make([]byte, MaxFrame+1))))
	if _, _, err := s.Next(); !errors.Is(err, bufio.ErrTooLong) {
		t.Errorf("err = %v, want bufio.ErrTooLong", err)
	}
}

func TestRetryAfterHeaderPrefersMillisecondsThenSecondsThenADate(t *testing.T) {
	now := time.Date(2026, 11, 3, 12, 0, 0, 0, time.UTC)
	cases := []struct {
		name   string
		header map[string]string
		want   time.Duration
	}{
		{"milliseconds", map[string]string{"Retry-After-Ms": "1500", "Retry-After": "9"}, 1500 * time.Millisecond},
		{"seconds", map[string]string{"Retry-After": "7"}, 7 * time.Second},
		{"fractional seconds", map[string]string{"Retry-After": "0.5"}, 500 * time.Millisecond},
		{"an HTTP date", map[string]string{"Retry-After": now.Add(90 * time.Second).Format(http.TimeFormat)}, 90 * time.Second},
		{"a date in the past", map[string]string{"Retry-After": now.Add(-time.Minute).Format(http.TimeFormat)}, 0},
		{"junk", map[string]string{"Retry-After": "soon"}, 0},
		{"none", nil, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := http.Header{}
			for k, v := range c.header {
				h.Set(k, v)
			}
			if got := RetryAfterHeader(h, now); got != c.want {
				t.Errorf("RetryAfterHeader = %v, want %v", got, c.want)
			}
		})
	}
}

func TestRetryInMessageReadsBothProvidersPhrasings(t *testing.T) {
	cases := map[string]time.Duration{
		"You exceeded your current quota ... Please retry in 26.4s.":                   26400 * time.Millisecond,
		"Rate limit reached for gpt-4o-mini ... Please try again in 20ms. Visit ...":   20 * time.Millisecond,
		"Rate limit reached ... Please try again in 41.7s.":                            41700 * time.Millisecond,
		"Rate limit reached ... Please try again in 1m30s.":                            90 * time.Second,
		"Please retry in 38.804097346s":                                                38804097346 * time.Nanosecond,
		"Resource has been exhausted (e.g. check quota).":                              0,
		"please try again in a moment":                                                 0,
		"Limit 200000, Used 199000, Requested 2000. Please try again in 300ms. Thanks": 300 * time.Millisecond,
	}
	for msg, want := range cases {
		if got := RetryInMessage(msg); got != want {
			t.Errorf("RetryInMessage(%q) = %v, want %v", msg, got, want)
		}
	}
}

func TestSnippetRedactsShortensAndKeepsUTF8(t *testing.T) {
	body := []byte("<html>\n  <body>bad gateway for key sk-SECRET</body>\n</html>")
	if got := Snippet(body, "sk-SECRET"); got != "<html> <body>bad gateway for key ****</body> </html>" {
		t.Errorf("Snippet = %q", got)
	}
	long := Snippet([]byte(strings.Repeat("é", 300)), "")
	if !strings.HasSuffix(long, "…") || len(long) > 200+len("…") || !strings.HasPrefix(long, "éé") {
		t.Errorf("long snippet = %q", long)
	}
	// The key is removed before the cut, so no prefix of it survives at the end.
	cut := Snippet([]byte(strings.Repeat("a", 195)+"sk-SECRET"), "sk-SECRET")
	if strings.Contains(cut, "sk-") {
		t.Errorf("a cut snippet kept part of the key: %q", cut)
	}
}

func newTestClient(timeout time.Duration) *Client {
	return &Client{
		Provider:          "test",
		HTTP:              &http.Client{Transport: NewTransport(TransportOptions{ResponseHeaderTimeout: timeout})},
		RequestTimeout:    timeout,
		StreamIdleTimeout: timeout,
	}
}

func TestPostCutsAServerThatNeverAnswersAtTheRequestTimeout(t *testing.T) {
	srv := hangingServer(t, "")
	start := time.Now()
	_, err := newTestClient(300*time.Millisecond).Post(context.Background(), srv.URL, nil, []byte("{}"))
	var e *llm.Error
	if !errors.As(err, &e) || e.Kind != llm.Unavailable || e.Provider != "test" || !strings.Contains(e.Message, "request timeout 300ms") {
		t.Fatalf("err = %v, want Unavailable naming the request timeout", err)
	}
	if elapsed := time.Since(start); elapsed > 3*time.Second {
		t.Errorf("took %v, want about 300ms", elapsed)
	}
}

func TestPostReturnsTheCallersCancellationUnclassified(t *testing.T) {
	srv := hangingServer(t, "")
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	_, err := newTestClient(10*time.Second).Post(ctx, srv.URL, nil, []byte("{}"))
	if err != context.Canceled {
		t.Fatalf("err = %#v, want context.Canceled itself", err)
	}
}

func TestPostClassifiesARefusedConnectionAsUnavailable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	_, err = newTestClient(5*time.Second).Post(context.Background(), "http://"+addr, nil, []byte("{}"))
	if k, ok := llm.KindOf(err); !ok || k != llm.Unavailable {
		t.Fatalf("err = %v, want Unavailable", err)
	}
}
