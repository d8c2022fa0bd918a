package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/danielgtaylor/huma/v2"

	"github.com/mhannotator/mha/internal/export"
	"github.com/mhannotator/mha/internal/store"
)

func init() { registrations = append(registrations, (*Server).exportRoutes) }

type exportInput struct {
	FilterQuery
	Format string `query:"format" required:"true" enum:"jsonl,csv,xlsx" doc:"file format"`
}

// contentTypes of the export formats.
var contentTypes = map[string]string{
	"jsonl": "application/x-ndjson",
	"csv":   "text/csv; charset=utf-8",
	"xlsx":  "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}

type previewOutput struct {
	Body struct {
		Rows  []Annotation `json:"rows" doc:"the first rows, in export order (annotator, domain, dataset position)"`
		Total int          `json:"total" doc:"annotations the export holds"`
	}
}

// previewRows is how many rows the preview shows.
const previewRows = 20

func (s *Server) exportRoutes() {
	huma.Register(s.api, huma.Operation{OperationID: "export", Method: http.MethodGet, Path: "/api/export",
		Summary: "Download annotations as JSONL, CSV or XLSX", Tags: []string{"export"},
		Description: "The filters of /api/annotations apply. XLSX has a summary sheet and one sheet per domain. " +
			"Texts, raw replies and errors are never truncated.",
		Responses: map[string]*huma.Response{"200": {Description: "the file", Content: map[string]*huma.MediaType{
			contentTypes["jsonl"]: {}, contentTypes["csv"]: {}, contentTypes["xlsx"]: {}}}},
	}, s.export)
	huma.Register(s.api, huma.Operation{OperationID: "export-preview", Method: http.MethodGet, Path: "/api/export/preview",
		Summary: "The first rows an export with these filters holds, and how many", Tags: []string{"export"}}, s.exportPreview)
}

func (s *Server) export(ctx context.Context, in *exportInput) (*huma.StreamResponse, error) {
	f, err := in.filter()
	if err != nil {
		return nil, err
	}
	format, err := export.ParseFormat(in.Format)
	if err != nil {
		return nil, huma.Error422UnprocessableEntity("unknown format", &huma.ErrorDetail{Location: "query.format", Message: err.Error(), Value: in.Format})
	}
	name := fmt.Sprintf("annotations-%s.%s", time.Now().UTC().Format("20060102-150405"), in.Format)
	return &huma.StreamResponse{Body: func(hc huma.Context) {
		hc.SetHeader("Content-Type", contentTypes[in.Format])
		hc.SetHeader("Content-Disposition", fmt.Sprintf("attachment; filename=%q", name))
		n, err := export.Write(hc.Context(), s.o.Store, f, format, hc.BodyWriter())
		if err != nil {
			// The status line is gone; the log and a cut-off download are all that is left.
			s.o.Logger.Error("export failed", "format", in.Format, "rows_written", n, "error", err)
		}
	}}, nil
}

// errEnough ends an export walk once the preview has its rows.
var errEnough = errors.New("enough rows")

func (s *Server) exportPreview(ctx context.Context, in *statsInput) (*previewOutput, error) {
	f, err := in.filter()
	if err != nil {
		return nil, err
	}
	out := &previewOutput{}
	out.Body.Rows = []Annotation{}
	err = s.o.Store.Export(ctx, f, func(r store.ExportRow) error {
		if len(out.Body.Rows) == previewRows {
			return errEnough
		}
		out.Body.Rows = append(out.Body.Rows, annotationOf(store.Row{ExportRow: r}))
		return nil
	})
	if err != nil && !errors.Is(err, errEnough) {
		return nil, storeError(err)
	}
	all, err := s.o.Store.Stats(ctx, f)
	if err != nil {
		return nil, storeError(err)
	}
	for _, r := range all {
		out.Body.Total += r.Calls
	}
	return out, nil
}
