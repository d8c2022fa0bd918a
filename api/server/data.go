package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/danielgtaylor/huma/v2"

	"github.com/mhannotator/mha/internal/store"
)

func init() { registrations = append(registrations, (*Server).dataRoutes) }

// Annotation is a stored annotation as the api shows it, with its sample's text.
type Annotation struct {
	Seq           int64     `json:"seq" doc:"change sequence number: grows with every write, across runs"`
	Annotator     string    `json:"annotator"`
	Domain        string    `json:"domain"`
	SampleID      string    `json:"sample_id"`
	Position      int       `json:"position" doc:"the sample's 0-based place in dataset order"`
	Text          string    `json:"text"`
	Label         string    `json:"label"`
	Status        string    `json:"status" enum:"ok,malformed,error,blocked"`
	RawReply      string    `json:"raw_reply"`
	ParseError    string    `json:"parse_error,omitempty"`
	ValidityError string    `json:"validity_error,omitempty"`
	Error         string    `json:"error,omitempty"`
	Model         string    `json:"model"`
	PromptHash    string    `json:"prompt_hash"`
	LatencyMS     int64     `json:"latency_ms"`
	InputTokens   int       `json:"input_tokens"`
	OutputTokens  int       `json:"output_tokens"`
	Attempt       int       `json:"attempt"`
	CreatedAt     time.Time `json:"created_at"`
}

func annotationOf(r store.Row) Annotation {
	a := r.Annotation
	return Annotation{
		Seq: r.Seq, Annotator: a.Annotator, Domain: a.Domain, SampleID: a.SampleID, Position: r.Position, Text: r.Text,
		Label: a.Label, Status: a.Status, RawReply: a.RawReply, ParseError: a.ParseError, ValidityError: a.ValidityError,
		Error: a.Error, Model: a.Model, PromptHash: a.PromptHash, LatencyMS: a.LatencyMS, InputTokens: a.InputTokens,
		OutputTokens: a.OutputTokens, Attempt: a.Attempt, CreatedAt: a.CreatedAt.UTC(),
	}
}

func annotationsOf(rows []store.Row) []Annotation {
	out := make([]Annotation, len(rows))
	for i, r := range rows {
		out[i] = annotationOf(r)
	}
	return out
}

// FilterQuery selects annotations; the annotations list, statistics and exports share it.
type FilterQuery struct {
	Annotator string    `query:"annotator" maxLength:"64" doc:"one annotator's annotations"`
	Domain    string    `query:"domain" enum:"urgency,therapeutic,intensity,adjunct,modality,redressal," doc:"one domain's annotations"`
	Status    string    `query:"status" enum:"ok,malformed,error,blocked," doc:"one status"`
	Label     string    `query:"label" maxLength:"200" doc:"a label code, e.g. TA-3 (matches \"TA-1, TA-3\")"`
	Q         string    `query:"q" maxLength:"200" doc:"text to find in the sample text or the raw reply, ignoring case"`
	From      time.Time `query:"from" doc:"stored at or after this time (RFC 3339)"`
	To        time.Time `query:"to" doc:"stored before this time (RFC 3339)"`
}

// filter turns q into the store's filter, checking what the schema cannot: that from comes
// before to.
func (q FilterQuery) filter() (store.Filter, error) {
	if !q.From.IsZero() && !q.To.IsZero() && !q.From.Before(q.To) {
		return store.Filter{}, huma.Error422UnprocessableEntity("the time range is empty",
			&huma.ErrorDetail{Location: "query.to", Message: "must be after from", Value: q.To})
	}
	return store.Filter{Annotator: q.Annotator, Domain: q.Domain, Status: q.Status, Label: q.Label, Text: q.Q, From: q.From, To: q.To}, nil
}

type annotationsInput struct {
	FilterQuery
	Limit  int   `query:"limit" minimum:"1" maximum:"500" default:"50" doc:"page size"`
	Before int64 `query:"before" minimum:"0" doc:"the seq of the last annotation of the previous page"`
}

type annotationsOutput struct {
	Body struct {
		Items      []Annotation `json:"items"`
		NextBefore int64        `json:"next_before,omitempty" doc:"pass as before for the next, older page; absent on the last page"`
	}
}

type sampleInput struct {
	ID string `path:"id" maxLength:"512" doc:"the sample's ID"`
}

type sampleOutput struct {
	Body struct {
		Sample struct {
			ID       string `json:"id"`
			Text     string `json:"text"`
			Position int    `json:"position"`
		} `json:"sample"`
		Annotations []Annotation `json:"annotations" doc:"every annotator's annotation of it, by domain then annotator"`
	}
}

