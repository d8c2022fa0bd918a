// Package store keeps samples and annotations, the platform's source of truth. Every backend
// implements Store: SQLite, the default (one file, see OpenSQLite), and PostgreSQL (see
// OpenPostgres). Open chooses one by the DSN. Both pass the same contract tests; where their
// databases differ, the Store documentation says so (time precision, storable text).
package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/mhannotator/mha/internal/contract"
	"github.com/mhannotator/mha/internal/labels"
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
	CachedTokens  int // of InputTokens, served from the provider's prompt cache
	Attempt       int
	// CreatedAt is kept to the backend's precision, cut toward the past: SQLite keeps the
	// nanosecond, PostgreSQL (timestamptz) the microsecond. It is read back in UTC.
	CreatedAt time.Time
}

// ImportResult tells what an import changed.
type ImportResult struct {
	Added     int // new samples stored
	Unchanged int // samples already stored with the same text
}

// ErrNotFound is returned (wrapped) when the thing asked for is not stored.
var ErrNotFound = errors.New("not found")

// Filter selects annotations. Every non-empty field must match; an empty (zero) field matches
// everything. Store methods do not call Validate: a value that matches no annotation, such as an
// unknown status, selects nothing.
type Filter struct {
	Annotator string
	Domain    string
	// Status is one of the annotation statuses.
	Status string
	// Label is a label code: it matches a label that is exactly Label, or whose comma-separated
	// codes (as in "TA-1, TA-3") include Label. "TA-3" matches "TA-1, TA-3" but not "TA-30".
	// Case and spelling must be exact.
	Label string
	// Text matches when it is a substring of the sample text or of the raw reply, ignoring
	// letter case (Unicode lower case on both sides: strings.ToLower on SQLite, lower() on
	// PostgreSQL, under the ICU root collation when the database's LC_CTYPE is C). % and _
	// are plain characters.
	Text string
	// From and To bound the stored CreatedAt: From <= CreatedAt < To. A zero bound is open.
	// A bound finer than the backend's precision compares exactly with the stored times.
	From, To time.Time
}

// FieldError is one field of a Filter that Validate refuses.
type FieldError struct {
	Field   string // the Filter field, such as "Status"
	Value   string
	Message string
}

func (e *FieldError) Error() string {
	return fmt.Sprintf("store: filter field %s %q: %s", e.Field, e.Value, e.Message)
}

// Validate refuses a Status that is not an annotation status and a Domain that is not a domain
// of internal/labels spelled as the store stores it (lower case). Each bad field is a
// *FieldError; several are joined with errors.Join.
func (f Filter) Validate() error {
	var errs []error
	if f.Status != "" && !knownStatus(f.Status) {
		errs = append(errs, &FieldError{Field: "Status", Value: f.Status, Message: "not one of " + statusList})
	}
	if f.Domain != "" {
		d, err := labels.ParseDomain(f.Domain)
		switch {
		case err != nil:
			errs = append(errs, &FieldError{Field: "Domain", Value: f.Domain,
				Message: "not one of " + labels.DomainList()})
		case string(d) != f.Domain:
			errs = append(errs, &FieldError{Field: "Domain", Value: f.Domain,
				Message: fmt.Sprintf("spell it %q", d)})
		}
	}
	return errors.Join(errs...)
}

// ExportRow is an annotation joined with its sample text.
type ExportRow struct {
	Annotation
	Text     string
	Position int
}

// Row is an annotation with its sample text and position, and its change sequence number.
type Row struct {
	Seq int64
	ExportRow
}

// Change is an annotation as stored by the write that gave it sequence number Seq.
type Change struct {
	Seq int64
	Annotation
}

// RunStats sums up the annotations of one (Annotator, Domain) that a Filter selects.
type RunStats struct {
	Annotator string
	Domain    string
	Counts    Counts
	// Labels counts each label among the rows with status ok, keyed by the full label string
	// (such as "TA-1, TA-3"). Never nil.
	Labels       map[string]int
	InputTokens  int64
	OutputTokens int64
	CachedTokens int64
	Calls        int       // rows, of any status
	LastAt       time.Time // the newest CreatedAt, in UTC
}

// Default and largest page of Store.Annotations.
const (
	DefaultAnnotationsLimit = 50
	MaxAnnotationsLimit     = 500
)

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

// Store is what the platform needs from a database. Implementations are safe for concurrent use,
// also by several processes sharing one database.
//
// PostgreSQL stores text only as valid UTF-8 without NUL bytes: there, a sample, key or model
// holding other text is refused with an error (SQLite stores it); in what a provider wrote
// (label, raw reply, errors) such bytes become U+FFFD, so a strange reply cannot stall a run;
// and such text in a question (a Filter, an ID) matches nothing.
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
	// must not downgrade a good label. A zero CreatedAt means now; CreatedAt must lie in the
	// years 0000 to 9999 (what RFC 3339 can write), and is kept to the backend's precision
	// (see Annotation.CreatedAt).
	//
	// Every write that stores a (an insert or a replacement) gives the annotation a new sequence
	// number (seq), greater than every seq assigned before in this database, even those of
	// annotations since deleted. A refused write changes nothing, seq included. Writes become
	// visible in seq order: once a reader sees seq n, no annotation with a seq <= n appears later.
	UpsertAnnotation(ctx context.Context, a Annotation) error
	// UpsertAnnotationCheckingHalt is UpsertAnnotation that also reads, in the write's own
	// transaction, what BatchHalted(workflowID, key) would: a batch learns whether it was
	// halted from the write it makes anyway.
	UpsertAnnotationCheckingHalt(ctx context.Context, a Annotation, workflowID, key string) (halted bool, err error)
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
	// Changes returns the stored annotations whose seq is greater than after, in ascending seq
	// order, at most limit of them (none when limit <= 0). An annotation replaced since it was
	// given a seq <= after shows again under its new seq; deletions do not show.
	Changes(ctx context.Context, after int64, limit int) ([]Change, error)
	// LastSeq is the highest seq among the stored annotations, 0 when there are none. Every
	// annotation stored later has a greater seq.
	LastSeq(ctx context.Context) (int64, error)
	// Annotations returns the annotations matching f, newest first (descending seq), only those
	// with seq < before when before > 0, at most limit of them: DefaultAnnotationsLimit when
	// limit <= 0, MaxAnnotationsLimit when limit is larger. The next page is asked for with
	// before = the Seq of the last row.
	Annotations(ctx context.Context, f Filter, before int64, limit int) ([]Row, error)
	// Sample returns the sample with ID id and every annotation of it (all annotators and
	// domains), ordered by domain then annotator; no rows when it has none. A sample that is not
	// stored is an error wrapping ErrNotFound.
	Sample(ctx context.Context, id string) (Sample, []Row, error)
	// Stats returns one entry per (annotator, domain) that has annotations matching f, ordered
	// by annotator then domain; none when nothing matches.
	Stats(ctx context.Context, f Filter) ([]RunStats, error)
	// HaltBatch records that the batch named key, of the run whose workflow ID is workflowID,
	// must start no more calls: the run was paused or stopped. A run keeps only its latest.
	HaltBatch(ctx context.Context, workflowID, key string) error
	// BatchHalted reports whether HaltBatch recorded key as workflowID's latest halted batch.
	BatchHalted(ctx context.Context, workflowID, key string) (bool, error)
	Close() error
}
