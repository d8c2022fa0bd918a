package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
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
	if err := migrate(ctx, write, ms); err != nil {
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
	return &SQLite{write: write, read: read}, nil
}

func sqliteDSN(path string, extra ...string) string {
	return path + "?" + strings.Join(append(append([]string(nil), sqliteParams...), extra...), "&")
}

// Close closes both connection pools.
func (s *SQLite) Close() error {
	return errors.Join(s.read.Close(), s.write.Close())
}

// ImportSamples implements Store.
func (s *SQLite) ImportSamples(ctx context.Context, samples []Sample) (ImportResult, error) {
	for i, sm := range samples {
		if sm.ID == "" {
			return ImportResult{}, fmt.Errorf("store: import samples: sample %d of %d has an empty ID", i+1, len(samples))
		}
	}
	res, err := s.importSamples(ctx, samples)
	var conflict *ImportConflictError
	if err != nil && !errors.As(err, &conflict) {
		return ImportResult{}, fmt.Errorf("store: import samples: %w", err)
	}
	return res, err
}

func (s *SQLite) importSamples(ctx context.Context, samples []Sample) (ImportResult, error) {
	tx, err := s.write.BeginTx(ctx, nil)
	if err != nil {
		return ImportResult{}, err
	}
	defer tx.Rollback() // a no-op after Commit
	var next int
	if err := tx.QueryRowContext(ctx, `SELECT COALESCE(MAX(position), -1) + 1 FROM samples`).Scan(&next); err != nil {
		return ImportResult{}, err
	}
	find, err := tx.PrepareContext(ctx, `SELECT text, position FROM samples WHERE id = $1`)
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
	var n int
	if err := s.read.QueryRowContext(ctx, `SELECT COUNT(*) FROM samples`).Scan(&n); err != nil {
		return 0, fmt.Errorf("store: count samples: %w", err)
	}
	return n, nil
}

// Samples implements Store.
func (s *SQLite) Samples(ctx context.Context, offset, limit int) ([]Sample, error) {
	if offset < 0 {
		return nil, fmt.Errorf("store: samples: negative offset %d", offset)
	}
	if limit <= 0 {
		return nil, nil
	}
	// Positions are consecutive from 0, so a range on the unique index replaces OFFSET.
	rows, err := s.read.QueryContext(ctx,
		`SELECT id, text, position FROM samples WHERE position >= $1 ORDER BY position LIMIT $2`, offset, limit)
	if err != nil {
		return nil, fmt.Errorf("store: samples: %w", err)
	}
	defer rows.Close()
	var out []Sample
	for rows.Next() {
		var sm Sample
		if err := rows.Scan(&sm.ID, &sm.Text, &sm.Position); err != nil {
			return nil, fmt.Errorf("store: samples: %w", err)
		}
		out = append(out, sm)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: samples: %w", err)
	}
	return out, nil
}

// upsertSQL never replaces an ok annotation with a worse one; see Store.UpsertAnnotation.
const upsertSQL = `INSERT INTO annotations (
	annotator, domain, sample_id, label, status, raw_reply, parse_error, validity_error, error,
	model, prompt_hash, latency_ms, input_tokens, output_tokens, attempt, created_at, updated_at, seq
) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)
ON CONFLICT (annotator, domain, sample_id) DO UPDATE SET
	label = excluded.label,
	status = excluded.status,
	raw_reply = excluded.raw_reply,
	parse_error = excluded.parse_error,
	validity_error = excluded.validity_error,
	error = excluded.error,
	model = excluded.model,
	prompt_hash = excluded.prompt_hash,
	latency_ms = excluded.latency_ms,
	input_tokens = excluded.input_tokens,
	output_tokens = excluded.output_tokens,
	attempt = excluded.attempt,
	created_at = excluded.created_at,
	updated_at = excluded.updated_at,
	seq = excluded.seq
WHERE annotations.status <> 'ok' OR excluded.status = 'ok'`

// UpsertAnnotation implements Store. The write takes the next seq from annotation_seq and
// records it there only when the row was written, in one transaction: writers are serialised
// by the write lock, so seqs are committed in order and a refused write uses up none.
func (s *SQLite) UpsertAnnotation(ctx context.Context, a Annotation) error {
	now := time.Now()
	if a.CreatedAt.IsZero() {
		a.CreatedAt = now
	}
	if err := validateAnnotation(a); err != nil {
		return err
	}
	err := s.upsert(ctx, a, now)
	var se *sqlite.Error
	if errors.As(err, &se) && se.Code() == sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY {
		return fmt.Errorf("store: upsert annotation: sample %q is not stored", a.SampleID)
	}
	if err != nil {
		return fmt.Errorf("store: upsert annotation (%s, %s, %s): %w", a.Annotator, a.Domain, a.SampleID, err)
	}
	return nil
}

