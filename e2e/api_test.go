package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/xuri/excelize/v2"

	"github.com/mhannotator/mha/internal/contract"
	"github.com/mhannotator/mha/internal/labels"
	"github.com/mhannotator/mha/internal/runs"
)

// startAPI runs the api binary on a free loopback port until the test ends and returns its
// base URL once it is ready.
func (s *stack) startAPI() string {
	s.t.Helper()
	base, _ := s.startAPIProcess()
	return base
}

// startAPIProcess is startAPI that also returns the api's process, for benchmarks that read
// its CPU time and memory.
func (s *stack) startAPIProcess() (string, *exec.Cmd) {
	s.t.Helper()
	cmd := exec.Command(filepath.Join(binDir, "api"), append(s.commonArgs(), "--listen", "127.0.0.1:0", "--log-format", "json", "--web-ui", "")...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	logFile, err := os.Create(filepath.Join(s.dir, fmt.Sprintf("api-%d.log", time.Now().UnixNano())))
	if err != nil {
		s.t.Fatal(err)
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		s.t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	s.t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
		logFile.Close()
		if s.t.Failed() {
			b, _ := os.ReadFile(logFile.Name())
			s.t.Logf("api log %s:\n%s", logFile.Name(), b)
		}
	})
	// The api logs the address it listens on; everything it logs goes to the test's log file.
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Bytes()
			logFile.Write(append(line, '\n'))
			var rec struct{ Msg, Dashboard string }
			if json.Unmarshal(line, &rec) == nil && rec.Msg == "api serving" {
				found <- strings.TrimSuffix(rec.Dashboard, "/")
			}
		}
	}()
	var base string
	select {
	case base = <-found:
	case <-time.After(30 * time.Second):
		s.t.Fatal("the api did not say where it listens within 30 s")
	}
	waitFor(s.t, 30*time.Second, "api ready", func() (bool, string) {
		resp, err := http.Get(base + "/readyz")
		if err != nil {
			return false, err.Error()
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, string(b)
	})
	return base, cmd
}

// call sends a JSON request to the api and decodes its JSON reply into out (when not nil).
func call(t testing.TB, method, url string, body, out any) int {
	t.Helper()
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, url, r)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s %s: %d %s: %v", method, url, resp.StatusCode, b, err)
		}
	}
	return resp.StatusCode
}

type results struct {
	Results []runs.Result `json:"results"`
}

// event is one WebSocket message.
type event struct {
	ID   string          `json:"id"`
	Type string          `json:"type"`
	Data json.RawMessage `json:"data"`
}

type annotationEvent struct {
	Seq       int64     `json:"seq"`
	Run       string    `json:"run"`
	SampleID  string    `json:"sample_id"`
	Label     string    `json:"label"`
	Status    string    `json:"status"`
	CreatedAt time.Time `json:"created_at"`
}

// wsEvents connects to the api's WebSocket (resuming after since when not empty) and delivers
// its messages until the test ends.
func wsEvents(t testing.TB, base, since string) <-chan event {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	url := "ws" + strings.TrimPrefix(base, "http") + "/api/ws"
	if since != "" {
		url += "?since=" + since
	}
	conn, _, err := websocket.Dial(ctx, url, nil)
	if err != nil {
		cancel()
		t.Fatalf("dial %s: %v", url, err)
	}
	conn.SetReadLimit(16 << 20)
	ch := make(chan event, 100000)
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer close(ch)
		for {
			_, b, err := conn.Read(ctx)
			if err != nil {
				return
			}
			// A frame holds one or more events, one per line.
			for _, line := range bytes.Split(b, []byte("\n")) {
				var e event
				if err := json.Unmarshal(line, &e); err != nil {
					t.Errorf("event is not JSON: %s", line)
					return
				}
				ch <- e
			}
		}
	}()
	t.Cleanup(func() {
		cancel()
		conn.CloseNow()
		<-done
	})
	return ch
}

// next returns the next event that match accepts, failing the test after timeout.
func next(t testing.TB, ch <-chan event, timeout time.Duration, what string, match func(event) bool) event {
	t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case e, ok := <-ch:
			if !ok {
				t.Fatalf("the event stream closed while waiting for %s", what)
			}
			if match(e) {
				return e
			}
		case <-deadline:
			t.Fatalf("no %s within %s", what, timeout)
		}
	}
}

