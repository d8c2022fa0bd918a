package server

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/danielgtaylor/huma/v2"

	"github.com/mhannotator/mha/internal/analysis"
	"github.com/mhannotator/mha/internal/export"
	"github.com/mhannotator/mha/internal/labels"
)

func init() { registrations = append(registrations, (*Server).agreementRoutes) }

type agreementInput struct {
	Domain string `query:"domain" enum:"urgency,therapeutic,intensity,adjunct,modality,redressal," doc:"one domain; every domain when left out"`
}

type agreementOutput struct {
	Body struct {
		Domains []analysis.Agreement `json:"domains"`
	}
}

type consensusInput struct {
	Domain string `path:"domain" enum:"urgency,therapeutic,intensity,adjunct,modality,redressal" doc:"the domain"`
	// Disputed, when set, gives only the samples the annotators agree on least.
	Disputed int `query:"disputed" minimum:"0" maximum:"1000" doc:"only the N samples with the least agreement (0: every sample, in dataset order)"`
}

type consensusOutput struct {
	Body struct {
		Domain  labels.Domain     `json:"domain"`
		Samples []analysis.Sample `json:"samples"`
	}
}

func (s *Server) agreementRoutes() {
	tags := []string{"analysis"}
	huma.Register(s.api, huma.Operation{OperationID: "agreement", Method: http.MethodGet, Path: "/api/agreement",
		Summary: "Agreement between annotators per domain: Cohen's, Light's and Fleiss' κ, Krippendorff's α", Tags: tags,
		Description: "Over the samples at least two annotators labelled ok (malformed, error and blocked rows are missing values). " +
			"α ordinal is the headline for urgency and intensity, α MASI for the multi-label domains; redressal gets coverage and list lengths. " +
			"α and Fleiss' κ carry a seeded bootstrap 95% interval (1 000 resamples). An undefined figure has a null value and a reason; " +
			"a domain with nothing to compare has an error instead of a report."}, s.agreement)
	huma.Register(s.api, huma.Operation{OperationID: "consensus", Method: http.MethodGet, Path: "/api/consensus/{domain}",
		Summary: "Consensus label and agreement share of each sample, with every annotator's reply", Tags: tags,
		Description: "Majority of ok labels (ties are reported, never broken); for multi-label domains the codes chosen by at least half. " +
			"Redressal has no consensus (422)."}, s.consensus)
}

func (s *Server) agreement(ctx context.Context, in *agreementInput) (*agreementOutput, error) {
	domains := labels.Domains
	if in.Domain != "" {
		domains = []labels.Domain{labels.Domain(in.Domain)}
	}
	res, err := s.analysis.Agreement(ctx, domains)
	if err != nil {
		return nil, storeError(err)
	}
	out := &agreementOutput{}
	out.Body.Domains = res
	return out, nil
}

func (s *Server) consensus(ctx context.Context, in *consensusInput) (*consensusOutput, error) {
	d := labels.Domain(in.Domain)
	var (
		samples []analysis.Sample
		err     error
	)
	if in.Disputed > 0 {
		samples, err = s.analysis.Disputed(ctx, d, in.Disputed)
	} else {
		samples, err = s.analysis.Consensus(ctx, d)
	}
	switch {
	case analysis.IsFreeText(err):
		return nil, huma.Error422UnprocessableEntity(err.Error(), &huma.ErrorDetail{Location: "path.domain", Message: err.Error(), Value: in.Domain})
	case err != nil:
		return nil, storeError(err)
	}
	out := &consensusOutput{}
	out.Body.Domain, out.Body.Samples = d, samples
	if out.Body.Samples == nil {
		out.Body.Samples = []analysis.Sample{}
	}
	return out, nil
}

type agreementExportInput struct{}

type consensusExportInput struct {
	Domain   string `path:"domain" enum:"urgency,therapeutic,intensity,adjunct,modality,redressal" doc:"the domain"`
	Format   string `query:"format" required:"true" enum:"jsonl,csv,labelstudio" doc:"jsonl or csv: the consensus dataset; labelstudio: Label Studio tasks with each annotator's label as a prediction"`
	Disputed int    `query:"disputed" minimum:"0" maximum:"100000" doc:"only the N samples with the least agreement, least first (0: every sample)"`
}

type labelStudioConfigInput struct {
	Domain string `path:"domain" enum:"urgency,therapeutic,intensity,adjunct,modality,redressal" doc:"the domain"`
}

