package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// SQLite is the Store in one SQLite file, through the pure-Go modernc.org/sqlite driver.
//
// Writes go through a pool of a single connection, so the writers of one process queue in
// database/sql instead of polling SQLite's lock; writers in other processes are waited for by
// busy_timeout. Reads have their own pool, which in WAL mode never waits for a writer.
//
// Queries use $N placeholders, which SQLite and PostgreSQL both understand.
type SQLite struct {
	write *sql.DB
	read  *sql.DB
	// The upsert's three statements, prepared once: parsing them for every annotation took
	// a tenth of a busy worker's CPU.
	nextSeq, upsertRow, recordSeq *sql.Stmt
	// batchHalted, on the read pool, is asked before paid calls; haltedInWrite is the same
	// question in a write's transaction.
	batchHalted, haltedInWrite *sql.Stmt
	group                      *committer
	// reads holds the read pool's frequent queries, prepared on first use (query text →
	// *sql.Stmt): a batch reads samples, annotated IDs and counts, and parsing each query
	// again cost a busy worker as much as running it.
	reads sync.Map
}

var _ Store = (*SQLite)(nil)

// sqliteParams are applied by the driver to every new pooled connection: a pragma set once
// on the handle would hold on one connection only. busy_timeout goes first (the driver sorts
// it first) so that switching to WAL waits for other processes instead of failing.
var sqliteParams = []string{
	"_pragma=busy_timeout(10000)",
	"_pragma=journal_mode(WAL)",
	"_pragma=synchronous(NORMAL)",
	"_pragma=foreign_keys(ON)",
}

// OpenSQLite opens (creating it and its directory if needed) the SQLite database at path and
// brings its schema up to date.
func OpenSQLite(ctx context.Context, path string) (*SQLite, error) {
	switch {
	case path == "":
		return nil, errors.New("store: empty SQLite path")
	case path == ":memory:" || strings.HasPrefix(path, "file:"):
		// A pool of in-memory connections would be several unrelated databases.
		return nil, fmt.Errorf("store: SQLite path %q: give a file path (in-memory and file: URI databases are not supported)", path)
	case strings.Contains(path, "?"):
		// The driver reads everything after '?' as its parameters.
		return nil, fmt.Errorf("store: SQLite path %q must not contain '?'", path)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("store: create directory for %s: %w", path, err)
	}
	ms, err := loadMigrations(sqliteMigrations, "migrations/sqlite")
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}

	// Every write transaction takes the write lock at BEGIN (_txlock=immediate): a deferred
	// transaction that reads and then writes fails with SQLITE_BUSY, without waiting, when
	// another connection wrote in between.
	write, err := sql.Open("sqlite", sqliteDSN(path, "_txlock=immediate"))
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	write.SetMaxOpenConns(1)
	if err := migrateRetryingBusy(ctx, write, ms); err != nil {
		write.Close()
		return nil, fmt.Errorf("store: migrate %s: %w", path, err)
	}
	read, err := sql.Open("sqlite", sqliteDSN(path, "_query_only=1"))
	if err == nil {
		err = read.PingContext(ctx)
	}
	if err != nil {
		write.Close()
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	s := &SQLite{write: write, read: read}
	s.group = newCommitter(s.upsert, s.upsertOne)
	for _, p := range []struct {
		stmt  **sql.Stmt
		query string
	}{{&s.nextSeq, `SELECT last_seq + 1 FROM annotation_seq WHERE id = 1`}, {&s.upsertRow, upsertSQL},
		{&s.recordSeq, `UPDATE annotation_seq SET last_seq = $1 WHERE id = 1`}, {&s.haltedInWrite, batchHaltedSQL}} {
		if *p.stmt, err = write.PrepareContext(ctx, p.query); err != nil {
			s.Close()
			return nil, fmt.Errorf("store: prepare %s: %w", path, err)
		}
	}
	if s.batchHalted, err = read.PrepareContext(ctx, batchHaltedSQL); err != nil {
		s.Close()
		return nil, fmt.Errorf("store: prepare %s: %w", path, err)
	}
	return s, nil
}

