package server

import (
	"context"
	"errors"
	"fmt"
	"mime/multipart"
	"net/http"
	"strconv"

	"github.com/danielgtaylor/huma/v2"

	"github.com/mhannotator/mha/internal/dataset"
	"github.com/mhannotator/mha/internal/store"
)

func init() { registrations = append(registrations, (*Server).datasetRoutes) }

// datasetPreview is how many samples GET /api/dataset shows.
const datasetPreview = 5

// maxNamedConflicts bounds the problem details of a refused import; the title counts them all.
const maxNamedConflicts = 100

// DatasetSample is one stored sample.
type DatasetSample struct {
	ID       string `json:"id"`
	Text     string `json:"text"`
	Position int    `json:"position" doc:"0-based place in dataset order"`
}

// RejectedRow is a row of an imported file that was skipped.
type RejectedRow struct {
	Row    int    `json:"row" doc:"the row number a person sees in the file (the header is row 1; jsonl: the line)"`
	Reason string `json:"reason"`
}

// ImportReport is what an import did.
type ImportReport struct {
	File      string        `json:"file"`
	Added     int           `json:"added" doc:"new samples stored"`
	Unchanged int           `json:"unchanged" doc:"samples already stored with the same text"`
	Rejected  []RejectedRow `json:"rejected"`
}

type datasetOutput struct {
	Body struct {
		Samples int             `json:"samples" doc:"stored samples"`
		First   []DatasetSample `json:"first" doc:"the first 5 samples in dataset order"`
	}
}

type datasetUploadInput struct {
	RawBody multipart.Form
}

type datasetUploadOutput struct {
	Body ImportReport
}

func (s *Server) datasetRoutes() {
	huma.Register(s.api, huma.Operation{OperationID: "get-dataset", Method: http.MethodGet, Path: "/api/dataset",
		Summary: "The stored dataset's size and first samples", Tags: []string{"dataset"}}, s.getDataset)
	huma.Register(s.api, huma.Operation{OperationID: "import-dataset", Method: http.MethodPost, Path: "/api/dataset",
		Summary: "Import a dataset file", Tags: []string{"dataset"},
		Description: "Appends the file's new samples to the store in file order, as `starter import` does. Samples already " +
			"stored with the same text are left alone; bad rows are skipped and listed with their row numbers. A sample ID " +
			"already stored with a different text refuses the whole import (409), and nothing is stored. " +
			"The format follows the file name's extension (.xlsx, .csv, .jsonl) and must match the content (else 415).",
		RequestBody: &huma.RequestBody{Required: true, Content: map[string]*huma.MediaType{"multipart/form-data": {
			Schema: &huma.Schema{Type: huma.TypeObject, Required: []string{"file"}, Properties: map[string]*huma.Schema{
				"file":  {Type: huma.TypeString, Format: "binary", Description: "the dataset: .xlsx, .csv or .jsonl with ID and Text columns (keys)"},
				"sheet": {Type: huma.TypeString, Description: "the worksheet to read (xlsx only; default the first)"},
			}},
		}}},
		Middlewares: huma.Middlewares{s.readUpload},
	}, s.importDataset)
}

// readUpload parses the multipart body before huma does, so an upload cut off by the size
// limit is a 413 that says so, and a body of another type a 415.
func (s *Server) readUpload(ctx huma.Context, next func(huma.Context)) {
	_, err := ctx.GetMultipartForm()
	var tooLarge *http.MaxBytesError
	switch {
	case err == nil:
		next(ctx)
	case errors.As(err, &tooLarge):
		_ = huma.WriteErr(s.api, ctx, http.StatusRequestEntityTooLarge, "the upload is larger than the limit of "+humanBytes(tooLarge.Limit),
			&huma.ErrorDetail{Location: "body.file", Message: "at most " + humanBytes(tooLarge.Limit) + " may be uploaded"})
	case errors.Is(err, http.ErrNotMultipart), errors.Is(err, http.ErrMissingBoundary):
		_ = huma.WriteErr(s.api, ctx, http.StatusUnsupportedMediaType, "send the dataset as multipart/form-data",
			&huma.ErrorDetail{Location: "body", Message: "expected a multipart/form-data body with the field file"})
	default:
		_ = huma.WriteErr(s.api, ctx, http.StatusBadRequest, "the multipart body cannot be read",
			&huma.ErrorDetail{Location: "body", Message: err.Error()})
	}
}