func (s *Server) agreementExportRoutes() {
	tags := []string{"export"}
	huma.Register(s.api, huma.Operation{OperationID: "export-agreement", Method: http.MethodGet, Path: "/api/agreement/export",
		Summary: "Download the agreement workbook (XLSX)", Tags: tags,
		Description: "A summary sheet (each domain's headline figure), an agreement sheet (every figure with its interval and the κ matrix) " +
			"and a sheet per coded domain with each sample's text, every annotator's label, the consensus and the agreement share.",
		Responses: map[string]*huma.Response{"200": {Description: "the workbook", Content: map[string]*huma.MediaType{contentTypes["xlsx"]: {}}}},
	}, s.exportAgreement)
	huma.Register(s.api, huma.Operation{OperationID: "export-consensus", Method: http.MethodGet, Path: "/api/consensus/{domain}/export",
		Summary: "Download a domain's consensus dataset (JSONL, CSV) or its Label Studio tasks", Tags: tags,
		Description: "The Label Studio tasks fit the labeling config of /api/labelstudio/{domain}/config; import them into a project with that config to review disputed samples.",
		Responses: map[string]*huma.Response{"200": {Description: "the file", Content: map[string]*huma.MediaType{
			contentTypes["jsonl"]: {}, contentTypes["csv"]: {}, "application/json": {}}}},
	}, s.exportConsensus)
	huma.Register(s.api, huma.Operation{OperationID: "labelstudio-config", Method: http.MethodGet, Path: "/api/labelstudio/{domain}/config",
		Summary: "The Label Studio labeling config the exported tasks of a domain fit", Tags: tags,
		Responses: map[string]*huma.Response{"200": {Description: "the labeling config", Content: map[string]*huma.MediaType{"application/xml": {}}}},
	}, s.labelStudioConfig)
}

func init() { registrations = append(registrations, (*Server).agreementExportRoutes) }

func (s *Server) exportAgreement(ctx context.Context, _ *agreementExportInput) (*huma.StreamResponse, error) {
	book, err := export.ReadAgreementBook(ctx, s.analysis)
	if err != nil {
		return nil, storeError(err)
	}
	name := fmt.Sprintf("agreement-%s.xlsx", time.Now().UTC().Format("20060102-150405"))
	return &huma.StreamResponse{Body: func(hc huma.Context) {
		hc.SetHeader("Content-Type", contentTypes["xlsx"])
		hc.SetHeader("Content-Disposition", fmt.Sprintf("attachment; filename=%q", name))
		if err := export.WriteAgreementXLSX(hc.BodyWriter(), book); err != nil {
			s.o.Logger.Error("agreement export failed", "error", err)
		}
	}}, nil
}

func (s *Server) exportConsensus(ctx context.Context, in *consensusExportInput) (*huma.StreamResponse, error) {
	out, err := s.consensus(ctx, &consensusInput{Domain: in.Domain, Disputed: in.Disputed})
	if err != nil {
		return nil, err
	}
	d, samples := out.Body.Domain, out.Body.Samples
	var annotators []string
	if res, err := s.analysis.Agreement(ctx, []labels.Domain{d}); err == nil && res[0].Report != nil {
		annotators = res[0].Report.Annotators
	}
	ext, ctype := in.Format, contentTypes[in.Format]
	if in.Format == "labelstudio" {
		ext, ctype = "json", "application/json"
	}
	kind := "consensus"
	if in.Format == "labelstudio" {
		kind = "labelstudio"
	}
	name := fmt.Sprintf("%s-%s-%s.%s", d, kind, time.Now().UTC().Format("20060102-150405"), ext)
	return &huma.StreamResponse{Body: func(hc huma.Context) {
		hc.SetHeader("Content-Type", ctype)
		hc.SetHeader("Content-Disposition", fmt.Sprintf("attachment; filename=%q", name))
		var err error
		if in.Format == "labelstudio" {
			err = export.WriteLabelStudio(hc.BodyWriter(), d, samples)
		} else {
			err = export.WriteConsensus(hc.BodyWriter(), export.Format(in.Format), d, annotators, samples)
		}
		if err != nil {
			s.o.Logger.Error("consensus export failed", "domain", d, "format", in.Format, "error", err)
		}
	}}, nil
}

func (s *Server) labelStudioConfig(_ context.Context, in *labelStudioConfigInput) (*huma.StreamResponse, error) {
	cfg := export.LabelStudioConfig(labels.Domain(in.Domain))
	return &huma.StreamResponse{Body: func(hc huma.Context) {
		hc.SetHeader("Content-Type", "application/xml; charset=utf-8")
		_, _ = io.WriteString(hc.BodyWriter(), cfg)
	}}, nil
}
