// Package store keeps samples and annotations, the platform's source of truth. SQLite is the
// default backend; every backend implements Store.
package store

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/mhannotator/mha/internal/contract"
)

// Annotation statuses.
const (
	StatusOK        = "ok"
	StatusMalformed = "malformed"
	StatusError     = "error"
	StatusBlocked   = "blocked"
)

// Sample is one row of the dataset. Position is its 0-based place in dataset order, which is
// the order every run works through.
type Sample struct {
	ID       string
	Text     string
	Position int
}

// Annotation is the one stored result for (Annotator, Domain, SampleID).
type Annotation struct {
	Annotator     string
	Domain        string
	SampleID      string
	Label         string
	Status        string
	RawReply      string
	ParseError    string
	ValidityError string
	Error         string // provider or call error, for status "error"
	Model         string
	PromptHash    string
	LatencyMS     int64
	InputTokens   int
	OutputTokens  int
	Attempt       int
	CreatedAt     time.Time
}

// ImportResult tells what an import changed.
type ImportResult struct {
	Added     int // new samples stored
	Unchanged int // samples already stored with the same text
}

// Filter selects annotations; empty fields match everything.
type Filter struct {
	Annotator string
	Domain    string
}

// ExportRow is an annotation joined with its sample text.
type ExportRow struct {
	Annotation
	Text     string
	Position int
}

// Counts are a run's stored annotations by status.
type Counts = contract.Counts

// ImportConflict is one sample whose ID is already stored with a different text.
type ImportConflict struct {
	ID             string
	StoredPosition int
}

// ImportConflictError refuses an import that would change the text of stored samples: the
// annotations already made for an ID must keep meaning the text they were made for.
type ImportConflictError struct {
	Conflicts []ImportConflict
}

// maxNamedConflicts keeps the message readable when a whole different dataset is imported.
const maxNamedConflicts = 10

func (e *ImportConflictError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "import refused, nothing was imported: %d sample ID(s) already stored with a different text: ", len(e.Conflicts))
	for i, c := range e.Conflicts {
		if i == maxNamedConflicts {
			fmt.Fprintf(&b, " and %d more", len(e.Conflicts)-maxNamedConflicts)
			break
		}
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%q (position %d)", c.ID, c.StoredPosition)
	}
	return b.String()
}

// Store is what the platform needs from a database. Implementations are safe for concurrent use.
type Store interface {
	// ImportSamples appends samples in the given order after those already stored, in one
	// transaction. New samples get the positions following the highest stored one; the
	// Position field of the input is ignored. Samples whose ID is already stored (or appears
	// earlier in the same input) with the same text are left alone and counted as Unchanged; an
	// ID stored with a different text is refused (an *ImportConflictError naming every such ID)
	// and nothing of that import is written. An empty ID is an error.
	ImportSamples(ctx context.Context, samples []Sample) (ImportResult, error)
	// CountSamples is the number of stored samples.
	CountSamples(ctx context.Context) (int, error)
	// Samples returns up to limit samples from position offset on, in dataset order; none when
	// limit <= 0.
	Samples(ctx context.Context, offset, limit int) ([]Sample, error)
	// UpsertAnnotation stores a under its key (Annotator, Domain, SampleID), whose sample must be
	// stored. It replaces an existing annotation, except that an "ok" one is only replaced by
	// another "ok" one: a timed-out attempt and its retry can both write, and the later write
	// must not downgrade a good label. A zero CreatedAt means now.
	UpsertAnnotation(ctx context.Context, a Annotation) error
	// AnnotatedIDs returns which of ids already have an annotation, of any status, for
	// (annotator, domain).
	AnnotatedIDs(ctx context.Context, annotator, domain string, ids []string) (map[string]bool, error)
	// CountAnnotations counts a run's annotations among the first limit samples
	// (all samples when limit <= 0).
	CountAnnotations(ctx context.Context, annotator, domain string, limit int) (Counts, error)
	// DeleteAnnotations deletes the annotations of (annotator, domain) whose status is one of
	// statuses, so the run annotates those samples again, and returns how many it deleted.
	// An empty statuses deletes nothing; an unknown status is an error.
	DeleteAnnotations(ctx context.Context, annotator, domain string, statuses []string) (int, error)
	// Export calls fn for every annotation matching f, ordered by annotator, domain and
	// dataset position; it stops at the first error fn returns.
	Export(ctx context.Context, f Filter, fn func(ExportRow) error) error
	Close() error
}
