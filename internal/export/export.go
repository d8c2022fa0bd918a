// Package export writes stored annotations, each with its sample text, in formats for analysis
// outside the platform. Texts and replies are written in full, never truncated.
package export

import (
	"bufio"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/mhannotator/mha/internal/store"
)

// Format is an export file format.
type Format string

// Formats Write supports.
const (
	JSONL Format = "jsonl" // one JSON object per line
	CSV   Format = "csv"   // a header row, then one row per annotation
	XLSX  Format = "xlsx"  // an Excel workbook: a summary sheet, then a sheet per domain (see xlsx.go)
)

// formatList names the formats, for messages.
const formatList = "jsonl, csv or xlsx"

// ParseFormat accepts a format name in any case.
func ParseFormat(s string) (Format, error) {
	switch f := Format(strings.ToLower(strings.TrimSpace(s))); f {
	case JSONL, CSV, XLSX:
		return f, nil
	}
	return "", fmt.Errorf("unknown export format %q; use %s", s, formatList)
}

// columns are the CSV and XLSX header and the JSON field names, in the order of row's fields.
var columns = []string{
	"annotator", "domain", "sample_id", "position", "text", "label", "status", "raw_reply",
	"parse_error", "validity_error", "error", "model", "prompt_hash", "latency_ms",
	"input_tokens", "output_tokens", "attempt", "created_at",
}

// row is one exported annotation; json.Encoder keeps the field order.
type row struct {
	Annotator     string `json:"annotator"`
	Domain        string `json:"domain"`
	SampleID      string `json:"sample_id"`
	Position      int    `json:"position"`
	Text          string `json:"text"`
	Label         string `json:"label"`
	Status        string `json:"status"`
	RawReply      string `json:"raw_reply"`
	ParseError    string `json:"parse_error"`
	ValidityError string `json:"validity_error"`
	Error         string `json:"error"`
	Model         string `json:"model"`
	PromptHash    string `json:"prompt_hash"`
	LatencyMS     int64  `json:"latency_ms"`
	InputTokens   int    `json:"input_tokens"`
	OutputTokens  int    `json:"output_tokens"`
	Attempt       int    `json:"attempt"`
	CreatedAt     string `json:"created_at"`
}

func newRow(r store.ExportRow) row {
	return row{
		Annotator:     r.Annotator,
		Domain:        r.Domain,
		SampleID:      r.SampleID,
		Position:      r.Position,
		Text:          r.Text,
		Label:         r.Label,
		Status:        r.Status,
		RawReply:      r.RawReply,
		ParseError:    r.ParseError,
		ValidityError: r.ValidityError,
		Error:         r.Error,
		Model:         r.Model,
		PromptHash:    r.PromptHash,
		LatencyMS:     r.LatencyMS,
		InputTokens:   r.InputTokens,
		OutputTokens:  r.OutputTokens,
		Attempt:       r.Attempt,
		CreatedAt:     r.CreatedAt.UTC().Format(time.RFC3339Nano),
	}
}

// record is r as CSV fields, in the order of columns.
func (r row) record() []string {
	return []string{
		r.Annotator, r.Domain, r.SampleID, strconv.Itoa(r.Position), r.Text, r.Label, r.Status,
		r.RawReply, r.ParseError, r.ValidityError, r.Error, r.Model, r.PromptHash,
		strconv.FormatInt(r.LatencyMS, 10), strconv.Itoa(r.InputTokens),
		strconv.Itoa(r.OutputTokens), strconv.Itoa(r.Attempt), r.CreatedAt,
	}
}

// Write writes the annotations that f selects to w in format, ordered by annotator, domain and
// dataset position, and returns how many it wrote. An empty selection writes only the CSV
// header, nothing in JSONL, and in XLSX a workbook with only the summary sheet.
//
// XLSX reads the selection (again, when a value needs more cells than an earlier read showed:
// see xlsx.go) before it writes anything to w; on an error it reports 0 annotations.
func Write(ctx context.Context, s store.Store, f store.Filter, format Format, w io.Writer) (int, error) {
	if format == XLSX {
		n, err := writeXLSX(ctx, s, f, w)
		if err != nil {
			return n, fmt.Errorf("export: %w", err)
		}
		return n, nil
	}
	var (
		write func(row) error
		flush func() error
	)
	switch format {
	case JSONL:
		bw := bufio.NewWriter(w)
		enc := json.NewEncoder(bw)
		enc.SetEscapeHTML(false) // texts are data, not HTML: keep <, > and & readable
		write = func(r row) error { return enc.Encode(r) }
		flush = bw.Flush
	case CSV:
		cw := csv.NewWriter(w)
		if err := cw.Write(columns); err != nil {
			return 0, fmt.Errorf("export: %w", err)
		}
		write = func(r row) error { return cw.Write(r.record()) }
		flush = func() error {
			cw.Flush()
			return cw.Error()
		}
	default:
		return 0, fmt.Errorf("export: unknown format %q; use %s", format, formatList)
	}

	n := 0
	err := s.Export(ctx, f, func(r store.ExportRow) error {
		// The store may not look at ctx between rows; a cancelled export must stop.
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := write(newRow(r)); err != nil {
			return err
		}
		n++
		return nil
	})
	if err == nil {
		err = flush()
	}
	if err != nil {
		return n, fmt.Errorf("export: %w", err)
	}
	return n, nil
}
