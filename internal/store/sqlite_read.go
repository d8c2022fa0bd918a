package store

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"strings"
	"time"

	"modernc.org/sqlite"
)

// lowerFunc is an SQL function: Unicode lower case, as strings.ToLower. SQLite's own lower()
// folds ASCII letters only, so "É" would not match "é".
const lowerFunc = "mha_lower"

func init() {
	// Registered on the driver, so every connection it opens has the function.
	sqlite.MustRegisterDeterministicScalarFunction(lowerFunc, 1,
		func(_ *sqlite.FunctionContext, args []driver.Value) (driver.Value, error) {
			switch v := args[0].(type) {
			case string:
				return strings.ToLower(v), nil
			case []byte:
				return strings.ToLower(string(v)), nil
			default:
				return v, nil // NULL and numbers have no case
			}
		})
}

// annotationColumns are the columns of an Annotation in annotations a, in the order
// scanAnnotation reads them.
const annotationColumns = `a.annotator, a.domain, a.sample_id, a.label, a.status, a.raw_reply,
	a.parse_error, a.validity_error, a.error, a.model, a.prompt_hash, a.latency_ms,
	a.input_tokens, a.output_tokens, a.attempt, a.created_at`

// scanAnnotation reads annotationColumns into a, then the columns that follow into extra.
func scanAnnotation(rows *sql.Rows, a *Annotation, extra ...any) error {
	var created string
	dest := append([]any{&a.Annotator, &a.Domain, &a.SampleID, &a.Label, &a.Status, &a.RawReply,
		&a.ParseError, &a.ValidityError, &a.Error, &a.Model, &a.PromptHash, &a.LatencyMS,
		&a.InputTokens, &a.OutputTokens, &a.Attempt, &created}, extra...)
	if err := rows.Scan(dest...); err != nil {
		return err
	}
	t, err := time.Parse(time.RFC3339Nano, created)
	if err != nil {
		return fmt.Errorf("annotation (%s, %s, %s): created_at: %w", a.Annotator, a.Domain, a.SampleID, err)
	}
	a.CreatedAt = t
	return nil
}

// createdKey is a.created_at in a form that sorts as text in time order. formatTime trims the
// fraction's trailing zeros ("10:00:05Z", "10:00:05.5Z"), so the stored text does not sort:
// 'Z' comes after '.'. The key pads the fraction to nine digits,
// "2006-01-02T15:04:05.000000000Z", as timeKey writes a bound. The migration
// 0002_annotation_seq.sql uses the same expression.
const createdKey = `(substr(a.created_at, 1, 19) || '.' ||
	substr(ltrim(rtrim(substr(a.created_at, 20), 'Z'), '.') || '000000000', 1, 9) || 'Z')`

// The range of times that formatTime writes with a four-digit year, so that createdKey holds.
var (
	minStorableTime = time.Date(0, 1, 1, 0, 0, 0, 0, time.UTC)
	maxStorableTime = time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC)
)

func storableTime(t time.Time) bool {
	return !t.Before(minStorableTime) && !t.After(maxStorableTime)
}

// timeKey is t as createdKey writes a stored time; t must be storable.
func timeKey(t time.Time) string {
	return t.UTC().Format("2006-01-02T15:04:05.000000000") + "Z"
}

// filterSQL returns the WHERE clause (empty, or starting with " WHERE ") that selects f over
// annotations a joined with samples s, and args with f's values appended for its placeholders.
func filterSQL(f Filter, args []any) (string, []any) {
	var conds []string
	// add appends cond, whose %s verbs become the placeholders of vals.
	add := func(cond string, vals ...any) {
		marks := make([]any, len(vals))
		for i, v := range vals {
			args = append(args, v)
			marks[i] = fmt.Sprintf("$%d", len(args))
		}
		conds = append(conds, fmt.Sprintf(cond, marks...))
	}
	if f.Annotator != "" {
		add("a.annotator = %s", f.Annotator)
	}
	if f.Domain != "" {
		add("a.domain = %s", f.Domain)
	}
	if f.Status != "" {
		add("a.status = %s", f.Status)
	}
	if f.Label != "" {
		// ",TA-1,TA-3," holds ",TA-3," but not ",TA-30,"; labels join codes with ", ".
		add("(a.label = %s OR instr(',' || replace(a.label, ', ', ',') || ',', %s) > 0)",
			f.Label, ","+f.Label+",")
	}
	if f.Text != "" {
		needle := strings.ToLower(f.Text)
		add("(instr("+lowerFunc+"(s.text), %s) > 0 OR instr("+lowerFunc+"(a.raw_reply), %s) > 0)", needle, needle)
	}
	if !f.From.IsZero() {
		switch {
		case f.From.After(maxStorableTime):
			add("0 = 1") // later than anything stored
		case !f.From.Before(minStorableTime):
			add(createdKey+" >= %s", timeKey(f.From))
		}
	}
	if !f.To.IsZero() {
		switch {
		case !f.To.After(minStorableTime):
			add("0 = 1") // no stored time is earlier
		case !f.To.After(maxStorableTime):
			add(createdKey+" < %s", timeKey(f.To))
		}
	}
	if len(conds) == 0 {
		return "", args
	}
	return " WHERE " + strings.Join(conds, " AND "), args
}

// Changes implements Store.
func (s *SQLite) Changes(ctx context.Context, after int64, limit int) ([]Change, error) {
	if limit <= 0 {
		return nil, nil
	}
	rows, err := s.read.QueryContext(ctx, `SELECT `+annotationColumns+`, a.seq FROM annotations a
		WHERE a.seq > $1 ORDER BY a.seq LIMIT $2`, after, limit)
	if err != nil {
		return nil, fmt.Errorf("store: changes: %w", err)
	}
	defer rows.Close()
	var out []Change
	for rows.Next() {
		var c Change
		if err := scanAnnotation(rows, &c.Annotation, &c.Seq); err != nil {
			return nil, fmt.Errorf("store: changes: %w", err)
		}
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: changes: %w", err)
	}
	return out, nil
}

