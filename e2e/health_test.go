package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mhannotator/mha/internal/contract"
	"github.com/mhannotator/mha/internal/labels"
	"github.com/mhannotator/mha/internal/llm/fake"
	"github.com/mhannotator/mha/internal/runs"
)

// TestWorkerHealth runs the worker with its health endpoints: ready once polling, healthy
// while its calls turn over, unhealthy once every call slot is held by a call that ignores
// its deadline, and stopped by SIGTERM after the samples in flight are stored.
func TestWorkerHealth(t *testing.T) {
	t.Run("wedged", testWedgedWorkerTurnsUnhealthy)
	t.Run("sigterm", testSIGTERMFinishesTheSamplesInFlight)
}

// workerProc is a worker binary this test started.
type workerProc struct {
	cmd    *exec.Cmd
	health string // base URL of the health endpoints, when served
	exited chan struct{}
	err    error // the exit, once exited is closed
}

// startWorkerWith runs bin with the stack's common flags and extra, JSON logs at info level
// in the stack's directory, and env added to the environment. With --health-listen among
// extra, it waits for the address the worker logs.
func (s *stack) startWorkerWith(bin string, env []string, extra ...string) *workerProc {
	s.t.Helper()
	args := append(append(s.commonArgs(), "--log-level", "info", "--log-format", "json"), extra...)
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	logFile, err := os.Create(filepath.Join(s.dir, fmt.Sprintf("worker-%d.log", time.Now().UnixNano())))
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
	w := &workerProc{cmd: cmd, exited: make(chan struct{})}
	found := make(chan string, 1)
	var copied sync.WaitGroup
	copied.Add(1)
	go func() {
		defer copied.Done()
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Bytes()
			logFile.Write(append(line, '\n'))
			var rec struct{ Msg, Healthz string }
			if json.Unmarshal(line, &rec) == nil && rec.Msg == "Health endpoints serving" {
				select {
				case found <- strings.TrimSuffix(rec.Healthz, "/healthz"):
				default:
				}
			}
		}
		_, _ = io.Copy(logFile, stderr)
	}()
	go func() {
		copied.Wait()
		w.err = cmd.Wait()
		close(w.exited)
	}()
	s.t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-w.exited
		logFile.Close()
		if s.t.Failed() {
			b, _ := os.ReadFile(logFile.Name())
			s.t.Logf("worker log %s:\n%s", logFile.Name(), b)
		}
	})
	if !strings.Contains(strings.Join(extra, " "), "--health-listen") {
		return w
	}
	select {
	case w.health = <-found:
	case <-w.exited:
		s.t.Fatalf("the worker exited before serving its health endpoints: %v", w.err)
	case <-time.After(20 * time.Second):
		s.t.Fatal("the worker did not log its health endpoints within 20 s")
	}
	return w
}

var healthClient = &http.Client{Timeout: 5 * time.Second}

