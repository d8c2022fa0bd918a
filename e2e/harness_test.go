// Package e2e runs the platform end to end: a real Temporal dev server (the temporal CLI that
// `make temporal` builds), the real worker and starter binaries, and real SQLite stores.
package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go.temporal.io/sdk/client"
	tlog "go.temporal.io/sdk/log"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"github.com/mhannotator/mha/internal/config"
	"github.com/mhannotator/mha/internal/contract"
	"github.com/mhannotator/mha/internal/labels"
	"github.com/mhannotator/mha/internal/runs"
	"github.com/mhannotator/mha/internal/store"
)

var (
	server  *testsuite.DevServer
	binDir  string // the worker and starter binaries built for this run
	cliPath string // the temporal CLI
)

func TestMain(m *testing.M) { os.Exit(runMain(m)) }

func runMain(m *testing.M) int {
	cli := os.Getenv("TEMPORAL_CLI")
	if cli == "" {
		cli = "../bin/temporal"
	}
	cliPath = cli
	if _, err := os.Stat(cli); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: no temporal CLI at %s (run `make temporal`, or set TEMPORAL_CLI): %v\n", cli, err)
		return 1
	}
	var err error
	if binDir, err = os.MkdirTemp("", "mha-e2e-bin-"); err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer os.RemoveAll(binDir)
	for _, cmd := range []string{"worker", "starter", "api"} {
		build := exec.Command("go", "build", "-o", filepath.Join(binDir, cmd), "../"+cmd)
		if out, err := build.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "e2e: build %s: %v\n%s", cmd, err, out)
			return 1
		}
	}
	server, err = testsuite.StartDevServer(context.Background(), devServerOptions(cli))
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e: start dev server:", err)
		return 1
	}
	defer server.Stop()
	code := m.Run()
	writeSummary()
	return code
}

// devServerOptions are those of every dev server the tests start: the run search attributes
// registered, eager activity execution on (as `make run` and the compose cluster have it),
// quiet logs.
func devServerOptions(cli string) testsuite.DevServerOptions {
	attrs := make([]temporal.SearchAttributeUpdate, 0, len(contract.SearchAttributeKeys)+1)
	for _, k := range contract.SearchAttributeKeys {
		attrs = append(attrs, k.ValueSet(""))
	}
	attrs = append(attrs, contract.RunChangedAtKey.ValueSet(time.Time{}))
	quiet := tlog.NewStructuredLogger(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	return testsuite.DevServerOptions{
		ExistingPath:     cli,
		ClientOptions:    &client.Options{Logger: quiet},
		LogLevel:         "error",
		ExtraArgs:        []string{"--dynamic-config-value", "system.enableActivityEagerExecution=true"},
		SearchAttributes: temporal.NewSearchAttributes(attrs...),
	}
}

// stack is one test's platform: its own config dir, store and task queue on the shared server.
type stack struct {
	t         testing.TB
	dir       string
	cfgDir    string
	db        string
	taskQueue string
	cfg       *config.Config
	store     store.Store
	ctl       *runs.Controller
	global    map[string]any // settings.json's global section
	runSpecs  map[string]map[labels.Domain]int
	extra     map[string]map[string]any
}

var queues atomic.Int64

// newStack writes settings.json from global (merged over test defaults) and runs, and imports
// n generated samples.
func newStack(t testing.TB, global map[string]any, runSpecs map[string]map[labels.Domain]int, n int) *stack {
	t.Helper()
	return newStackWith(t, global, runSpecs, n, nil, nil)
}

// newStackWith is newStack with extra per-annotator settings (such as quota_pool) and an
// api_keys.json.
func newStackWith(t testing.TB, global map[string]any, runSpecs map[string]map[labels.Domain]int, n int,
	extra map[string]map[string]any, keys map[string]string) *stack {
	t.Helper()
	return newStackOn(t, "", global, runSpecs, n, extra, keys)
}

// newStackOn is newStackWith on the store that db names (a --db DSN, such as a postgres://
// URL); "" is an SQLite file of the test's own.
func newStackOn(t testing.TB, db string, global map[string]any, runSpecs map[string]map[labels.Domain]int, n int,
	extra map[string]map[string]any, keys map[string]string) *stack {
	t.Helper()
	dir := t.TempDir()
	if db == "" {
		db = filepath.Join(dir, "mha.db")
	}
	s := &stack{t: t, dir: dir, cfgDir: filepath.Join(dir, "config"), db: db,
		taskQueue: fmt.Sprintf("e2e-%s-%d", t.Name(), queues.Add(1))}
	s.global = map[string]any{"provider": "offline", "batch_size": 5, "heartbeat_timeout_seconds": 5, "request_timeout_seconds": 4,
		"max_restart_attempts": 5}
	for k, v := range global {
		s.global[k] = v
	}
	s.runSpecs, s.extra = runSpecs, extra
	if err := os.MkdirAll(s.cfgDir, 0o755); err != nil {
		t.Fatal(err)
	}
	s.writeSettings()
	if keys != nil {
		s.writeKeys(keys)
	}
	var err error
	if s.cfg, err = config.Load(config.Options{Dir: s.cfgDir}); err != nil {
		t.Fatal(err)
	}
	if s.store, err = store.Open(context.Background(), s.db); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.store.Close() })
	if _, err := s.store.ImportSamples(context.Background(), samples(n)); err != nil {
		t.Fatal(err)
	}
	s.ctl = &runs.Controller{Client: server.Client(), Config: s.cfg, Store: s.store, Namespace: "default",
		TaskQueue: s.taskQueue, SearchAttributes: true}
	// Run IDs are shared by every test on the server: a run this test leaves open (paused, or
	// stopped short by the test's end) must not be taken for another test's run.
	t.Cleanup(func() {
		for _, r := range s.cfg.Runs() {
			_ = server.Client().TerminateWorkflow(context.Background(), contract.RunID(r.Annotator, r.Domain), "", "the test ended")
		}
	})
	return s
}

