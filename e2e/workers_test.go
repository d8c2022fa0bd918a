package e2e

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"syscall"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx"

	"github.com/mhannotator/mha/internal/contract"
	"github.com/mhannotator/mha/internal/labels"
	"github.com/mhannotator/mha/internal/llm/fake"
	"github.com/mhannotator/mha/internal/runs"
	"github.com/mhannotator/mha/internal/store"
)

// PostgreSQL for these tests is the server MHA_TEST_POSTGRES names (a postgres:// URL), by
// default defaultTestPostgres, as for the store's own tests; MHA_TEST_POSTGRES=off skips them.
const (
	testPostgresEnv     = "MHA_TEST_POSTGRES"
	defaultTestPostgres = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
)

// postgresSchema creates a schema of the test's own, dropped at cleanup, and returns the DSN
// whose search_path selects it, and a connection to it for the test's own queries.
func postgresSchema(t *testing.T) (string, *sql.DB) {
	t.Helper()
	base := os.Getenv(testPostgresEnv)
	switch base {
	case "off":
		t.Skipf("%s=off", testPostgresEnv)
	case "":
		base = defaultTestPostgres
	}
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		t.Fatalf("%s must be a postgres:// URL or off (%v)", testPostgresEnv, err)
	}
	admin, err := sql.Open("pgx", base)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { admin.Close() })
	var b [6]byte
	_, _ = rand.Read(b[:])
	schema := "mha_e2e_" + hex.EncodeToString(b[:])
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := admin.ExecContext(ctx, `CREATE SCHEMA `+schema); err != nil {
		t.Fatalf("PostgreSQL at %s: %v (start it, point %s at another server, or set %s=off)",
			u.Redacted(), err, testPostgresEnv, testPostgresEnv)
	}
	// Registered first, so it runs last: after the workers are killed and the stores closed.
	t.Cleanup(func() {
		if _, err := admin.ExecContext(context.Background(), `DROP SCHEMA `+schema+` CASCADE`); err != nil {
			t.Errorf("drop the test schema: %v", err)
		}
	})
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	dsn := u.String()
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return dsn, db
}

// queryInt runs a query that returns one integer.
func queryInt(t *testing.T, db *sql.DB, query string) int {
	t.Helper()
	var n int
	if err := db.QueryRowContext(context.Background(), query).Scan(&n); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
}

