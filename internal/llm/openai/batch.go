package openai

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/mhannotator/mha/internal/config"
	"github.com/mhannotator/mha/internal/llm"
	"github.com/mhannotator/mha/internal/llm/httpx"
)

// Batch mode (llm.Batcher): OpenAI's Batch API over /v1/chat/completions. The requests go up as
// a JSONL file (POST /v1/files, purpose batch), a batch is made of it (POST /v1/batches) with
// its name in the metadata, and its results come back as an output file and an error file,
// whose lines are matched to the requests by custom_id. docs/batch-apis.md records what this
// relies on and where it was checked.
//
// A line's body is the one Complete sends, not streamed, with the output limit under the name
// the model is known to take; its answer is read by the code that reads a call's reply and
// classified by the classifier of a call's errors.

var _ llm.Batcher = (*Client)(nil)

const (
	// batchEndpoint is the endpoint of every batch, and the url of every line.
	batchEndpoint = "/v1/chat/completions"
	// Limits of a batch: requests, input file bytes, and the length of a metadata value (the
	// batch's name).
	maxBatchRequests = 50_000
	maxBatchFile     = 200 << 20
	maxMetadataValue = 512
	// The metadata keys: the batch's name, for FindBatch, and the model of its lines, which
	// BatchResults needs to learn that a model refuses max_tokens.
	metaName, metaModel = "name", "model"
	// FindBatch reads the listing listPageLimit batches at a time, at most maxListPages pages.
	listPageLimit = 100
	maxListPages  = 100
	// transferTimeout bounds the upload of an input file and the download of a result file,
	// which can be far larger than a call.
	transferTimeout = 10 * time.Minute
)

