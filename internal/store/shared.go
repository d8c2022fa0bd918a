package store

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// What SQLite and PostgreSQL share: checks, SQL text that both dialects read alike (with the
// same $N placeholders), and the reading of rows, which *sql.Rows and pgx.Rows do alike.

// statusList names the annotation statuses, for error messages.
const statusList = StatusOK + ", " + StatusMalformed + ", " + StatusError + ", " + StatusBlocked

func knownStatus(status string) bool {
	switch status {
	case StatusOK, StatusMalformed, StatusError, StatusBlocked:
		return true
	}
	return false
}

// checkStatuses refuses statuses of DeleteAnnotations that are not annotation statuses.
func checkStatuses(statuses []string) error {
	for _, status := range statuses {
		if !knownStatus(status) {
			return fmt.Errorf("store: delete annotations: status %q is not one of %s", status, statusList)
		}
	}
	return nil
}

// checkAnnotation dates a zero a.CreatedAt now, then refuses an annotation that
// UpsertAnnotation must not store.
func checkAnnotation(a *Annotation, now time.Time) error {
	if a.CreatedAt.IsZero() {
		a.CreatedAt = now
	}
	for _, f := range []struct{ name, value string }{
		{"Annotator", a.Annotator}, {"Domain", a.Domain}, {"SampleID", a.SampleID},
	} {
		if f.value == "" {
			return fmt.Errorf("store: upsert annotation: field %s is empty", f.name)
		}
	}
	if !knownStatus(a.Status) {
		return fmt.Errorf("store: upsert annotation: field Status %q is not one of %s", a.Status, statusList)
	}
	if !storableTime(a.CreatedAt) {
		return fmt.Errorf("store: upsert annotation: field CreatedAt %s is outside the years 0000 to 9999", a.CreatedAt)
	}
	return nil
}

// importDone is what ImportSamples returns once the import gave res and err: an
// *ImportConflictError as it is, any other error wrapped and without a result.
func importDone(res ImportResult, err error) (ImportResult, error) {
	var conflict *ImportConflictError
	if err != nil && !errors.As(err, &conflict) {
		return ImportResult{}, fmt.Errorf("store: import samples: %w", err)
	}
	return res, err
}

// checkSamplesWindow refuses a negative offset of Samples, and tells whether limit asks for
// any sample at all.
func checkSamplesWindow(offset, limit int) (bool, error) {
	if offset < 0 {
		return false, fmt.Errorf("store: samples: negative offset %d", offset)
	}
	return limit > 0, nil
}

const (
	countSamplesQuery = `SELECT COUNT(*) FROM samples`
	// samplesQuery reads Samples. Positions are consecutive from 0, so a range on the unique
	// index replaces OFFSET.
	samplesQuery = `SELECT id, text, position FROM samples WHERE position >= $1 ORDER BY position LIMIT $2`
	nextPosQuery = `SELECT COALESCE(MAX(position), -1) + 1 FROM samples`
	sampleQuery  = `SELECT text, position FROM samples WHERE id = $1`
	lastSeqQuery = `SELECT COALESCE(MAX(seq), 0) FROM annotations`
	changesQuery = `SELECT ` + annotationColumns + `, a.seq FROM annotations a
		WHERE a.seq > $1 ORDER BY a.seq LIMIT $2`
	sampleRowsQuery = rowsQuery + ` WHERE a.sample_id = $1 ORDER BY a.domain, a.annotator`
)

// upsertSQL never replaces an ok annotation with a worse one; see Store.UpsertAnnotation.
const upsertSQL = `INSERT INTO annotations (
	annotator, domain, sample_id, label, status, raw_reply, parse_error, validity_error, error,
	model, prompt_hash, latency_ms, input_tokens, output_tokens, attempt, created_at, updated_at, seq,
	cached_tokens
) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19)
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
	cached_tokens = excluded.cached_tokens,
	attempt = excluded.attempt,
	created_at = excluded.created_at,
	updated_at = excluded.updated_at,
	seq = excluded.seq
WHERE annotations.status <> 'ok' OR excluded.status = 'ok'`

// haltBatchSQL records batch $2 as run $1's latest halted batch; batchHaltedSQL counts that
// record.
const (
	haltBatchSQL = `INSERT INTO batch_halts (workflow_id, batch_key) VALUES ($1, $2)
		ON CONFLICT (workflow_id) DO UPDATE SET batch_key = excluded.batch_key`
	batchHaltedSQL = `SELECT COUNT(*) FROM batch_halts WHERE workflow_id = $1 AND batch_key = $2`
)

// newHaltCheck is the halt record a write reads: none for an empty key.
func newHaltCheck(workflowID, key string) *haltCheck {
	if key == "" {
		return nil
	}
	return &haltCheck{workflowID: workflowID, key: key}
}