// migrateRetryingBusy is migrate, tried again when SQLite answers SQLITE_BUSY without
// waiting: two processes opening a new database at once can both switch it to WAL, and the
// loser's first statement fails at once instead of waiting for busy_timeout.
func migrateRetryingBusy(ctx context.Context, db *sql.DB, ms []migration) error {
	for attempt := 1; ; attempt++ {
		err := migrate(ctx, db, ms)
		var se *sqlite.Error
		if attempt == 5 || !errors.As(err, &se) || se.Code()&0xff != sqlite3.SQLITE_BUSY {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(time.Duration(attempt) * 20 * time.Millisecond):
		}
	}
}

func sqliteDSN(path string, extra ...string) string {
	return path + "?" + strings.Join(append(append([]string(nil), sqliteParams...), extra...), "&")
}

// Close writes the annotations handed over already, then closes the prepared statements and
// both connection pools.
func (s *SQLite) Close() error {
	if s.group != nil {
		s.group.close()
	}
	var errs []error
	for _, st := range []*sql.Stmt{s.nextSeq, s.upsertRow, s.recordSeq, s.batchHalted, s.haltedInWrite} {
		if st != nil {
			errs = append(errs, st.Close())
		}
	}
	s.reads.Range(func(_, st any) bool {
		errs = append(errs, st.(*sql.Stmt).Close())
		return true
	})
	return errors.Join(append(errs, s.read.Close(), s.write.Close())...)
}

// ImportSamples implements Store.
func (s *SQLite) ImportSamples(ctx context.Context, samples []Sample) (ImportResult, error) {
	for i, sm := range samples {
		if sm.ID == "" {
			return ImportResult{}, fmt.Errorf("store: import samples: sample %d of %d has an empty ID", i+1, len(samples))
		}
	}
	return importDone(s.importSamples(ctx, samples))
}

func (s *SQLite) importSamples(ctx context.Context, samples []Sample) (ImportResult, error) {
	tx, err := s.write.BeginTx(ctx, nil)
	if err != nil {
		return ImportResult{}, err
	}
	defer tx.Rollback() // a no-op after Commit
	var next int
	if err := tx.QueryRowContext(ctx, nextPosQuery).Scan(&next); err != nil {
		return ImportResult{}, err
	}
	find, err := tx.PrepareContext(ctx, sampleQuery)
	if err != nil {
		return ImportResult{}, err
	}
	defer find.Close()
	insert, err := tx.PrepareContext(ctx, `INSERT INTO samples (id, position, text, imported_at) VALUES ($1, $2, $3, $4)`)
	if err != nil {
		return ImportResult{}, err
	}
	defer insert.Close()

	now := formatTime(time.Now())
	var res ImportResult
	var conflicts []ImportConflict
	for _, sm := range samples {
		// Rows inserted earlier in this loop are found too, so an ID repeated in the input is
		// treated like one already stored.
		var text string
		var pos int
		err := find.QueryRowContext(ctx, sm.ID).Scan(&text, &pos)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			if _, err := insert.ExecContext(ctx, sm.ID, next, sm.Text, now); err != nil {
				return ImportResult{}, fmt.Errorf("sample %q: %w", sm.ID, err)
			}
			next++
			res.Added++
		case err != nil:
			return ImportResult{}, fmt.Errorf("sample %q: %w", sm.ID, err)
		case text == sm.Text:
			res.Unchanged++
		default:
			conflicts = append(conflicts, ImportConflict{ID: sm.ID, StoredPosition: pos})
		}
	}
	if len(conflicts) > 0 {
		return ImportResult{}, &ImportConflictError{Conflicts: conflicts}
	}
	return res, tx.Commit()
}

// CountSamples implements Store.
func (s *SQLite) CountSamples(ctx context.Context) (int, error) {
	return scanValue[int](s.queryRow(ctx, countSamplesQuery), "count samples")
}

// Samples implements Store.
func (s *SQLite) Samples(ctx context.Context, offset, limit int) ([]Sample, error) {
	if ok, err := checkSamplesWindow(offset, limit); !ok {
		return nil, err
	}
	rows, err := s.query(ctx, samplesQuery, offset, limit)
	if err != nil {
		return nil, fmt.Errorf("store: samples: %w", err)
	}
	defer rows.Close()
	out, err := collectSamples(rows)
	if err != nil {
		return nil, fmt.Errorf("store: samples: %w", err)
	}
	return out, nil
}