// writeSettings writes settings.json from s.global, s.runSpecs and s.extra; a worker that
// runs meanwhile reads it before its next batch, as after a person's edit.
func (s *stack) writeSettings() {
	s.t.Helper()
	annotators := map[string]any{}
	for id, domains := range s.runSpecs {
		a := map[string]any{}
		for k, v := range s.extra[id] {
			a[k] = v
		}
		for d, target := range domains {
			a[string(d)] = map[string]any{"enabled": true, "target_count": target}
		}
		annotators[id] = a
	}
	b, _ := json.MarshalIndent(map[string]any{"global": s.global, "annotators": annotators}, "", "  ")
	path := filepath.Join(s.cfgDir, config.SettingsFile)
	// Renamed into place, so a reader never sees half a file.
	if err := os.WriteFile(path+".tmp", b, 0o644); err != nil {
		s.t.Fatal(err)
	}
	if err := os.Rename(path+".tmp", path); err != nil {
		s.t.Fatal(err)
	}
}

// writeKeys writes api_keys.json: annotator ID → key.
func (s *stack) writeKeys(keys map[string]string) {
	s.t.Helper()
	doc := map[string]string{}
	for id, k := range keys {
		doc["annotator_"+id] = k
	}
	b, _ := json.Marshal(doc)
	if err := os.WriteFile(filepath.Join(s.cfgDir, config.KeysFile), b, 0o600); err != nil {
		s.t.Fatal(err)
	}
}

var sampleTexts = []string{
	"I feel a bit stressed about exams but mostly okay.",
	"I have been sad and tired for weeks and I can't sleep.",
	"My panic attacks make me miss lectures.",
	"My parents argue all the time and I feel lonely.",
	"I started drinking every night to cope with my thesis.",
	"I keep thinking about suicide and wrote a note.",
}

func samples(n int) []store.Sample {
	out := make([]store.Sample, n)
	for i := range out {
		out[i] = store.Sample{ID: fmt.Sprintf("E-%04d", i+1), Text: fmt.Sprintf("%s (sample %d)", sampleTexts[i%len(sampleTexts)], i+1)}
	}
	return out
}

func (s *stack) commonArgs() []string {
	return []string{"--config", s.cfgDir, "--db", s.db, "--temporal-address", server.FrontendHostPort(),
		"--namespace", "default", "--task-queue", s.taskQueue}
}

// startWorker runs the worker binary until the test ends (or the caller kills it).
func (s *stack) startWorker() *exec.Cmd {
	s.t.Helper()
	cmd := exec.Command(filepath.Join(binDir, "worker"), append(s.commonArgs(), "--log-level", "warn")...)
	// A test binary that dies (a timeout, a panic) takes its workers with it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	logFile, err := os.Create(filepath.Join(s.dir, fmt.Sprintf("worker-%d.log", time.Now().UnixNano())))
	if err != nil {
		s.t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	s.t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		logFile.Close()
		if s.t.Failed() {
			b, _ := os.ReadFile(logFile.Name())
			s.t.Logf("worker log %s:\n%s", logFile.Name(), b)
		}
	})
	return cmd
}

// starter runs the starter binary and returns its stdout and exit code.
func (s *stack) starter(args ...string) (string, int) {
	s.t.Helper()
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(filepath.Join(binDir, "starter"), append(args, s.commonArgs()...)...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if exit, ok := err.(*exec.ExitError); ok {
		code = exit.ExitCode()
	} else if err != nil {
		s.t.Fatalf("starter %v: %v", args, err)
	}
	if code != 0 {
		s.t.Logf("starter %v exited %d: %s", args, code, stderr.String())
	}
	return stdout.String(), code
}

// startAll starts every enabled run of the stack's config with the starter.
func (s *stack) startAll() {
	s.t.Helper()
	if out, code := s.starter("start", "--all"); code != 0 {
		s.t.Fatalf("start exited %d: %s", code, out)
	}
}

func (s *stack) status(p runs.Pair) contract.Status {
	s.t.Helper()
	st, err := s.ctl.Status(context.Background(), p)
	if err != nil {
		s.t.Fatalf("status of %s: %v", p.ID(), err)
	}
	return st
}

func (s *stack) stored(p runs.Pair) int {
	s.t.Helper()
	c, err := s.store.CountAnnotations(context.Background(), p.Annotator, string(p.Domain), 0)
	if err != nil {
		s.t.Fatal(err)
	}
	return c.Total()
}

// waitFor polls cond until it holds or the timeout passes; cond explains what it saw.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		ok, seen := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s; last seen: %s", timeout, what, seen)
		}
		<-tick.C
	}
}

func (s *stack) waitStatus(p runs.Pair, want string, timeout time.Duration) contract.Status {
	s.t.Helper()
	var st contract.Status
	waitFor(s.t, timeout, p.ID()+" to be "+want, func() (bool, string) {
		st = s.status(p)
		return st.Status == want, fmt.Sprintf("%+v", st)
	})
	return st
}