func (s *Server) getDataset(ctx context.Context, _ *struct{}) (*datasetOutput, error) {
	n, err := s.o.Store.CountSamples(ctx)
	if err != nil {
		return nil, huma.Error500InternalServerError("the store cannot be read: " + err.Error())
	}
	first, err := s.o.Store.Samples(ctx, 0, datasetPreview)
	if err != nil {
		return nil, huma.Error500InternalServerError("the store cannot be read: " + err.Error())
	}
	out := &datasetOutput{}
	out.Body.Samples = n
	out.Body.First = make([]DatasetSample, len(first))
	for i, sm := range first {
		out.Body.First[i] = DatasetSample{ID: sm.ID, Text: sm.Text, Position: sm.Position}
	}
	return out, nil
}

func (s *Server) importDataset(ctx context.Context, in *datasetUploadInput) (*datasetUploadOutput, error) {
	files := in.RawBody.File["file"]
	switch {
	case len(files) == 0:
		return nil, huma.Error422UnprocessableEntity("no file", &huma.ErrorDetail{Location: "body.file",
			Message: "is required: send the dataset file as the multipart field file"})
	case len(files) > 1:
		return nil, huma.Error422UnprocessableEntity("more than one file", &huma.ErrorDetail{Location: "body.file",
			Message: fmt.Sprintf("expected one file, got %d", len(files))})
	}
	var sheet string
	if v := in.RawBody.Value["sheet"]; len(v) > 0 {
		sheet = v[0]
	}
	fh := files[0]
	f, err := fh.Open()
	if err != nil {
		return nil, huma.Error500InternalServerError("the upload cannot be read: " + err.Error())
	}
	defer f.Close()
	rep, err := dataset.Import(ctx, s.o.Store, f, fh.Filename, dataset.Options{Sheet: sheet})
	if err != nil {
		return nil, importError(err, fh.Filename, sheet)
	}
	out := &datasetUploadOutput{Body: ImportReport{File: fh.Filename, Added: rep.Added, Unchanged: rep.Unchanged, Rejected: make([]RejectedRow, len(rep.Skipped))}}
	for i, sk := range rep.Skipped {
		out.Body.Rejected[i] = RejectedRow{Row: sk.Row, Reason: sk.Reason}
	}
	s.o.Logger.Info("dataset imported", "file", fh.Filename, "added", rep.Added, "unchanged", rep.Unchanged, "rejected", len(rep.Skipped))
	return out, nil
}

// importError turns a refused import into problem details.
func importError(err error, file, sheet string) error {
	var (
		format   *dataset.FormatError
		noSheet  *dataset.SheetError
		conflict *store.ImportConflictError
		unread   *dataset.ReadError
	)
	switch {
	case errors.As(err, &format):
		return huma.Error415UnsupportedMediaType("the file is not a dataset this api reads", &huma.ErrorDetail{Location: "body.file",
			Message: format.Error() + " (the format follows the file name: .xlsx, .csv or .jsonl)", Value: file})
	case errors.As(err, &noSheet):
		return huma.Error422UnprocessableEntity("no such sheet", &huma.ErrorDetail{Location: "body.sheet", Message: noSheet.Error(), Value: sheet})
	case errors.As(err, &conflict):
		details := make([]error, 0, min(len(conflict.Conflicts), maxNamedConflicts))
		for i, c := range conflict.Conflicts {
			if i == maxNamedConflicts {
				break
			}
			details = append(details, &huma.ErrorDetail{Location: "body.file",
				Message: "sample ID " + strconv.Quote(c.ID) + " is already stored (position " + strconv.Itoa(c.StoredPosition) + ") with a different text",
				Value:   c.ID})
		}
		return huma.Error409Conflict(conflict.Error(), details...)
	case errors.As(err, &unread):
		return huma.Error422UnprocessableEntity("the file cannot be imported", &huma.ErrorDetail{Location: "body.file", Message: unread.Error(), Value: file})
	}
	return huma.Error500InternalServerError("the import failed: " + err.Error())
}
