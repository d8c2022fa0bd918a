package main

import (
	"bytes"
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mhannotator/mha/internal/runs"
	"github.com/mhannotator/mha/internal/store"
)

// testSettings has two annotators; annotator 2 has urgency disabled.
const testSettings = `{
  "global": {"provider": "offline"},
  "annotators": {
    "1": {"urgency": {"enabled": true, "target_count": 3}, "therapeutic": {"enabled": true, "target_count": 3}},
    "2": {"urgency": {"enabled": false, "target_count": 3}, "therapeutic": {"enabled": true, "target_count": 2}}
  }
}`

// fixture is a config directory and an SQLite store of one test.
type fixture struct {
	dir, config, db string
}

func newFixture(t *testing.T) fixture {
	t.Helper()
	dir := t.TempDir()
	f := fixture{dir: dir, config: filepath.Join(dir, "config"), db: filepath.Join(dir, "data", "mha.db")}
	if err := os.MkdirAll(f.config, 0o755); err != nil {
		t.Fatal(err)
	}
	f.write(t, "config/settings.json", testSettings)
	return f
}

// write creates a file under the fixture's directory and returns its path.
func (f fixture) write(t *testing.T, name, content string) string {
	t.Helper()
	path := filepath.Join(f.dir, name)
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// openStore opens the fixture's store next to the starter's, as another process would.
func (f fixture) openStore(t *testing.T) store.Store {
	t.Helper()
	st, err := store.Open(context.Background(), f.db)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

type outcome struct {
	code           int
	stdout, stderr string
}

// run runs the starter with the fixture's config and store.
func (f fixture) run(t *testing.T, args ...string) outcome {
	t.Helper()
	return runStarter(t, append(args, "--config", f.config, "--db", f.db)...)
}

func runStarter(t *testing.T, args ...string) outcome {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := run(args, &stdout, &stderr)
	return outcome{code, stdout.String(), stderr.String()}
}

func (o outcome) expect(t *testing.T, code int, stderrHas ...string) {
	t.Helper()
	if o.code != code {
		t.Fatalf("exit code %d, want %d\nstdout:\n%s\nstderr:\n%s", o.code, code, o.stdout, o.stderr)
	}
	for _, s := range stderrHas {
		if !strings.Contains(o.stderr, s) {
			t.Errorf("stderr does not mention %q:\n%s", s, o.stderr)
		}
	}
	if code != exitOK && !strings.HasPrefix(o.stderr, "starter: ") {
		t.Errorf("stderr does not start with \"starter: \":\n%s", o.stderr)
	}
}

// closedAddress is a local address nothing listens on.
func closedAddress(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

func TestUsageErrors(t *testing.T) {
	f := newFixture(t)
	// A bad selector must be refused before dialling: this address would fail with exit 1.
	addr := closedAddress(t)
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"start"}, []string{"--all", "--annotator", "--domain"}},
		{[]string{"pause", "--all", "--domain", "urgency"}, []string{"--all cannot be combined"}},
		{[]string{"stop", "--annotator", "9"}, []string{"--annotator", `"9"`, "annotators: 1, 2"}},
		{[]string{"resume", "--domain", "mood"}, []string{"--domain", `"mood"`, "urgency"}},
		{[]string{"status", "--annotator", "9"}, []string{"--annotator", `"9"`}},
		{[]string{"start", "--all", "--bogus"}, []string{"unknown flag: --bogus", "starter help start"}},
		{[]string{"start", "--all", "extra"}, []string{`unexpected argument "extra"`}},
		{[]string{"status", "--json", "--watch"}, []string{"--json and --watch"}},
		{[]string{"status", "--watch", "--interval", "0s"}, []string{"--interval"}},
		{[]string{"status", "--interval", "soon"}, []string{"--interval"}},
		{[]string{"import", "a.csv", "b.csv"}, []string{`unexpected argument "b.csv"`}},
		{[]string{"export", "--format", "xml"}, []string{"--format", `"xml"`}},
		{[]string{"export", "--annotator", "7"}, []string{"--annotator", `"7"`}},
		{[]string{"restart", "--all", "--log-level", "loud"}, []string{"--log-level"}},
		{[]string{"launch", "--all"}, []string{`unknown command "launch"`, "start"}},
		{[]string{"help", "launch"}, []string{`unknown command "launch"`}},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			f.run(t, append(tc.args, "--temporal-address", addr)...).expect(t, exitUsage, tc.want...)
		})
	}
}