func (s *SQLite) upsert(ctx context.Context, a Annotation, now time.Time) error {
	tx, err := s.write.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback() // a no-op after Commit
	var seq int64
	if err := tx.QueryRowContext(ctx, `SELECT last_seq + 1 FROM annotation_seq WHERE id = 1`).Scan(&seq); err != nil {
		return fmt.Errorf("next seq: %w", err)
	}
	res, err := tx.ExecContext(ctx, upsertSQL,
		a.Annotator, a.Domain, a.SampleID, a.Label, a.Status, a.RawReply, a.ParseError,
		a.ValidityError, a.Error, a.Model, a.PromptHash, a.LatencyMS, a.InputTokens,
		a.OutputTokens, a.Attempt, formatTime(a.CreatedAt), formatTime(now), seq)
	if err != nil {
		return err
	}
	n, err := res.RowsAffected()
	if err != nil {
		return err
	}
	if n == 0 {
		return nil // refused: an ok annotation stays, with its seq
	}
	if _, err := tx.ExecContext(ctx, `UPDATE annotation_seq SET last_seq = $1 WHERE id = 1`, seq); err != nil {
		return fmt.Errorf("record seq: %w", err)
	}
	return tx.Commit()
}

func validateAnnotation(a Annotation) error {
	for _, f := range []struct{ name, value string }{
		{"Annotator", a.Annotator}, {"Domain", a.Domain}, {"SampleID", a.SampleID},
	} {
		if f.value == "" {
			return fmt.Errorf("store: upsert annotation: field %s is empty", f.name)
		}
	}
	if !knownStatus(a.Status) {
		return fmt.Errorf("store: upsert annotation: field Status %q is not one of %s, %s, %s, %s",
			a.Status, StatusOK, StatusMalformed, StatusError, StatusBlocked)
	}
	if !storableTime(a.CreatedAt) {
		return fmt.Errorf("store: upsert annotation: field CreatedAt %s is outside the years 0000 to 9999", a.CreatedAt)
	}
	return nil
}

// addCount adds n annotations of status to c.
func addCount(c *Counts, status string, n int) {
	switch status {
	case StatusOK:
		c.OK += n
	case StatusMalformed:
		c.Malformed += n
	case StatusError:
		c.Error += n
	case StatusBlocked:
		c.Blocked += n
	}
}

func knownStatus(status string) bool {
	switch status {
	case StatusOK, StatusMalformed, StatusError, StatusBlocked:
		return true
	}
	return false
}

// maxInList bounds the placeholders of one query, well below SQLite's and PostgreSQL's limits.
const maxInList = 500

// AnnotatedIDs implements Store.
func (s *SQLite) AnnotatedIDs(ctx context.Context, annotator, domain string, ids []string) (map[string]bool, error) {
	found := make(map[string]bool)
	for start := 0; start < len(ids); start += maxInList {
		chunk := ids[start:min(start+maxInList, len(ids))]
		args := []any{annotator, domain}
		marks := make([]string, len(chunk))
		for i, id := range chunk {
			args = append(args, id)
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
	rows, err := s.read.QueryContext(ctx, query, args...)
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
	query := `SELECT a.status, COUNT(*) FROM annotations a WHERE a.annotator = $1 AND a.domain = $2`
	args := []any{annotator, domain}
	if limit > 0 {
		query = `SELECT a.status, COUNT(*) FROM annotations a JOIN samples s ON s.id = a.sample_id
			WHERE a.annotator = $1 AND a.domain = $2 AND s.position < $3`
		args = append(args, limit)
	}
	rows, err := s.read.QueryContext(ctx, query+` GROUP BY a.status`, args...)
	if err != nil {
		return Counts{}, fmt.Errorf("store: count annotations: %w", err)
	}
	defer rows.Close()
	var c Counts
	for rows.Next() {
		var status string
		var n int
		if err := rows.Scan(&status, &n); err != nil {
			return Counts{}, fmt.Errorf("store: count annotations: %w", err)
		}
		addCount(&c, status, n)
	}
	if err := rows.Err(); err != nil {
		return Counts{}, fmt.Errorf("store: count annotations: %w", err)
	}
	return c, nil
}

// DeleteAnnotations implements Store, in one statement.
func (s *SQLite) DeleteAnnotations(ctx context.Context, annotator, domain string, statuses []string) (int, error) {
	if len(statuses) == 0 {
		return 0, nil
	}
	args := []any{annotator, domain}
	marks := make([]string, len(statuses))
	for i, status := range statuses {
		if !knownStatus(status) {
			return 0, fmt.Errorf("store: delete annotations: status %q is not one of %s, %s, %s, %s",
				status, StatusOK, StatusMalformed, StatusError, StatusBlocked)
		}
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
	rows, err := s.read.QueryContext(ctx, `SELECT `+annotationColumns+`, s.text, s.position
		FROM annotations a JOIN samples s ON s.id = a.sample_id`+where+`
		ORDER BY a.annotator, a.domain, s.position`, args...)
	if err != nil {
		return fmt.Errorf("store: export: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var r ExportRow
		if err := scanAnnotation(rows, &r.Annotation, &r.Text, &r.Position); err != nil {
			return fmt.Errorf("store: export: %w", err)
		}
		if err := fn(r); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("store: export: %w", err)
	}
	return nil
}

// formatTime is the stored form of times: RFC 3339 in UTC, to the nanosecond.
func formatTime(t time.Time) string {
	return t.UTC().Format(time.RFC3339Nano)
}