func runEventWith(id, status string) func(event) bool {
	return func(e event) bool {
		if e.Type != "run" {
			return false
		}
		var st contract.Status
		return json.Unmarshal(e.Data, &st) == nil && st.WorkflowID == id && st.Status == status
	}
}

func annotationOf(t testing.TB, e event) annotationEvent {
	t.Helper()
	var a annotationEvent
	if err := json.Unmarshal(e.Data, &a); err != nil {
		t.Fatalf("annotation event %s: %v", e.Data, err)
	}
	return a
}

// TestAPIStartWatchPauseResumeExport drives one run from the api as a person on the dashboard
// would: start it, watch it progress over the WebSocket, pause, resume, and export XLSX.
func TestAPIStartWatchPauseResumeExport(t *testing.T) {
	s := newStack(t, map[string]any{"offline_latency_seconds": 0.05}, map[string]map[labels.Domain]int{"a1": {labels.Urgency: 60, labels.Intensity: 20}}, 60)
	s.startWorker()
	base := s.startAPI()
	ws := wsEvents(t, base, "")
	first := next(t, ws, 10*time.Second, "state", func(e event) bool { return true })
	if first.Type != "state" {
		t.Fatalf("first event is %q, want state", first.Type)
	}

	var started results
	if code := call(t, http.MethodPost, base+"/api/control/start", map[string]any{"all": true}, &started); code != http.StatusOK {
		t.Fatalf("start: %d %+v", code, started)
	}
	if len(started.Results) != 2 || started.Results[0].Outcome != runs.Started {
		t.Fatalf("start results %+v, want two started runs", started.Results)
	}
	urgency := contract.RunID("a1", labels.Urgency)
	for range 3 {
		next(t, ws, 20*time.Second, "an annotation of "+urgency, func(e event) bool {
			return e.Type == "annotation" && annotationOf(t, e).Run == urgency
		})
	}

	var paused results
	call(t, http.MethodPost, base+"/api/control/pause", map[string]any{"annotator": "a1", "domain": "urgency"}, &paused)
	if len(paused.Results) != 1 || (paused.Results[0].Outcome != runs.Paused && paused.Results[0].Outcome != runs.Pending) {
		t.Fatalf("pause results %+v", paused.Results)
	}
	next(t, ws, 5*time.Second, "run event: paused", runEventWith(urgency, contract.StatusPaused))
	atPause := s.stored(runs.Pair{Annotator: "a1", Domain: labels.Urgency})

	var resumed results
	call(t, http.MethodPost, base+"/api/control/resume", map[string]any{"annotator": "a1", "domain": "urgency"}, &resumed)
	if len(resumed.Results) != 1 || resumed.Results[0].Outcome != runs.Resumed {
		t.Fatalf("resume results %+v", resumed.Results)
	}
	next(t, ws, 60*time.Second, "run event: completed", runEventWith(urgency, contract.StatusCompleted))
	if got := s.stored(runs.Pair{Annotator: "a1", Domain: labels.Urgency}); got != 60 || atPause >= 60 {
		t.Fatalf("stored %d after completion (%d at the pause), want 60 and fewer at the pause", got, atPause)
	}
	s.waitStatus(runs.Pair{Annotator: "a1", Domain: labels.Intensity}, contract.StatusCompleted, 60*time.Second)

	// The api counts its requests and the event hub's Temporal calls on /metrics.
	waitFor(t, 10*time.Second, "api metrics", func() (bool, string) {
		resp, err := http.Get(base + "/metrics")
		if err != nil {
			return false, err.Error()
		}
		page, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		ok := strings.Contains(string(page), `api_events_temporal_calls_total{operation="ListWorkflowExecutions"}`) &&
			strings.Contains(string(page), `api_requests_total{code="200",method="POST",route="/api/control/:action"}`)
		var ours []string
		for _, line := range strings.Split(string(page), "\n") {
			if strings.HasPrefix(line, "api_") {
				ours = append(ours, line)
			}
		}
		return ok, "no hub or request counters on /metrics among " + strings.Join(ours, "; ")
	})

	resp, err := http.Get(base + "/api/export?format=xlsx&annotator=a1")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(resp.Header.Get("Content-Disposition"), ".xlsx") {
		t.Fatalf("export: %d %v", resp.StatusCode, resp.Header)
	}
	book, err := excelize.OpenReader(resp.Body)
	if err != nil {
		t.Fatalf("the export is not a workbook: %v", err)
	}
	for sheet, want := range map[string]int{"urgency": 60, "intensity": 20} {
		rows, err := book.GetRows(sheet)
		if err != nil {
			t.Fatalf("sheet %s: %v (sheets %v)", sheet, err, book.GetSheetList())
		}
		if len(rows) != want+1 {
			t.Errorf("sheet %s has %d rows, want a header and %d annotations", sheet, len(rows), want)
		}
	}
	if book.GetSheetList()[0] != "summary" {
		t.Errorf("sheets %v, want the summary first", book.GetSheetList())
	}
}