func TestNoArgumentsPrintsUsage(t *testing.T) {
	o := runStarter(t)
	if o.code != exitUsage || !strings.Contains(o.stderr, "Usage: starter COMMAND") {
		t.Fatalf("got exit %d, stderr:\n%s", o.code, o.stderr)
	}
}

func TestHelp(t *testing.T) {
	o := runStarter(t, "help")
	o.expect(t, exitOK)
	for _, c := range commands {
		if !strings.Contains(o.stdout, "\n  "+c.name+" ") {
			t.Errorf("overview does not list %s:\n%s", c.name, o.stdout)
		}
	}
	for _, c := range commands {
		o := runStarter(t, "help", c.name)
		o.expect(t, exitOK)
		for _, want := range []string{"Usage: starter " + c.name, "Example:\n  starter " + c.name, "--temporal-address"} {
			if !strings.Contains(o.stdout, want) {
				t.Errorf("help %s lacks %q:\n%s", c.name, want, o.stdout)
			}
		}
		if h := runStarter(t, c.name, "--help"); h.code != exitOK || h.stdout != o.stdout {
			t.Errorf("%s --help: exit %d, output differs from help %s", c.name, h.code, c.name)
		}
	}
}

func TestServerUnreachable(t *testing.T) {
	f := newFixture(t)
	start := time.Now()
	o := f.run(t, "start", "--all", "--temporal-address", closedAddress(t))
	o.expect(t, exitFail, "cannot reach the Temporal server")
	if o.stdout != "" {
		t.Errorf("stdout: %q", o.stdout)
	}
	t.Logf("failed after %s", time.Since(start).Round(time.Millisecond))
}

func TestCommonFlagsBeforeTheCommand(t *testing.T) {
	f := newFixture(t)
	data := f.write(t, "d.csv", "ID,Text\n1,one\n")
	o := runStarter(t, "--db", f.db, "--config="+f.config, "import", data)
	o.expect(t, exitOK)
	if n, _ := f.openStore(t).CountSamples(context.Background()); n != 1 {
		t.Fatalf("store holds %d samples, want 1 (was --db before the command ignored?)", n)
	}
}

func TestBadConfigListsEveryProblem(t *testing.T) {
	f := newFixture(t)
	f.write(t, "config/settings.json", `{"global": {"batch_size": -1, "heartbeat_timeout_seconds": -5},
		"annotators": {"1": {"urgency": {"enabled": true, "target_count": 200000}}}}`)
	o := f.run(t, "start", "--all", "--temporal-address", closedAddress(t))
	o.expect(t, exitFail, "batch_size", "heartbeat_timeout_seconds", "target_count")
	if !strings.Contains(o.stderr, "problem(s)") {
		t.Errorf("stderr: %s", o.stderr)
	}
}

func TestParallelKeepsEveryResult(t *testing.T) {
	const n, limit = 30, 4
	got := make([]int, n)
	var (
		mu           sync.Mutex
		active, peak int
	)
	parallel(n, limit, func(i int) {
		mu.Lock()
		active++
		peak = max(peak, active)
		mu.Unlock()
		time.Sleep(time.Millisecond)
		got[i] = i * i
		mu.Lock()
		active--
		mu.Unlock()
	})
	for i, v := range got {
		if v != i*i {
			t.Fatalf("result %d = %d", i, v)
		}
	}
	if peak > limit {
		t.Errorf("%d calls at once, want at most %d", peak, limit)
	}
}

func TestFormatResultsIsStable(t *testing.T) {
	// Scripts parse these lines.
	got := formatResults([]runs.Result{
		{Run: "annotation-1-urgency", Outcome: runs.Started, Detail: "target 60"},
		{Run: "annotation-1-therapeutic", Outcome: runs.AlreadyRunning},
		{Run: "annotation-2-urgency", Outcome: runs.Disabled, Detail: "enable it in settings.json to start it"},
		{Run: "annotation-2-therapeutic", Outcome: runs.Signalled, Detail: "pause"},
		{Run: "annotation-10-redressal", Outcome: runs.Failed, Detail: "context deadline\nexceeded"},
		{Run: "annotation-10-modality", Outcome: runs.NotRunning},
	})
	want := "" +
		"annotation-1-urgency       started    target 60\n" +
		"annotation-1-therapeutic   already_running\n" +
		"annotation-2-urgency       disabled   enable it in settings.json to start it\n" +
		"annotation-2-therapeutic   signalled pause\n" +
		"annotation-10-redressal    error context deadline exceeded\n" +
		"annotation-10-modality     not_running\n"
	if got != want {
		t.Errorf("got:\n%s\nwant:\n%s", got, want)
	}
}
