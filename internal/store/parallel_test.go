package store_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/mhannotator/mha/internal/store"
)

// The helper process learns its database (a DSN) and writer number from these.
const (
	writerDBEnv = "MHA_STORE_TEST_WRITER_DB"
	writerNEnv  = "MHA_STORE_TEST_WRITER_N"
)

const (
	sharedKeys   = 200 // keys every writer upserts
	ownKeys      = 50  // keys only one writer upserts
	processes    = 4
	goroutines   = 4
	sharedWriter = "shared"
)

func writerSampleID(i int) string { return fmt.Sprintf("s%03d", i) }

// runWriter imports the same samples as every other writer, then upserts the shared keys in
// its own random order, interleaved with keys of its own. Even writers write ok, odd ones
// malformed, so the shared keys must all end up ok whatever the interleaving.
func runWriter(ctx context.Context, s store.Store, n int) error {
	ss := make([]store.Sample, sharedKeys)
	for i := range ss {
		ss[i] = store.Sample{ID: writerSampleID(i), Text: "text " + strconv.Itoa(i)}
	}
	if _, err := s.ImportSamples(ctx, ss); err != nil {
		return err
	}
	status := store.StatusMalformed
	if n%2 == 0 {
		status = store.StatusOK
	}
	model := fmt.Sprintf("writer-%d", n)
	for i, k := range rand.New(rand.NewPCG(uint64(n), 42)).Perm(sharedKeys) {
		a := store.Annotation{Annotator: sharedWriter, Domain: "urgency", SampleID: writerSampleID(k),
			Status: status, Model: model, Attempt: n}
		if err := s.UpsertAnnotation(ctx, a); err != nil {
			return err
		}
		if i < ownKeys {
			own := store.Annotation{Annotator: model, Domain: "urgency", SampleID: writerSampleID(i),
				Status: status, Model: model}
			if err := s.UpsertAnnotation(ctx, own); err != nil {
				return err
			}
		}
	}
	return nil
}

// TestHelperWriterProcess is one writer process of TestParallelWritersFromSeveralProcesses;
// run on its own it does nothing.
func TestHelperWriterProcess(t *testing.T) {
	dsn := os.Getenv(writerDBEnv)
	if dsn == "" {
		return
	}
	n, err := strconv.Atoi(os.Getenv(writerNEnv))
	if err != nil {
		t.Fatalf("%s: %v", writerNEnv, err)
	}
	ctx := context.Background()
	s, err := store.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := runWriter(ctx, s, n); err != nil {
		t.Fatal(err)
	}
}

// TestParallelWritersFromSeveralProcesses has writers in processes of their own and in
// goroutines of this one write to one new database at once, while a reader follows the change
// feed: every write is kept once, ok is never downgraded, and the reader sees the writes in
// seq order, missing none that stays stored.
func TestParallelWritersFromSeveralProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	forEachBackend(t, func(t *testing.T, b backend) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		// A new database, so the processes also race to create the schema.
		dsn := b.newDSN(t)

		var wg sync.WaitGroup
		errs := make(chan error, processes+goroutines)
		for n := range processes {
			cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestHelperWriterProcess$", "-test.count=1")
			cmd.Env = append(os.Environ(), writerDBEnv+"="+dsn, writerNEnv+"="+strconv.Itoa(n))
			wg.Go(func() {
				if out, err := cmd.CombinedOutput(); err != nil {
					errs <- fmt.Errorf("writer process %d: %v\n%s", n, err, out)
				}
			})
		}
		s := openDSN(t, dsn)
		for n := processes; n < processes+goroutines; n++ {
			wg.Go(func() {
				if err := runWriter(ctx, s, n); err != nil {
					errs <- fmt.Errorf("writer goroutine %d: %v", n, err)
				}
			})
		}
		writing := make(chan struct{})
		var tail feedTail
		var tailDone sync.WaitGroup
		tailDone.Go(func() { tail.follow(ctx, s, writing) })
		wg.Wait()
		close(writing)
		tailDone.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		if tail.err != nil {
			t.Errorf("following the change feed: %v", tail.err)
		}
		if t.Failed() {
			return
		}

		if n, err := s.CountSamples(ctx); err != nil || n != sharedKeys {
			t.Errorf("CountSamples = %d, %v; want %d", n, err, sharedKeys)
		}
		seen := map[string]int{}
		if err := s.Export(ctx, store.Filter{}, func(r store.ExportRow) error {
			seen[r.Annotator+"/"+r.SampleID]++
			if r.SampleID != writerSampleID(r.Position) {
				t.Errorf("sample %s at position %d", r.SampleID, r.Position)
			}
			if r.Annotator == sharedWriter && r.Status != store.StatusOK {
				t.Errorf("shared key %s ended %s by %s: ok was downgraded", r.SampleID, r.Status, r.Model)
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		want := map[string]int{}
		for i := range sharedKeys {
			want[sharedWriter+"/"+writerSampleID(i)] = 1
		}
		for n := range processes + goroutines {
			for i := range ownKeys {
				want[fmt.Sprintf("writer-%d/%s", n, writerSampleID(i))] = 1
			}
		}
		for k, c := range seen {
			if want[k] != c {
				t.Errorf("key %s stored %d times, want %d", k, c, want[k])
			}
		}
		for k := range want {
			if seen[k] == 0 {
				t.Errorf("key %s missing", k)
			}
		}

		// Every stored annotation shows once in the change feed, under a seq of its own.
		changes := allChanges(t, s)
		if len(changes) != len(want) {
			t.Errorf("Changes returned %d annotations, want %d", len(changes), len(want))
		}
		if len(changes) > 0 {
			if last := lastSeq(t, s); last != changes[len(changes)-1].Seq {
				t.Errorf("LastSeq = %d, want the last change's seq %d", last, changes[len(changes)-1].Seq)
			}
		}
		// A stored seq the reader never saw became visible after a greater one.
		missed := 0
		for _, c := range changes {
			if !tail.seen[c.Seq] {
				missed++
			}
		}
		if missed > 0 {
			t.Errorf("the reader following the feed missed %d of %d stored seqs: they became visible after greater ones", missed, len(changes))
		}
		t.Logf("%d writes, the reader polled %d times", tail.writes, tail.polls)

		var check string
		if err := b.rawDB(t, dsn).QueryRowContext(ctx, b.integritySQL).Scan(&check); err != nil || check != "ok" {
			t.Errorf("integrity check = %q, %v", check, err)
		}
	})
}

// feedTail follows the change feed as a client does: each read asks for the changes after the
// greatest seq read so far.
type feedTail struct {
	seen   map[int64]bool
	polls  int
	writes int // changes read, replaced annotations included
	err    error
}

// follow reads until writing is closed, then once more.
func (f *feedTail) follow(ctx context.Context, s store.Store, writing <-chan struct{}) {
	f.seen = map[int64]bool{}
	var after int64
	for done := false; ; {
		select {
		case <-writing:
			done = true
		default:
		}
		for {
			cs, err := s.Changes(ctx, after, 500)
			f.polls++
			if err != nil {
				f.err = err
				return
			}
			for _, c := range cs {
				if c.Seq <= after {
					f.err = fmt.Errorf("seq %d read after seq %d", c.Seq, after)
					return
				}
				after = c.Seq
				f.seen[c.Seq] = true
				f.writes++
			}
			if len(cs) < 500 {
				break
			}
		}
		if done {
			return
		}
		time.Sleep(3 * time.Millisecond)
	}
}