// TestAPIWebSocketResumeMissesNothing disconnects a client while a run stores annotations and
// reconnects it with the last event id it saw: it gets exactly the annotations it missed.
func TestAPIWebSocketResumeMissesNothing(t *testing.T) {
	s := newStack(t, map[string]any{"offline_latency_seconds": 0.02}, map[string]map[labels.Domain]int{"r1": {labels.Urgency: 120}}, 120)
	base := s.startAPI()
	s.startWorker()
	p := runs.Pair{Annotator: "r1", Domain: labels.Urgency}

	first := wsEvents(t, base, "")
	next(t, first, 10*time.Second, "state", func(e event) bool { return e.Type == "state" })
	if r := s.ctl.Start(context.Background(), p); r.Outcome != runs.Started {
		t.Fatalf("start: %+v", r)
	}
	var last event
	var lastSeq int64
	for range 5 {
		last = next(t, first, 20*time.Second, "an annotation", func(e event) bool { return e.Type == "annotation" })
		lastSeq = annotationOf(t, last).Seq
	}
	// A second connection stands in for the first after it dropped: it resumes from its id.
	waitFor(t, 30*time.Second, "more annotations stored while disconnected", func() (bool, string) {
		n := s.stored(p)
		return n >= int(lastSeq)+20, fmt.Sprintf("%d stored", n)
	})
	resumed := wsEvents(t, base, last.ID)
	s.waitStatus(p, contract.StatusCompleted, 60*time.Second)
	end, err := s.store.LastSeq(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := lastSeq + 1
	for want <= end {
		e := next(t, resumed, 30*time.Second, fmt.Sprintf("annotation seq %d", want), func(e event) bool { return e.Type == "annotation" })
		a := annotationOf(t, e)
		if a.Seq != want {
			t.Fatalf("resumed stream gave seq %d, want %d (no gap, no duplicate)", a.Seq, want)
		}
		want++
	}
}

// TestTwoAPIProcessesDeliverTheSameEvents: the api keeps no state of its own, so two of them
// over one Temporal and store push the same annotation events.
func TestTwoAPIProcessesDeliverTheSameEvents(t *testing.T) {
	s := newStack(t, map[string]any{"offline_latency_seconds": 0.01}, map[string]map[labels.Domain]int{"t1": {labels.Urgency: 40, labels.Modality: 40}}, 40)
	a, b := s.startAPI(), s.startAPI()
	wsA, wsB := wsEvents(t, a, ""), wsEvents(t, b, "")
	for _, ws := range []<-chan event{wsA, wsB} {
		next(t, ws, 10*time.Second, "state", func(e event) bool { return e.Type == "state" })
	}
	s.startWorker()
	var started results
	call(t, http.MethodPost, b+"/api/control/start", map[string]any{"all": true}, &started)
	collect := func(ws <-chan event) map[string]bool {
		seen := map[string]bool{}
		for len(seen) < 80 {
			e := next(t, ws, 60*time.Second, fmt.Sprintf("annotation %d of 80", len(seen)+1), func(e event) bool { return e.Type == "annotation" })
			an := annotationOf(t, e)
			seen[an.Run+"/"+an.SampleID] = true
		}
		return seen
	}
	fromA, fromB := collect(wsA), collect(wsB)
	for k := range fromA {
		if !fromB[k] {
			t.Errorf("%s reached api A's client but not api B's", k)
		}
	}
	if len(fromA) != 80 || len(fromB) != 80 {
		t.Fatalf("A delivered %d, B %d distinct annotations, want 80 each", len(fromA), len(fromB))
	}
}