// upsertArgs are the arguments of upsertSQL: a, with its CreatedAt as created, then the
// update time and seq.
func upsertArgs(a Annotation, created, updated any, seq int64) []any {
	return []any{a.Annotator, a.Domain, a.SampleID, a.Label, a.Status, a.RawReply, a.ParseError,
		a.ValidityError, a.Error, a.Model, a.PromptHash, a.LatencyMS, a.InputTokens,
		a.OutputTokens, a.Attempt, created, updated, seq, a.CachedTokens}
}

// countAnnotationsQuery is the query of CountAnnotations and its arguments.
func countAnnotationsQuery(annotator, domain string, limit int) (string, []any) {
	query := `SELECT a.status, COUNT(*) FROM annotations a WHERE a.annotator = $1 AND a.domain = $2`
	args := []any{annotator, domain}
	if limit > 0 {
		query = `SELECT a.status, COUNT(*) FROM annotations a JOIN samples s ON s.id = a.sample_id
			WHERE a.annotator = $1 AND a.domain = $2 AND s.position < $3`
		args = append(args, limit)
	}
	return query + ` GROUP BY a.status`, args
}

// annotationColumns are the columns of an Annotation in annotations a, in the order
// annotationDest lists them.
const annotationColumns = `a.annotator, a.domain, a.sample_id, a.label, a.status, a.raw_reply,
	a.parse_error, a.validity_error, a.error, a.model, a.prompt_hash, a.latency_ms,
	a.input_tokens, a.output_tokens, a.attempt, a.cached_tokens, a.created_at`

// annotationDest is where a row of annotationColumns is scanned: into a, but created_at into
// created, then the columns that follow into extra.
func annotationDest(a *Annotation, created any, extra ...any) []any {
	return append([]any{&a.Annotator, &a.Domain, &a.SampleID, &a.Label, &a.Status, &a.RawReply,
		&a.ParseError, &a.ValidityError, &a.Error, &a.Model, &a.PromptHash, &a.LatencyMS,
		&a.InputTokens, &a.OutputTokens, &a.Attempt, &a.CachedTokens, created}, extra...)
}

// exportQuery is the query of Export over the WHERE clause where.
func exportQuery(where string) string {
	return `SELECT ` + annotationColumns + `, s.text, s.position
		FROM annotations a JOIN samples s ON s.id = a.sample_id` + where + `
		ORDER BY a.annotator, a.domain, s.position`
}

// rowsQuery is the start of a query for Rows; a WHERE clause may follow.
const rowsQuery = `SELECT ` + annotationColumns + `, s.text, s.position, a.seq
	FROM annotations a JOIN samples s ON s.id = a.sample_id`

// annotationsQuery is the query of Annotations over the WHERE clause where of a Filter, whose
// arguments are args, and its arguments.
func annotationsQuery(where string, args []any, before int64, limit int) (string, []any) {
	switch {
	case limit <= 0:
		limit = DefaultAnnotationsLimit
	case limit > MaxAnnotationsLimit:
		limit = MaxAnnotationsLimit
	}
	if before > 0 {
		args = append(args, before)
		if where == "" {
			where = " WHERE "
		} else {
			where += " AND "
		}
		where += fmt.Sprintf("a.seq < $%d", len(args))
	}
	args = append(args, limit)
	return rowsQuery + where + fmt.Sprintf(" ORDER BY a.seq DESC LIMIT $%d", len(args)), args
}

// statsQuery is the query of Stats over the WHERE clause where: per (annotator, domain, status,
// label of an ok row), the count, the sums of tokens (sum is the SQL of a sum, with %s for the
// column) and the newest created_at (the SQL of newest).
func statsQuery(sum, newest, where string) string {
	return `SELECT a.annotator, a.domain, a.status,
		CASE WHEN a.status = 'ok' THEN a.label ELSE '' END AS ok_label,
		COUNT(*), ` + fmt.Sprintf(sum, "a.input_tokens") + `, ` + fmt.Sprintf(sum, "a.output_tokens") + `, ` + fmt.Sprintf(sum, "a.cached_tokens") + `,
		MAX(` + newest + `)
		FROM annotations a JOIN samples s ON s.id = a.sample_id` + where + `
		GROUP BY a.annotator, a.domain, a.status, ok_label
		ORDER BY a.annotator, a.domain`
}

// whereClause builds the WHERE clause of a Filter; see filterSQL.
type whereClause struct {
	conds []string
	args  []any
}

// add appends cond, whose %s verbs become the placeholders of vals.
func (w *whereClause) add(cond string, vals ...any) {
	marks := make([]any, len(vals))
	for i, v := range vals {
		w.args = append(w.args, v)
		marks[i] = fmt.Sprintf("$%d", len(w.args))
	}
	w.conds = append(w.conds, fmt.Sprintf(cond, marks...))
}

// addKeys appends the conditions on f's Annotator, Domain and Status.
func (w *whereClause) addKeys(f Filter) {
	if f.Annotator != "" {
		w.add("a.annotator = %s", f.Annotator)
	}
	if f.Domain != "" {
		w.add("a.domain = %s", f.Domain)
	}
	if f.Status != "" {
		w.add("a.status = %s", f.Status)
	}
}