// Two workers on one task queue share a PostgreSQL store. One is killed with SIGKILL while
// both have calls in flight; the other finishes every run. Each sample is stored exactly once,
// and the only calls paid twice are the ones the kill cut off.
func TestTwoWorkersOnPostgresSurviveASIGKILL(t *testing.T) {
	const (
		target = 12 // samples per run
		slots  = 4  // max_concurrent_activities: each worker's call slots
	)
	dsn, db := postgresSchema(t)
	// One key per annotator: the fake counts paid work by (key, model, prompt), and the prompt
	// holds the domain's template and the sample's text, so a repeat is a sample paid twice.
	keys := map[string]fake.Key{}
	apiKeys := map[string]string{}
	spec := map[string]map[labels.Domain]int{}
	var pairs []runs.Pair
	for i := 1; i <= 5; i++ {
		id := fmt.Sprintf("pw%d", i) // run IDs are shared by every test on the server
		keys["key-"+id], apiKeys[id] = fake.Key{}, "key-"+id
		spec[id] = map[labels.Domain]int{}
		for _, d := range labels.Domains {
			spec[id][d] = target
			pairs = append(pairs, runs.Pair{Annotator: id, Domain: d})
		}
	}
	total := len(pairs) * target
	// Slow enough answers that every call slot is busy most of the time.
	f := startFake(t, fake.Options{Keys: keys, Latency: 150 * time.Millisecond})
	// A 5 s heartbeat timeout: the killed worker's batches move on after it, and the provider
	// may hold calls for a few seconds below the 4 s request timeout.
	s := newStackOn(t, dsn, netGlobal(f.URL(), map[string]any{"max_concurrent_activities": slots,
		"heartbeat_timeout_seconds": 5, "request_timeout_seconds": 4}), spec, target, nil, apiKeys)
	if s.db != dsn {
		t.Fatalf("the stack's store is %q, want the test's schema", s.db)
	}
	doomed := s.startWorker()
	s.startWorker()
	began := time.Now()
	s.startAll()
	stored := func() int { return queryInt(t, db, `SELECT COUNT(*) FROM annotations`) }
	waitFor(t, time.Minute, fmt.Sprintf("a third of the %d annotations", total), func() (bool, string) {
		n := stored()
		return n >= total/3, fmt.Sprint(n)
	})

	// The moment of the kill. The provider holds its answers; the workers' lanes fill their
	// call slots and store what they have in hand. Once every call slot of both workers holds
	// a held call (a worker has at most `slots` calls waiting for an answer), nothing moves:
	// each worker has exactly `slots` calls in flight, and once every answered call is
	// stored, those are all the work the doomed worker was paid for and did not store.
	f.Hold()
	held := time.Now()
	var atKill fake.Stats
	storedAtKill := 0
	waitFor(t, 3*time.Second, "every call slot of both workers busy and every answered call stored", func() (bool, string) {
		atKill = f.Stats()
		storedAtKill = stored()
		return atKill.Held == 2*slots && storedAtKill == atKill.Answered,
			fmt.Sprintf("%d calls held, %d answered, %d stored", atKill.Held, atKill.Answered, storedAtKill)
	})
	if atKill.Duplicates != 0 || atKill.Abandoned != 0 {
		t.Fatalf("before the kill: fake stats %+v; want no call paid twice and none abandoned", atKill)
	}
	if storedAtKill >= total-2*slots {
		t.Fatalf("%d of %d stored at the kill: too late to prove anything", storedAtKill, total)
	}
	if err := doomed.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	_ = doomed.Wait()
	// The provider sees the dead worker's connections close before it answers anything more.
	waitFor(t, 10*time.Second, "the killed worker's held calls to end", func() (bool, string) {
		st := f.Stats()
		return st.Abandoned == slots && st.Held == slots, fmt.Sprintf("%d abandoned, %d held", st.Abandoned, st.Held)
	})
	f.Release()
	t.Logf("killed one worker after %s with %d/%d annotations stored and %d calls in flight on each worker (answers held for %s)",
		killed.Sub(began).Round(time.Millisecond), storedAtKill, total, slots, time.Since(held).Round(time.Millisecond))

	for _, p := range pairs {
		st := s.waitStatus(p, contract.StatusCompleted, time.Minute)
		if st.Completed != target || st.OK != target {
			t.Fatalf("%s: status %+v; want %d ok", p.ID(), st, target)
		}
	}
	done := time.Now()

	// Stored: exactly one ok row per (annotator, domain, sample), each written once.
	want := map[[3]string]bool{}
	for _, p := range pairs {
		for _, smp := range samples(target) {
			want[[3]string{p.Annotator, string(p.Domain), smp.ID}] = true
		}
	}
	seen := map[[3]string]int{}
	err := s.store.Export(context.Background(), store.Filter{}, func(r store.ExportRow) error {
		k := [3]string{r.Annotator, r.Domain, r.SampleID}
		seen[k]++
		if !want[k] || seen[k] > 1 || r.Status != store.StatusOK {
			return fmt.Errorf("unexpected row %v (status %s, seen %d times)", k, r.Status, seen[k])
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(seen) != total {
		t.Fatalf("%d distinct annotations stored, want %d", len(seen), total)
	}
	// annotation_seq counts the committed writes: one per row means none was stored twice.
	if writes := queryInt(t, db, `SELECT last_seq FROM annotation_seq`); writes != total {
		t.Fatalf("%d annotation writes for %d annotations; a sample was stored more than once", writes, total)
	}

	// Paid: one call per stored annotation, plus the calls the kill cut off, and no more.
	st := f.Stats()
	paid := 0
	for _, ks := range st.ByKey {
		paid += ks.Accepted
		if ks.RateLimited+ks.Rejected+ks.Faulted != 0 {
			t.Errorf("fake key stats %+v; want only accepted calls", ks)
		}
	}
	// Each worker had exactly `slots` calls held at the kill; the killed one's were cut off,
	// and no call was cut off after that.
	cut := st.Abandoned
	t.Logf("two workers, %d runs, %d annotations in %s (%s after the kill); paid calls %d = %d stored + %d paid twice; "+
		"calls cut off by the kill %d (bound: the killed worker's %d call slots)",
		len(pairs), total, done.Sub(began).Round(time.Millisecond), done.Sub(killed).Round(time.Millisecond),
		paid, total, st.Duplicates, cut, slots)
	if paid != total+st.Duplicates || st.Answered != paid-cut {
		t.Fatalf("fake: %d paid, %d answered, %d duplicates, %d cut off; want paid = %d stored + duplicates = answered + cut off",
			paid, st.Answered, st.Duplicates, cut, total)
	}
	if cut != slots {
		t.Fatalf("the kill cut off %d calls; the killed worker had %d in flight", cut, slots)
	}
	if st.Duplicates > cut {
		t.Fatalf("%d samples paid twice; only the %d calls in flight at the kill may be", st.Duplicates, cut)
	}
	for _, p := range pairs {
		replay(t, p.ID())
	}
}