// RunStats sums up one run's stored annotations.
type RunStats struct {
	Annotator        string         `json:"annotator"`
	Domain           string         `json:"domain"`
	Total            int            `json:"total"`
	OK               int            `json:"ok"`
	Malformed        int            `json:"malformed"`
	Error            int            `json:"error"`
	Blocked          int            `json:"blocked"`
	MalformedPercent float64        `json:"malformed_percent"`
	Labels           map[string]int `json:"labels" doc:"how often each label was given, among ok annotations"`
	InputTokens      int64          `json:"input_tokens"`
	OutputTokens     int64          `json:"output_tokens"`
	LastAt           time.Time      `json:"last_at"`
}

type statsOutput struct {
	Body struct {
		Runs []RunStats `json:"runs"`
	}
}

func (s *Server) dataRoutes() {
	huma.Register(s.api, huma.Operation{OperationID: "list-annotations", Method: http.MethodGet, Path: "/api/annotations",
		Summary: "Stored annotations, newest first, with filters", Tags: []string{"data"}}, s.annotations)
	huma.Register(s.api, huma.Operation{OperationID: "get-sample", Method: http.MethodGet, Path: "/api/samples/{id}",
		Summary: "One sample with every annotator's labels side by side", Tags: []string{"data"}}, s.sample)
	huma.Register(s.api, huma.Operation{OperationID: "stats", Method: http.MethodGet, Path: "/api/stats",
		Summary: "Totals, malformed share and label distribution per annotator and domain", Tags: []string{"data"}}, s.stats)
}

func (s *Server) annotations(ctx context.Context, in *annotationsInput) (*annotationsOutput, error) {
	f, err := in.filter()
	if err != nil {
		return nil, err
	}
	// One row more than the page tells whether an older page exists (except at the store's
	// largest page, where a full page is taken to have one).
	rows, err := s.o.Store.Annotations(ctx, f, in.Before, in.Limit+1)
	if err != nil {
		return nil, storeError(err)
	}
	more := len(rows) > in.Limit || (len(rows) == in.Limit && in.Limit == store.MaxAnnotationsLimit)
	rows = rows[:min(len(rows), in.Limit)]
	out := &annotationsOutput{}
	out.Body.Items = annotationsOf(rows)
	if more && len(rows) > 0 {
		out.Body.NextBefore = rows[len(rows)-1].Seq
	}
	return out, nil
}

func (s *Server) sample(ctx context.Context, in *sampleInput) (*sampleOutput, error) {
	smp, rows, err := s.o.Store.Sample(ctx, in.ID)
	if errors.Is(err, store.ErrNotFound) {
		return nil, huma.Error404NotFound(fmt.Sprintf("no sample has ID %q", in.ID))
	}
	if err != nil {
		return nil, storeError(err)
	}
	out := &sampleOutput{}
	out.Body.Sample.ID, out.Body.Sample.Text, out.Body.Sample.Position = smp.ID, smp.Text, smp.Position
	out.Body.Annotations = annotationsOf(rows)
	return out, nil
}

type statsInput struct {
	FilterQuery
}

func (s *Server) stats(ctx context.Context, in *statsInput) (*statsOutput, error) {
	f, err := in.filter()
	if err != nil {
		return nil, err
	}
	all, err := s.o.Store.Stats(ctx, f)
	if err != nil {
		return nil, storeError(err)
	}
	out := &statsOutput{}
	out.Body.Runs = make([]RunStats, len(all))
	for i, r := range all {
		c := r.Counts
		rs := RunStats{Annotator: r.Annotator, Domain: r.Domain, Total: c.Total(), OK: c.OK, Malformed: c.Malformed,
			Error: c.Error, Blocked: c.Blocked, Labels: r.Labels, InputTokens: r.InputTokens, OutputTokens: r.OutputTokens, LastAt: r.LastAt}
		if rs.Total > 0 {
			rs.MalformedPercent = float64(rs.Malformed) * 100 / float64(rs.Total)
		}
		out.Body.Runs[i] = rs
	}
	return out, nil
}

// storeError maps a store failure: a filter the store refuses names its field; anything else
// is the server's.
func storeError(err error) error {
	var fe *store.FieldError
	if errors.As(err, &fe) {
		return huma.Error422UnprocessableEntity("the filter is not valid",
			&huma.ErrorDetail{Location: "query." + queryName(fe.Field), Message: fe.Message, Value: fe.Value})
	}
	return huma.Error500InternalServerError("the store failed: " + err.Error())
}

// queryName is the query parameter a store.Filter field comes from.
func queryName(field string) string {
	switch field {
	case "Text":
		return "q"
	default:
		return strings.ToLower(field)
	}
}