// addTimes appends the conditions on f's From and To: never (the SQL of false) for a bound
// beyond the storable times, else the SQL created (with %s for the bound) compared with the
// bound's value, as key gives it. A bound that every storable time passes adds nothing.
func (w *whereClause) addTimes(f Filter, never, created string, key func(time.Time) any) {
	if !f.From.IsZero() {
		switch {
		case f.From.After(maxStorableTime):
			w.add(never) // later than anything stored
		case !f.From.Before(minStorableTime):
			w.add(created+" >= %s", key(f.From))
		}
	}
	if !f.To.IsZero() {
		switch {
		case !f.To.After(minStorableTime):
			w.add(never) // no stored time is earlier
		case !f.To.After(maxStorableTime):
			w.add(created+" < %s", key(f.To))
		}
	}
}

// sql returns the clause (empty, or starting with " WHERE ") and the arguments.
func (w *whereClause) sql() (string, []any) {
	if len(w.conds) == 0 {
		return "", w.args
	}
	return " WHERE " + strings.Join(w.conds, " AND "), w.args
}

// rowScanner is a row to read: *sql.Row, *sql.Rows, pgx.Row or pgx.Rows.
type rowScanner interface {
	Scan(dest ...any) error
}

// rowsReader is the result of a query: *sql.Rows or pgx.Rows. Their Close methods differ, so
// the caller closes it.
type rowsReader interface {
	rowScanner
	Next() bool
	Err() error
}

// scanFunc is a backend's way to read annotationColumns into a and the columns that follow
// into extra: scanAnnotation on SQLite, scanPgAnnotation on PostgreSQL.
type scanFunc func(row rowScanner, a *Annotation, extra ...any) error

// scanValue reads the one column of row. An error is wrapped as "store: op: ...".
func scanValue[T any](row rowScanner, op string) (T, error) {
	var v T
	if err := row.Scan(&v); err != nil {
		var zero T
		return zero, fmt.Errorf("store: %s: %w", op, err)
	}
	return v, nil
}

// collect reads every row of rows with scan.
func collect[T any](rows rowsReader, scan func() (T, error)) ([]T, error) {
	var out []T
	for rows.Next() {
		v, err := scan()
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	return out, nil
}

// collectSamples reads the rows of samplesQuery.
func collectSamples(rows rowsReader) ([]Sample, error) {
	return collect(rows, func() (Sample, error) {
		var sm Sample
		err := rows.Scan(&sm.ID, &sm.Text, &sm.Position)
		return sm, err
	})
}

// collectChanges reads the rows of changesQuery.
func collectChanges(rows rowsReader, scan scanFunc) ([]Change, error) {
	return collect(rows, func() (Change, error) {
		var c Change
		err := scan(rows, &c.Annotation, &c.Seq)
		return c, err
	})
}

// collectRows reads the rows of a rowsQuery.
func collectRows(rows rowsReader, scan scanFunc) ([]Row, error) {
	return collect(rows, func() (Row, error) {
		var r Row
		err := scan(rows, &r.Annotation, &r.Text, &r.Position, &r.Seq)
		return r, err
	})
}

// collectCounts reads the rows of a countAnnotationsQuery.
func collectCounts(rows rowsReader) (Counts, error) {
	var c Counts
	for rows.Next() {
		var status string
		var n int
		if err := rows.Scan(&status, &n); err != nil {
			return Counts{}, err
		}
		addCount(&c, status, n)
	}
	if err := rows.Err(); err != nil {
		return Counts{}, err
	}
	return c, nil
}

// exportRows calls fn for every row of an exportQuery, and returns fn's own error as it is.
func exportRows(rows rowsReader, scan scanFunc, fn func(ExportRow) error) error {
	for rows.Next() {
		var r ExportRow
		if err := scan(rows, &r.Annotation, &r.Text, &r.Position); err != nil {
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

// tokenSums are a stats group's sums of tokens.
type tokenSums struct{ in, out, cached int64 }

// addStatsGroup folds one group of the stats query (the annotations of one status, and for
// status ok of one label, of a run) into out, whose groups come ordered by annotator then domain.
func addStatsGroup(out []RunStats, annotator, domain, status, label string, n int, t tokenSums, last time.Time) []RunStats {
	if len(out) == 0 || out[len(out)-1].Annotator != annotator || out[len(out)-1].Domain != domain {
		out = append(out, RunStats{Annotator: annotator, Domain: domain, Labels: map[string]int{}})
	}
	rs := &out[len(out)-1]
	addCount(&rs.Counts, status, n)
	if status == StatusOK {
		rs.Labels[label] += n
	}
	rs.Calls += n
	rs.InputTokens += t.in
	rs.OutputTokens += t.out
	rs.CachedTokens += t.cached
	if last.After(rs.LastAt) {
		rs.LastAt = last
	}
	return out
}
