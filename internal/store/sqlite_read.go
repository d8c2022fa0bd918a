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

// scanAnnotation reads annotationColumns into a, then the columns that follow into extra.
// created_at is stored as formatTime writes it.
func scanAnnotation(row rowScanner, a *Annotation, extra ...any) error {
	var created string
	if err := row.Scan(annotationDest(a, &created, extra...)...); err != nil {
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
	w := whereClause{args: args}
	w.addKeys(f)
	if f.Label != "" {
		// ",TA-1,TA-3," holds ",TA-3," but not ",TA-30,"; labels join codes with ", ".
		w.add("(a.label = %s OR instr(',' || replace(a.label, ', ', ',') || ',', %s) > 0)",
			f.Label, ","+f.Label+",")
	}
	if f.Text != "" {
		needle := strings.ToLower(f.Text)
		w.add("(instr("+lowerFunc+"(s.text), %s) > 0 OR instr("+lowerFunc+"(a.raw_reply), %s) > 0)", needle, needle)
	}
	w.addTimes(f, "0 = 1", createdKey, func(t time.Time) any { return timeKey(t) })
	return w.sql()
}

// Changes implements Store.
func (s *SQLite) Changes(ctx context.Context, after int64, limit int) ([]Change, error) {
	if limit <= 0 {
		return nil, nil
	}
	rows, err := s.query(ctx, changesQuery, after, limit)
	if err != nil {
		return nil, fmt.Errorf("store: changes: %w", err)
	}
	defer rows.Close()
	out, err := collectChanges(rows, scanAnnotation)
	if err != nil {
		return nil, fmt.Errorf("store: changes: %w", err)
	}
	return out, nil
}

// LastSeq implements Store.
func (s *SQLite) LastSeq(ctx context.Context) (int64, error) {
	return scanValue[int64](s.queryRow(ctx, lastSeqQuery), "last seq")
}

// Annotations implements Store.
func (s *SQLite) Annotations(ctx context.Context, f Filter, before int64, limit int) ([]Row, error) {
	where, args := filterSQL(f, nil)
	query, args := annotationsQuery(where, args, before, limit)
	rows, err := s.read.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("store: annotations: %w", err)
	}
	defer rows.Close()
	out, err := collectRows(rows, scanAnnotation)
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
	err = tx.QueryRowContext(ctx, sampleQuery, id).Scan(&sm.Text, &sm.Position)
	if errors.Is(err, sql.ErrNoRows) {
		return Sample{}, nil, fmt.Errorf("store: sample %q: %w", id, ErrNotFound)
	}
	if err != nil {
		return Sample{}, nil, fmt.Errorf("store: sample %q: %w", id, err)
	}
	rows, err := tx.QueryContext(ctx, sampleRowsQuery, id)
	if err != nil {
		return Sample{}, nil, fmt.Errorf("store: sample %q: %w", id, err)
	}
	defer rows.Close()
	out, err := collectRows(rows, scanAnnotation)
	if err != nil {
		return Sample{}, nil, fmt.Errorf("store: sample %q: %w", id, err)
	}
	return sm, out, nil
}

// Stats implements Store. The database sums per (annotator, domain, status, label of an ok
// row); the groups are folded into one RunStats per run here.
func (s *SQLite) Stats(ctx context.Context, f Filter) ([]RunStats, error) {
	where, args := filterSQL(f, nil)
	rows, err := s.read.QueryContext(ctx, statsQuery(`COALESCE(SUM(%s), 0)`, createdKey, where), args...)
	if err != nil {
		return nil, fmt.Errorf("store: stats: %w", err)
	}
	defer rows.Close()
	var out []RunStats
	for rows.Next() {
		var (
			annotator, domain, status, label string
			n                                int
			t                                tokenSums
			last                             string
		)
		if err := rows.Scan(&annotator, &domain, &status, &label, &n, &t.in, &t.out, &t.cached, &last); err != nil {
			return nil, fmt.Errorf("store: stats: %w", err)
		}
		lastAt, err := time.Parse(time.RFC3339Nano, last)
		if err != nil {
			return nil, fmt.Errorf("store: stats: (%s, %s): newest created_at: %w", annotator, domain, err)
		}
		out = addStatsGroup(out, annotator, domain, status, label, n, t, lastAt)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: stats: %w", err)
	}
	return out, nil
}
