package e2e

import (
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/testsuite"

	"github.com/mhannotator/mha/internal/contract"
	"github.com/mhannotator/mha/internal/runs"
)

// TestSoak runs 30 runs (5 annotators × the six domains, gemini and openai wire formats, a key
// each) against the fake provider with random hangs, stalls, resets, 5xx, overloaded, 429s,
// safety blocks and malformed replies, a 429 storm, the worker SIGKILLed on a random schedule,
// its own Temporal dev server restarted once, and pause, resume, stop, reset and start sent at
// random through the temporal CLI and the starter. Then it brings back every run that waits
// for a person, waits until all complete, and checks the ledger (see ledger_test.go): exactly
// one row per sample, and every provider call beyond one per row accounted for.
//
// MHA_SOAK sets its length (`make soak` gives 10m); unset, a quick version runs in about a
// minute. MHA_SOAK_SEED repeats the random choices of an earlier soak.
func TestSoak(t *testing.T) {
	if testing.Short() {
		t.Skip("a minute of chaos in real time")
	}
	length := time.Minute
	if env := os.Getenv("MHA_SOAK"); env != "" {
		d, err := time.ParseDuration(env)
		if err != nil || d < 30*time.Second {
			t.Fatalf("MHA_SOAK=%q: want a duration of 30s or more, such as 10m", env)
		}
		length = d
	}
	seed := uint64(time.Now().UnixNano())
	if env := os.Getenv("MHA_SOAK_SEED"); env != "" {
		var err error
		if seed, err = strconv.ParseUint(env, 10, 64); err != nil {
			t.Fatalf("MHA_SOAK_SEED=%q: want a number", env)
		}
	}
	began := time.Now()
	// Chaos for most of the length; the rest, and a margin, bounds the drain. Pauses and
	// stops slow the runs to about 10 stored annotations a second.
	window := length * 4 / 5
	drain := length/5 + 2*time.Minute
	own := startOwnServer(t)
	cs := chaosSettings{prefix: "s", samples: chaosSamples(window, 10), seed: seed}
	c := newChaos(t, cs, os.Stdout)
	c.logf("soak: seed %d (MHA_SOAK_SEED=%d repeats its choices), %s of chaos, 30 runs × %d samples, fault rate %.2f, Temporal at %s",
		seed, seed, window, cs.samples, chaosFaultRate, server.FrontendHostPort())
	ctl := &soakControls{c: c, paused: map[runs.Pair]bool{}, stopped: map[runs.Pair]bool{}}
	restart := &chaosEvent{next: time.Now().Add(c.between(window/5, window*2/5)), fire: func() time.Duration {
		c.restart(func() { own.restart(t) })
		return 0
	}}
	controls := &chaosEvent{next: time.Now().Add(time.Second), fire: func() time.Duration {
		ctl.random()
		return c.between(time.Second, 4*time.Second)
	}}
	l := c.run(window, drain, append(c.basics(window), restart, controls)...)
	c.logf("controls: %d sent, %d refused (the run had ended)", ctl.sent, ctl.refused)
	l.print(os.Stdout)
	for _, p := range c.pairs {
		replay(t, p.ID())
	}
	c.logf("soak done in %s", time.Since(began).Round(time.Second))
	for _, p := range l.problems() {
		t.Errorf("ledger: %s (seed %d)", p, seed)
	}
	if l.kills == 0 || l.restarts != 1 {
		t.Errorf("%d kills and %d server restarts; want some and one (seed %d)", l.kills, l.restarts, seed)
	}
}

// soakControls sends controls at random, as people would, and remembers which runs it left
// paused or stopped.
type soakControls struct {
	c               *chaos
	paused, stopped map[runs.Pair]bool
	sent, refused   int
}

// random sends one control to one run: pause, resume, stop and reset as signals through the
// temporal CLI, start through the starter.
func (sc *soakControls) random() {
	c := sc.c
	pick := func(ok func(runs.Pair) bool) (runs.Pair, bool) {
		var from []runs.Pair
		for _, p := range c.pairs {
			if ok(p) {
				from = append(from, p)
			}
		}
		if len(from) == 0 {
			return runs.Pair{}, false
		}
		return from[c.rng.IntN(len(from))], true
	}
	active := func(p runs.Pair) bool { return !sc.paused[p] && !sc.stopped[p] }
	var (
		p      runs.Pair
		ok     bool
		signal string
	)
	switch r := c.rng.IntN(100); {
	case r < 35:
		p, ok = pick(active)
		signal = contract.SignalPause
	case r < 65:
		p, ok = pick(func(p runs.Pair) bool { return sc.paused[p] })
		signal = contract.SignalResume
	case r < 75:
		p, ok = pick(func(p runs.Pair) bool { return !sc.stopped[p] })
		signal = contract.SignalStop
	case r < 85:
		p, ok = pick(active)
		signal = contract.SignalReset
	default:
		if p, ok = pick(func(p runs.Pair) bool { return sc.stopped[p] }); ok {
			sc.sent++
			if _, code := c.s.starter("start", "--annotator", p.Annotator, "--domain", string(p.Domain)); code != 0 {
				sc.refused++
				return
			}
			c.logf("starter start %s", p.ID())
			delete(sc.stopped, p)
		}
		return
	}
	if !ok {
		return
	}
	sc.sent++
	out, err := exec.Command(cliPath, "workflow", "signal", "-w", p.ID(), "--name", signal,
		"--address", server.FrontendHostPort(), "--namespace", "default").CombinedOutput()
	if err != nil {
		// A run that completed meanwhile refuses signals; that is fine.
		sc.refused++
		c.logf("temporal workflow signal %s %s refused: %s", p.ID(), signal, strings.TrimSpace(string(out)))
		return
	}
	c.logf("temporal workflow signal %s %s", p.ID(), signal)
	switch signal {
	case contract.SignalPause:
		sc.paused[p] = true
	case contract.SignalResume:
		delete(sc.paused, p)
	case contract.SignalStop:
		delete(sc.paused, p)
		sc.stopped[p] = true
	}
}

// ownServer is a dev server of the test's own that keeps its state in a file, so it can be
// restarted under running workflows. While the test runs, the harness's server is this one
// (no other test runs meanwhile: TestSoak is not parallel).
type ownServer struct {
	opts    testsuite.DevServerOptions
	dev     *testsuite.DevServer
	clients []client.Client
}

func startOwnServer(t *testing.T) *ownServer {
	t.Helper()
	opts := devServerOptions(cliPath) // on a free port, kept across restarts
	opts.DBFilename = filepath.Join(t.TempDir(), "temporal.db")
	opts.Stdout = io.Discard // its banner, at every start
	o := &ownServer{opts: opts}
	o.start(t)
	shared := server
	server = o.dev
	t.Cleanup(func() {
		server = shared
		_ = o.dev.Stop()
		for _, cl := range o.clients {
			cl.Close()
		}
	})
	return o
}

func (o *ownServer) start(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dev, err := testsuite.StartDevServer(ctx, o.opts)
	if err != nil {
		t.Fatalf("start the soak's dev server: %v", err)
	}
	o.dev = dev
	o.opts.ClientOptions.HostPort = dev.FrontendHostPort()
	o.clients = append(o.clients, dev.Client())
}

// restart stops the server and starts it again on the same address and database file. The
// clients made before reconnect by themselves, as the worker's does.
func (o *ownServer) restart(t *testing.T) {
	t.Helper()
	if err := o.dev.Stop(); err != nil {
		t.Logf("stop the soak's dev server: %v", err)
	}
	o.start(t)
	server = o.dev
}