// probeHealth GETs a health endpoint and returns its status code and body.
func probeHealth(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := healthClient.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func testWedgedWorkerTurnsUnhealthy(t *testing.T) {
	t.Parallel()
	// The worker built with a provider that hangs, ignoring its context, once a file exists:
	// no real provider client does that, which is why the health check is only a backstop.
	dir := t.TempDir()
	bin := filepath.Join(dir, "worker-wedge")
	if out, err := exec.Command("go", "build", "-tags", "mha_e2e_wedge", "-o", bin, "../worker").CombinedOutput(); err != nil {
		t.Fatalf("build the wedging worker: %v\n%s", err, out)
	}
	wedge := filepath.Join(dir, "wedge")
	// A call's budget: request timeout 2 s + 0.25 s; two call slots.
	s := newStack(t, map[string]any{"offline_latency_seconds": 0.1, "heartbeat_timeout_seconds": 3, "request_timeout_seconds": 2,
		"max_concurrent_activities": 2, "max_retry_backoff_seconds": 2}, map[string]map[labels.Domain]int{"hz1": {labels.Urgency: 40}}, 40)
	p := runs.Pair{Annotator: "hz1", Domain: labels.Urgency}
	w := s.startWorkerWith(bin, []string{"MHA_E2E_WEDGE_FILE=" + wedge}, "--health-listen", "127.0.0.1:0")
	waitFor(t, 10*time.Second, "/readyz to answer 200", func() (bool, string) {
		code, body := probeHealth(t, w.health+"/readyz")
		return code == http.StatusOK, fmt.Sprint(code, " ", body)
	})
	s.startAll()
	waitFor(t, 20*time.Second, "samples stored", func() (bool, string) { n := s.stored(p); return n >= 6, fmt.Sprint(n) })
	for range 5 { // busy: the slots turn over
		if code, body := probeHealth(t, w.health+"/healthz"); code != http.StatusOK {
			t.Fatalf("/healthz of a busy worker = %d %s; want 200", code, body)
		}
		time.Sleep(50 * time.Millisecond)
	}

	if err := os.WriteFile(wedge, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	wedged := time.Now()
	var body string
	waitFor(t, 20*time.Second, "/healthz to answer 503", func() (bool, string) {
		var code int
		code, body = probeHealth(t, w.health+"/healthz")
		return code == http.StatusServiceUnavailable, fmt.Sprint(code, " ", body)
	})
	took := time.Since(wedged)
	t.Logf("unhealthy %s after the calls started to hang: %s", took.Round(time.Millisecond), body)
	// A call is cut at 2.25 s; a slot counts as wedged 5 s after that.
	if took < 7*time.Second || !strings.Contains(body, "wedged") {
		t.Fatalf("/healthz failed %s after the wedge, saying %s; want not before the call's budget + 5 s, and why", took, body)
	}
	if code, body := probeHealth(t, w.health+"/readyz"); code != http.StatusOK {
		t.Fatalf("/readyz of a wedged worker = %d %s; Temporal answers and the worker polls", code, body)
	}
	// The orchestrator's restart: nothing is lost, nothing is annotated twice.
	_ = w.cmd.Process.Kill()
	<-w.exited
	s.startWorker()
	st := s.waitStatus(p, contract.StatusCompleted, 30*time.Second)
	if st.Completed != 40 || s.stored(p) != 40 {
		t.Fatalf("after the restart: status %+v, store %d; want all 40", st, s.stored(p))
	}
}

func testSIGTERMFinishesTheSamplesInFlight(t *testing.T) {
	t.Parallel()
	f := startFake(t, fake.Options{Keys: map[string]fake.Key{"key-hz2": {}}, Latency: 600 * time.Millisecond})
	// One strike would fail the run: a stop must cost none.
	s := newStackWith(t, netGlobal(f.URL(), map[string]any{"max_concurrent_activities": 2, "max_restart_attempts": 1}),
		map[string]map[labels.Domain]int{"hz2": {labels.Therapeutic: 16}}, 16, nil, map[string]string{"hz2": "key-hz2"})
	p := runs.Pair{Annotator: "hz2", Domain: labels.Therapeutic}
	// The quota workflow lives on this test's task queue: another run of the test has its own.
	t.Cleanup(func() {
		_ = server.Client().TerminateWorkflow(context.Background(), contract.QuotaID("annotator-hz2"), "", "the test ended")
	})
	const grace = 4 * time.Second
	w := s.startWorkerWith(filepath.Join(binDir, "worker"), nil, "--stop-grace", grace.String())
	s.startAll()
	waitFor(t, 20*time.Second, "samples stored and a call in flight", func() (bool, string) {
		n, st := s.stored(p), f.Stats()
		return n >= 3 && st.InFlight > 0, fmt.Sprintf("stored %d, in flight %d", n, st.InFlight)
	})
	if err := w.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	stopped := time.Now()
	select {
	case <-w.exited:
	case <-time.After(grace + 5*time.Second):
		t.Fatalf("the worker did not exit within %s of SIGTERM", grace+5*time.Second)
	}
	took := time.Since(stopped)
	st := f.Stats()
	stored := s.stored(p)
	t.Logf("SIGTERM: exited after %s (grace %s); calls answered %d, stored %d", took.Round(time.Millisecond), grace, st.ByKey["key-hz2"].Accepted, stored)
	if w.err != nil {
		t.Fatalf("the worker exited with %v after SIGTERM; want a clean exit", w.err)
	}
	if took > grace {
		t.Fatalf("the worker took %s to exit; want at most the %s grace", took, grace)
	}
	// Every call made was answered and its sample stored before the exit.
	if k := st.ByKey["key-hz2"]; st.InFlight != 0 || k.Requests != k.Accepted || k.Accepted != stored || stored == 16 {
		t.Fatalf("after the exit: fake %+v (in flight %d), store %d; want every call answered and stored, the run unfinished", k, st.InFlight, stored)
	}
	s.startWorker()
	run := s.waitStatus(p, contract.StatusCompleted, 30*time.Second)
	if run.Completed != 16 || s.stored(p) != 16 || f.Stats().Duplicates != 0 {
		t.Fatalf("after a new worker: status %+v, store %d, duplicates %d; want all 16, none twice", run, s.stored(p), f.Stats().Duplicates)
	}
}