// UpsertAnnotation implements Store. The write takes the next seq from annotation_seq and
// records it there only when the row was written, in one transaction: writers are serialised
// by the write lock, so seqs are committed in order and a refused write uses up none. The
// writes of one process share transactions (see committer).
func (s *SQLite) UpsertAnnotation(ctx context.Context, a Annotation) error {
	_, err := s.UpsertAnnotationCheckingHalt(ctx, a, "", "")
	return err
}

// UpsertAnnotationCheckingHalt implements Store; an empty key reads no halt record.
func (s *SQLite) UpsertAnnotationCheckingHalt(ctx context.Context, a Annotation, workflowID, key string) (bool, error) {
	now := time.Now()
	if err := checkAnnotation(&a, now); err != nil {
		return false, err
	}
	return s.group.write(ctx, a, now, newHaltCheck(workflowID, key))
}

// upsertOne writes w alone, with the error it deserves.
func (s *SQLite) upsertOne(ctx context.Context, w *pendingWrite) error {
	a := w.a
	err := s.upsert(ctx, []*pendingWrite{w})
	var se *sqlite.Error
	if errors.As(err, &se) && se.Code() == sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY {
		return fmt.Errorf("store: upsert annotation: sample %q is not stored", a.SampleID)
	}
	if err != nil {
		return fmt.Errorf("store: upsert annotation (%s, %s, %s): %w", a.Annotator, a.Domain, a.SampleID, err)
	}
	return nil
}

// upsert writes rows in one transaction, each written one taking the next seq.
func (s *SQLite) upsert(ctx context.Context, rows []*pendingWrite) error {
	tx, err := s.write.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback() // a no-op after Commit
	var seq int64
	if err := tx.StmtContext(ctx, s.nextSeq).QueryRowContext(ctx).Scan(&seq); err != nil {
		return fmt.Errorf("next seq: %w", err)
	}
	for _, w := range rows {
		if w.halt != nil {
			var n int
			if err := tx.StmtContext(ctx, s.haltedInWrite).QueryRowContext(ctx, w.halt.workflowID, w.halt.key).Scan(&n); err != nil {
				return fmt.Errorf("halt record: %w", err)
			}
			w.halted = n > 0
		}
	}
	upsert, last := tx.StmtContext(ctx, s.upsertRow), int64(0)
	for _, w := range rows {
		res, err := upsert.ExecContext(ctx, upsertArgs(w.a, formatTime(w.a.CreatedAt), formatTime(w.now), seq)...)
		if err != nil {
			return err
		}
		n, err := res.RowsAffected()
		if err != nil {
			return err
		}
		if n > 0 { // else refused: an ok annotation stays, with its seq
			last, seq = seq, seq+1
		}
	}
	if last == 0 {
		return nil
	}
	if _, err := tx.StmtContext(ctx, s.recordSeq).ExecContext(ctx, last); err != nil {
		return fmt.Errorf("record seq: %w", err)
	}
	return tx.Commit()
}

// maxInList bounds the placeholders of one query, well below SQLite's and PostgreSQL's limits.
const maxInList = 512

// inListSize is how many placeholders a list of n values gets: the next power of two from 8
// on, so a few query texts serve every list and each is prepared once.
func inListSize(n int) int {
	size := 8
	for size < n {
		size *= 2
	}
	return size
}

// AnnotatedIDs implements Store.
func (s *SQLite) AnnotatedIDs(ctx context.Context, annotator, domain string, ids []string) (map[string]bool, error) {
	found := make(map[string]bool)
	for start := 0; start < len(ids); start += maxInList {
		chunk := ids[start:min(start+maxInList, len(ids))]
		args := []any{annotator, domain}
		marks := make([]string, inListSize(len(chunk)))
		for i := range marks {
			args = append(args, chunk[min(i, len(chunk)-1)]) // the last one again fills the list
			marks[i] = fmt.Sprintf("$%d", len(args))
		}
		if err := s.collectIDs(ctx, found, `SELECT sample_id FROM annotations
			WHERE annotator = $1 AND domain = $2 AND sample_id IN (`+strings.Join(marks, ", ")+`)`, args); err != nil {
			return nil, fmt.Errorf("store: annotated IDs: %w", err)
		}
	}
	return found, nil
}