// The JSON of the Batch and Files APIs.
type (
	batchInputLine struct {
		CustomID string  `json:"custom_id"`
		Method   string  `json:"method"`
		URL      string  `json:"url"`
		Body     request `json:"body"`
	}
	batchCreate struct {
		InputFileID      string            `json:"input_file_id"`
		Endpoint         string            `json:"endpoint"`
		CompletionWindow string            `json:"completion_window"`
		Metadata         map[string]string `json:"metadata"`
	}
	batchObject struct {
		ID            string `json:"id"`
		Status        string `json:"status"`
		OutputFileID  string `json:"output_file_id"`
		ErrorFileID   string `json:"error_file_id"`
		CreatedAt     int64  `json:"created_at"`
		RequestCounts struct {
			Total     int `json:"total"`
			Completed int `json:"completed"`
			Failed    int `json:"failed"`
		} `json:"request_counts"`
		Metadata map[string]string `json:"metadata"`
		Errors   *struct {
			Data []struct {
				Code    string `json:"code"`
				Message string `json:"message"`
				Line    *int   `json:"line"`
			} `json:"data"`
		} `json:"errors"`
	}
	batchList struct {
		Data    []batchObject `json:"data"`
		HasMore bool          `json:"has_more"`
		LastID  string        `json:"last_id"`
	}
	// batchOutputLine is a line of an output or error file: a response with its HTTP status and
	// body, or an error for a request that got no response.
	batchOutputLine struct {
		CustomID string `json:"custom_id"`
		Response *struct {
			StatusCode int             `json:"status_code"`
			Body       json.RawMessage `json:"body"`
		} `json:"response"`
		Error *struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
)

// batchStates maps the API's statuses to the shared states.
var batchStates = map[string]llm.BatchState{
	"validating": llm.BatchPending, "in_progress": llm.BatchRunning, "finalizing": llm.BatchRunning,
	"completed": llm.BatchSucceeded, "failed": llm.BatchFailed, "expired": llm.BatchExpired,
	"cancelling": llm.BatchCancelling, "cancelled": llm.BatchCancelled,
}

// unrun are the codes of an error line for a request that never ran, because its batch expired
// or was cancelled: it has no result, and the caller queues it again.
var unrun = map[string]bool{"batch_expired": true, "batch_cancelled": true}

// SubmitBatch uploads reqs as a JSONL file and creates a batch of it, with name and the model in
// its metadata. All reqs must name the same model, and their keys must be distinct and not
// empty. A failure is an *llm.Error, classified as a call's.
func (c *Client) SubmitBatch(ctx context.Context, name string, reqs []llm.BatchRequest) (llm.Batch, error) {
	model, err := c.batchModel(name, reqs)
	if err != nil {
		return llm.Batch{}, err
	}
	_, completionTokens := c.completionTokens.Load(model)
	var file bytes.Buffer
	enc := json.NewEncoder(&file)
	for _, r := range reqs {
		line := batchInputLine{CustomID: r.Key, Method: http.MethodPost, URL: batchEndpoint,
			Body: c.body(model, r.Request.Prompt, completionTokens)}
		if err := enc.Encode(line); err != nil {
			return llm.Batch{}, &llm.Error{Kind: llm.BadRequest, Provider: config.ProviderOpenAI, Err: err}
		}
	}
	if file.Len() > maxBatchFile {
		return llm.Batch{}, &llm.Error{Kind: llm.BadRequest, Provider: config.ProviderOpenAI,
			Message: fmt.Sprintf("the batch file is %d bytes, over the API's %d: split the batch", file.Len(), maxBatchFile)}
	}
	fileID, err := c.uploadBatchFile(ctx, name, file.Bytes())
	if err != nil {
		return llm.Batch{}, fmt.Errorf("uploading the requests of batch %q: %w", name, err)
	}
	var b *batchObject
	err = httpx.Do(ctx, c.http, httpx.Exchange[apiError]{
		URL:    c.base() + "/batches",
		Header: c.authHeader(),
		Body: batchCreate{InputFileID: fileID, Endpoint: batchEndpoint, CompletionWindow: "24h",
			Metadata: map[string]string{metaName: name, metaModel: model}},
		Refused: c.classify,
		Whole: func(data []byte) (err error) {
			b, err = httpx.Decode[batchObject](c.http, data)
			return err
		},
	})
	if err != nil {
		return llm.Batch{}, err
	}
	return c.toBatch(b), nil
}

// batchModel checks reqs and returns the model they share: the metadata names one model.
func (c *Client) batchModel(name string, reqs []llm.BatchRequest) (string, error) {
	bad := func(msg string) (string, error) {
		return "", &llm.Error{Kind: llm.BadRequest, Provider: config.ProviderOpenAI, Message: msg}
	}
	switch {
	case name == "":
		return bad("a batch needs a name")
	case len(name) > maxMetadataValue:
		return bad(fmt.Sprintf("a batch name is at most %d bytes (it goes in the metadata)", maxMetadataValue))
	case len(reqs) == 0:
		return bad("a batch needs at least one request")
	case len(reqs) > maxBatchRequests:
		return bad(fmt.Sprintf("a batch takes at most %d requests, not %d", maxBatchRequests, len(reqs)))
	}
	model := cmp.Or(reqs[0].Request.Model, c.model)
	seen := make(map[string]bool, len(reqs))
	for _, r := range reqs {
		switch {
		case r.Key == "":
			return bad("every request of a batch needs a key")
		case seen[r.Key]:
			return bad(fmt.Sprintf("key %q appears twice in the batch", r.Key))
		case cmp.Or(r.Request.Model, c.model) != model:
			return bad(fmt.Sprintf("a batch takes one model: %q and %q", model, cmp.Or(r.Request.Model, c.model)))
		}
		seen[r.Key] = true
	}
	return model, nil
}

// uploadBatchFile stores data as a batch input file and returns its id.
func (c *Client) uploadBatchFile(ctx context.Context, name string, data []byte) (string, error) {
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	_ = mw.WriteField("purpose", "batch")
	fw, _ := mw.CreateFormFile("file", fileName(name)+".jsonl")
	_, _ = fw.Write(data)
	_ = mw.Close()
	var id string
	err := c.send(ctx, http.MethodPost, c.base()+"/files", mw.FormDataContentType(), body.Bytes(), transferTimeout, func(r io.Reader) error {
		var f struct {
			ID string `json:"id"`
		}
		if err := json.NewDecoder(r).Decode(&f); err != nil {
			return err
		}
		if id = f.ID; id == "" {
			return &llm.Error{Kind: llm.Unavailable, Provider: config.ProviderOpenAI, StatusCode: http.StatusOK,
				Message: "the uploaded file has no id"}
		}
		return nil
	})
	return id, err
}

// fileName makes name safe as a file name: letters, digits, '.', '-' and '_'.
func fileName(name string) string {
	return strings.Map(func(r rune) rune {
		if r < 128 && (r == '.' || r == '-' || r == '_' || ('0' <= r && r <= '9') || ('a' <= r && r <= 'z') || ('A' <= r && r <= 'Z')) {
			return r
		}
		return '_'
	}, name)
}

// FindBatch returns the batch whose metadata names it name, from the listing of the key's
// batches, which the API orders newest first: the first match is the newest. A listing longer
// than it reads (maxListPages pages) without a match is an error rather than "none": a wrong
// "none" would pay for the batch twice.
func (c *Client) FindBatch(ctx context.Context, name string) (llm.Batch, bool, error) {
	after := ""
	for range maxListPages {
		u := c.base() + "/batches?limit=" + strconv.Itoa(listPageLimit)
		if after != "" {
			u += "&after=" + url.QueryEscape(after)
		}
		var list batchList
		err := c.send(ctx, http.MethodGet, u, "", nil, c.http.RequestTimeout, func(r io.Reader) error {
			return json.NewDecoder(r).Decode(&list)
		})
		if err != nil {
			return llm.Batch{}, false, err
		}
		for i := range list.Data {
			if list.Data[i].Metadata[metaName] == name {
				return c.toBatch(&list.Data[i]), true, nil
			}
		}
		if !list.HasMore || len(list.Data) == 0 {
			return llm.Batch{}, false, nil
		}
		after = cmp.Or(list.LastID, list.Data[len(list.Data)-1].ID)
	}
	return llm.Batch{}, false, &llm.Error{Kind: llm.Unavailable, Provider: config.ProviderOpenAI,
		Message: fmt.Sprintf("finding batch %q: the listing has more than %d pages", name, maxListPages)}
}

// GetBatch reads batch id ("batch_…").
func (c *Client) GetBatch(ctx context.Context, id string) (llm.Batch, error) {
	b, err := c.getBatch(ctx, id)
	if err != nil {
		return llm.Batch{}, err
	}
	return c.toBatch(b), nil
}

func (c *Client) getBatch(ctx context.Context, id string) (*batchObject, error) {
	var b batchObject
	err := c.send(ctx, http.MethodGet, c.base()+"/batches/"+url.PathEscape(id), "", nil, c.http.RequestTimeout, func(r io.Reader) error {
		return json.NewDecoder(r).Decode(&b)
	})
	if err != nil {
		return nil, err
	}
	return &b, nil
}

// BatchResults reads b's output file and error file and returns a result for each line that
// has one, matched by custom_id (the files keep no order). A request that never ran (its batch
// expired or was cancelled first) has no result and is left out. So is a line refused because
// its model takes max_completion_tokens, not max_tokens: the client learns it, as a call does,
// and the request sent again carries the limit under the name the model takes.
func (c *Client) BatchResults(ctx context.Context, b llm.Batch) ([]llm.BatchResult, error) {
	obj, err := c.getBatch(ctx, b.ID)
	if err != nil {
		return nil, err
	}
	model := cmp.Or(obj.Metadata[metaModel], c.model)
	var results []llm.BatchResult
	seen := map[string]bool{}
	for _, f := range []struct{ id, what string }{{obj.OutputFileID, "output"}, {obj.ErrorFileID, "error"}} {
		if f.id == "" {
			continue
		}
		err := c.send(ctx, http.MethodGet, c.base()+"/files/"+url.PathEscape(f.id)+"/content", "", nil, transferTimeout, func(r io.Reader) error {
			dec := json.NewDecoder(r)
			for {
				var line batchOutputLine
				if err := dec.Decode(&line); errors.Is(err, io.EOF) {
					return nil
				} else if err != nil {
					return err
				}
				if res, ok := c.lineOutcome(&line, model); ok && !seen[res.Key] {
					seen[res.Key] = true
					results = append(results, res)
				}
			}
		})
		if err != nil {
			return nil, fmt.Errorf("reading the %s file of batch %s: %w", f.what, b.ID, err)
		}
	}
	return results, nil
}

// lineOutcome reads one line as a call's reply is read: a 200 through the same parser, another
// status and its error object through the same classifier. It is false for a line without a
// result (see BatchResults).
func (c *Client) lineOutcome(line *batchOutputLine, model string) (llm.BatchResult, bool) {
	res := llm.BatchResult{Key: line.CustomID}
	switch {
	case res.Key == "":
		return res, false
	case line.Response != nil && line.Response.StatusCode == http.StatusOK:
		rep := reply{done: true}
		if err := c.take(line.Response.Body, false, &rep); err != nil {
			res.Err = err
		} else {
			res.Response, res.Err = c.result(&rep, model)
		}
	case line.Response != nil:
		res.Err = c.refused(line.Response.StatusCode, nil, line.Response.Body)
		if c.maxTokens > 0 && errors.Is(res.Err, errMaxTokensRefused) {
			c.completionTokens.Store(model, struct{}{})
			return res, false
		}
	case line.Error != nil && unrun[line.Error.Code]:
		return res, false
	case line.Error != nil:
		code, _ := json.Marshal(line.Error.Code)
		res.Err = c.classify(0, nil, &apiError{Message: line.Error.Message, Code: code}, "")
	default:
		return res, false
	}
	return res, true
}

// CancelBatch asks the API to cancel batch id. A batch that has ended already counts as
// cancelled: the API refuses the cancel, and the batch's results stand.
func (c *Client) CancelBatch(ctx context.Context, id string) error {
	err := httpx.Do(ctx, c.http, httpx.Exchange[apiError]{
		URL:     c.base() + "/batches/" + url.PathEscape(id) + "/cancel",
		Header:  c.authHeader(),
		Body:    struct{}{},
		Refused: c.classify,
		Whole:   func([]byte) error { return nil },
	})
	if k, _ := llm.KindOf(err); k == llm.BadRequest {
		if b, gerr := c.GetBatch(ctx, id); gerr == nil && b.State.Final() {
			return nil
		}
	}
	return httpx.NotFound(err)
}

// toBatch is b in the shared terms.
func (c *Client) toBatch(b *batchObject) llm.Batch {
	state, known := batchStates[b.Status]
	if !known {
		state = llm.BatchPending
	}
	out := llm.Batch{
		ID: b.ID, Name: b.Metadata[metaName], State: state, ProviderState: b.Status,
		Total: b.RequestCounts.Total, Completed: b.RequestCounts.Completed, Failed: b.RequestCounts.Failed,
	}
	if b.CreatedAt > 0 {
		out.CreatedAt = time.Unix(b.CreatedAt, 0)
	}
	if b.Errors != nil {
		var msgs []string
		for _, e := range b.Errors.Data {
			msg := e.Code + ": " + e.Message
			if e.Line != nil {
				msg += fmt.Sprintf(" (line %d)", *e.Line)
			}
			msgs = append(msgs, msg)
		}
		out.Error = httpx.Redact(strings.Join(msgs, "; "), c.http.Key.Reveal())
	}
	return out
}

// base is the API's base URL, ending in /v1.
func (c *Client) base() string { return strings.TrimSuffix(c.endpoint, "/chat/completions") }

func (c *Client) authHeader() http.Header {
	h := http.Header{}
	h.Set("Authorization", "Bearer "+c.http.Key.Reveal())
	return h
}

// send makes one request of the Batch or Files API within timeout, and hands a 200 reply's
// body to take (see httpx.Client.Send).
func (c *Client) send(ctx context.Context, method, url, contentType string, body []byte, timeout time.Duration, take func(io.Reader) error) error {
	h := c.authHeader()
	if contentType != "" {
		h.Set("Content-Type", contentType)
	}
	return c.http.Send(ctx, method, url, h, body, timeout, c.refused, take)
}

// refused classifies a reply whose status is not 200, as httpx.Do does for a call.
func (c *Client) refused(status int, h http.Header, data []byte) error {
	if e := httpx.ErrorObject[apiError](data); e != nil {
		return c.classify(status, h, e, "")
	}
	return c.classify(status, h, nil, httpx.Snippet(data, c.http.Key.Reveal()))
}
