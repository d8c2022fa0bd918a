package dataset

import (
	"context"
	"io"

	"github.com/mhannotator/mha/internal/store"
)

// Importer stores samples; store.Store is one.
type Importer interface {
	ImportSamples(ctx context.Context, samples []store.Sample) (store.ImportResult, error)
}

// Report is what an import did: the samples it added, those already stored with the same
// text, and the rows it skipped with their row numbers.
type Report struct {
	Added     int
	Unchanged int
	Skipped   []Skipped
}

// ReadError is a dataset Import could not read; nothing was stored. Its message is the
// reader's.
type ReadError struct{ Err error }

func (e *ReadError) Error() string { return e.Err.Error() }
func (e *ReadError) Unwrap() error { return e.Err }

// Import reads a dataset from r (its format chosen by the extension of name, as ReadFrom does)
// and appends its new samples to st in file order. A sample ID already stored with a different
// text refuses the whole import with the store's *store.ImportConflictError, and nothing is
// stored; a file that cannot be read is a *ReadError. It is the one import path of starter
// and the api.
func Import(ctx context.Context, st Importer, r io.Reader, name string, opts Options) (Report, error) {
	res, err := ReadFrom(r, name, opts)
	if err != nil {
		return Report{}, &ReadError{Err: err}
	}
	return save(ctx, st, res)
}

// ImportFile is Import of the file at path.
func ImportFile(ctx context.Context, st Importer, path string, opts Options) (Report, error) {
	res, err := Read(path, opts)
	if err != nil {
		return Report{}, &ReadError{Err: err}
	}
	return save(ctx, st, res)
}

func save(ctx context.Context, st Importer, res Result) (Report, error) {
	imp, err := st.ImportSamples(ctx, res.Samples)
	if err != nil {
		return Report{}, err
	}
	return Report{Added: imp.Added, Unchanged: imp.Unchanged, Skipped: res.Skipped}, nil
}