func (s *SQLite) collectIDs(ctx context.Context, found map[string]bool, query string, args []any) error {
	rows, err := s.query(ctx, query, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return err
		}
		found[id] = true
	}
	return rows.Err()
}

// CountAnnotations implements Store.
func (s *SQLite) CountAnnotations(ctx context.Context, annotator, domain string, limit int) (Counts, error) {
	query, args := countAnnotationsQuery(annotator, domain, limit)
	rows, err := s.query(ctx, query, args...)
	if err != nil {
		return Counts{}, fmt.Errorf("store: count annotations: %w", err)
	}
	defer rows.Close()
	c, err := collectCounts(rows)
	if err != nil {
		return Counts{}, fmt.Errorf("store: count annotations: %w", err)
	}
	return c, nil
}

// DeleteAnnotations implements Store, in one statement.
func (s *SQLite) DeleteAnnotations(ctx context.Context, annotator, domain string, statuses []string) (int, error) {
	if len(statuses) == 0 {
		return 0, nil
	}
	if err := checkStatuses(statuses); err != nil {
		return 0, err
	}
	args := []any{annotator, domain}
	marks := make([]string, len(statuses))
	for i, status := range statuses {
		args = append(args, status)
		marks[i] = fmt.Sprintf("$%d", len(args))
	}
	res, err := s.write.ExecContext(ctx, `DELETE FROM annotations WHERE annotator = $1 AND domain = $2
		AND status IN (`+strings.Join(marks, ", ")+`)`, args...)
	if err != nil {
		return 0, fmt.Errorf("store: delete annotations (%s, %s): %w", annotator, domain, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("store: delete annotations (%s, %s): %w", annotator, domain, err)
	}
	return int(n), nil
}

// Export implements Store. fn's own error is returned as it is.
func (s *SQLite) Export(ctx context.Context, f Filter, fn func(ExportRow) error) error {
	where, args := filterSQL(f, nil)
	rows, err := s.read.QueryContext(ctx, exportQuery(where), args...)
	if err != nil {
		return fmt.Errorf("store: export: %w", err)
	}
	defer rows.Close()
	return exportRows(rows, scanAnnotation, fn)
}

// formatTime is the stored form of times: RFC 3339 in UTC, to the nanosecond.
func formatTime(t time.Time) string {
	return t.UTC().Format(time.RFC3339Nano)
}

// HaltBatch implements Store.
func (s *SQLite) HaltBatch(ctx context.Context, workflowID, key string) error {
	if _, err := s.write.ExecContext(ctx, haltBatchSQL, workflowID, key); err != nil {
		return fmt.Errorf("store: halt batch %s of %s: %w", key, workflowID, err)
	}
	return nil
}

// BatchHalted implements Store.
func (s *SQLite) BatchHalted(ctx context.Context, workflowID, key string) (bool, error) {
	var n int
	if err := s.batchHalted.QueryRowContext(ctx, workflowID, key).Scan(&n); err != nil {
		return false, fmt.Errorf("store: is batch %s of %s halted: %w", key, workflowID, err)
	}
	return n > 0, nil
}

// readStmt returns query prepared on the read pool, preparing it on first use. Only queries
// of a few fixed texts go through it: each text stays prepared until Close.
func (s *SQLite) readStmt(ctx context.Context, query string) (*sql.Stmt, error) {
	if st, ok := s.reads.Load(query); ok {
		return st.(*sql.Stmt), nil
	}
	st, err := s.read.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	if prev, loaded := s.reads.LoadOrStore(query, st); loaded {
		st.Close()
		return prev.(*sql.Stmt), nil
	}
	return st, nil
}

// query runs one of the read pool's frequent queries through its prepared statement, or
// unprepared when preparing failed (then the query's own error, if any, is the answer).
func (s *SQLite) query(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	st, err := s.readStmt(ctx, query)
	if err != nil {
		return s.read.QueryContext(ctx, query, args...)
	}
	return st.QueryContext(ctx, args...)
}

// queryRow is query for a single row.
func (s *SQLite) queryRow(ctx context.Context, query string, args ...any) *sql.Row {
	st, err := s.readStmt(ctx, query)
	if err != nil {
		return s.read.QueryRowContext(ctx, query, args...)
	}
	return st.QueryRowContext(ctx, args...)
}