// LastSeq implements Store.
func (s *SQLite) LastSeq(ctx context.Context) (int64, error) {
	var seq int64
	if err := s.read.QueryRowContext(ctx, `SELECT COALESCE(MAX(seq), 0) FROM annotations`).Scan(&seq); err != nil {
		return 0, fmt.Errorf("store: last seq: %w", err)
	}
	return seq, nil
}

// rowsQuery is the start of a query for Rows; a WHERE clause may follow.
const rowsQuery = `SELECT ` + annotationColumns + `, s.text, s.position, a.seq
	FROM annotations a JOIN samples s ON s.id = a.sample_id`

func collectRows(rows *sql.Rows) ([]Row, error) {
	defer rows.Close()
	var out []Row
	for rows.Next() {
		var r Row
		if err := scanAnnotation(rows, &r.Annotation, &r.Text, &r.Position, &r.Seq); err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// Annotations implements Store.
func (s *SQLite) Annotations(ctx context.Context, f Filter, before int64, limit int) ([]Row, error) {
	switch {
	case limit <= 0:
		limit = DefaultAnnotationsLimit
	case limit > MaxAnnotationsLimit:
		limit = MaxAnnotationsLimit
	}
	where, args := filterSQL(f, nil)
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
	rows, err := s.read.QueryContext(ctx, rowsQuery+where+fmt.Sprintf(" ORDER BY a.seq DESC LIMIT $%d", len(args)), args...)
	if err != nil {
		return nil, fmt.Errorf("store: annotations: %w", err)
	}
	out, err := collectRows(rows)
	if err != nil {
		return nil, fmt.Errorf("store: annotations: %w", err)
	}
	return out, nil
}

// Sample implements Store. Both reads share one transaction, so the annotations are those
// of the moment the sample was read.
func (s *SQLite) Sample(ctx context.Context, id string) (Sample, []Row, error) {
	tx, err := s.read.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return Sample{}, nil, fmt.Errorf("store: sample %q: %w", id, err)
	}
	defer tx.Rollback() // read only: nothing to commit
	sm := Sample{ID: id}
	err = tx.QueryRowContext(ctx, `SELECT text, position FROM samples WHERE id = $1`, id).Scan(&sm.Text, &sm.Position)
	if errors.Is(err, sql.ErrNoRows) {
		return Sample{}, nil, fmt.Errorf("store: sample %q: %w", id, ErrNotFound)
	}
	if err != nil {
		return Sample{}, nil, fmt.Errorf("store: sample %q: %w", id, err)
	}
	rows, err := tx.QueryContext(ctx, rowsQuery+` WHERE a.sample_id = $1 ORDER BY a.domain, a.annotator`, id)
	if err != nil {
		return Sample{}, nil, fmt.Errorf("store: sample %q: %w", id, err)
	}
	out, err := collectRows(rows)
	if err != nil {
		return Sample{}, nil, fmt.Errorf("store: sample %q: %w", id, err)
	}
	return sm, out, nil
}

// Stats implements Store. The database sums per (annotator, domain, status, label of an ok
// row); the groups are folded into one RunStats per run here.
func (s *SQLite) Stats(ctx context.Context, f Filter) ([]RunStats, error) {
	where, args := filterSQL(f, nil)
	rows, err := s.read.QueryContext(ctx, `SELECT a.annotator, a.domain, a.status,
		CASE WHEN a.status = 'ok' THEN a.label ELSE '' END AS ok_label,
		COUNT(*), COALESCE(SUM(a.input_tokens), 0), COALESCE(SUM(a.output_tokens), 0),
		MAX(`+createdKey+`)
		FROM annotations a JOIN samples s ON s.id = a.sample_id`+where+`
		GROUP BY a.annotator, a.domain, a.status, ok_label
		ORDER BY a.annotator, a.domain`, args...)
	if err != nil {
		return nil, fmt.Errorf("store: stats: %w", err)
	}
	defer rows.Close()
	var out []RunStats
	for rows.Next() {
		var (
			annotator, domain, status, label string
			n                                int
			in, outTokens                    int64
			last                             string
		)
		if err := rows.Scan(&annotator, &domain, &status, &label, &n, &in, &outTokens, &last); err != nil {
			return nil, fmt.Errorf("store: stats: %w", err)
		}
		lastAt, err := time.Parse(time.RFC3339Nano, last)
		if err != nil {
			return nil, fmt.Errorf("store: stats: (%s, %s): newest created_at: %w", annotator, domain, err)
		}
		out = addStatsGroup(out, annotator, domain, status, label, n, in, outTokens, lastAt)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: stats: %w", err)
	}
	return out, nil
}

// addStatsGroup folds one group of the stats query (the annotations of one status, and for
// status ok of one label, of a run) into out, whose groups come ordered by annotator then domain.
func addStatsGroup(out []RunStats, annotator, domain, status, label string, n int, in, outTokens int64, last time.Time) []RunStats {
	if len(out) == 0 || out[len(out)-1].Annotator != annotator || out[len(out)-1].Domain != domain {
		out = append(out, RunStats{Annotator: annotator, Domain: domain, Labels: map[string]int{}})
	}
	rs := &out[len(out)-1]
	addCount(&rs.Counts, status, n)
	if status == StatusOK {
		rs.Labels[label] += n
	}
	rs.Calls += n
	rs.InputTokens += in
	rs.OutputTokens += outTokens
	if last.After(rs.LastAt) {
		rs.LastAt = last
	}
	return out
}
