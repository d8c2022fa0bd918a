package gemini

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/mhannotator/mha/internal/config"
	"github.com/mhannotator/mha/internal/llm"
	"github.com/mhannotator/mha/internal/llm/httpx"
)

// Batch mode (llm.Batcher): models.batchGenerateContent, the batches resource (a long-running
// operation whose metadata is the GenerateContentBatch), and the File API for inputs too large
// to send inline. docs/batch-apis.md records what this relies on and where it was checked.
//
// A line's request is the one Complete sends, and its answer is read by the code that reads a
// call's reply and classified by the classifier of a call's errors, so a batch and a call of
// the same prompt end the same way.

var _ llm.Batcher = (*Client)(nil)

// A batch goes inline when it has at most maxInlineRequests lines and its create request holds
// at most maxInlineBytes; a larger one goes as a JSONL file through the File API, uploaded in
// chunks of uploadChunk bytes (the official SDKs' size). The API takes inline batches up to
// 20 MB; half that leaves a wide margin. FindBatch reads the listing listPageSize batches at a
// time. Variables, so that tests can lower them.
var (
	maxInlineRequests = 1000
	maxInlineBytes    = 10 << 20
	uploadChunk       = 8 << 20
	listPageSize      = 100
)

const (
	// maxListPages bounds FindBatch's walk through the listing.
	maxListPages = 200
	// transferTimeout bounds the download of a responses file, which can be far larger than
	// a call's reply.
	transferTimeout = 10 * time.Minute
	// grpcCancelled is the code of a line cancelled before it ran: it has no result.
	grpcCancelled = 1
)

// The JSON of the batch API.
type (
	batchCreate struct {
		Batch batchSpec `json:"batch"`
	}
	batchSpec struct {
		DisplayName string      `json:"displayName"`
		InputConfig inputConfig `json:"inputConfig"`
	}
	// inputConfig holds one of FileName and Requests.
	inputConfig struct {
		FileName string           `json:"fileName,omitempty"`
		Requests *inlinedRequests `json:"requests,omitempty"`
	}
	inlinedRequests struct {
		Requests []inlinedRequest `json:"requests"`
	}
	inlinedRequest struct {
		Request  request      `json:"request"`
		Metadata lineMetadata `json:"metadata"`
	}
	// lineMetadata is what an inline request carries along; the API returns it with the
	// request's response.
	lineMetadata struct {
		Key string `json:"key"`
	}
	// fileLine is one line of an input file.
	fileLine struct {
		Key     string  `json:"key"`
		Request request `json:"request"`
	}

	// operation is a batch as batchGenerateContent, batches.get and batches.list return it.
	// Done ends it with Response (its output) or Error (for a failed, cancelled or expired
	// batch, whose answered lines, if any, are in Metadata.Output).
	operation struct {
		Name     string         `json:"name"`
		Metadata *batchResource `json:"metadata"`
		Done     bool           `json:"done"`
		Error    *apiError      `json:"error"`
		Response *batchOutput   `json:"response"`
	}
	// batchResource is a GenerateContentBatch.
	batchResource struct {
		Model       string       `json:"model"`
		DisplayName string       `json:"displayName"`
		State       string       `json:"state"`
		CreateTime  string       `json:"createTime"`
		BatchStats  batchStats   `json:"batchStats"`
		Output      *batchOutput `json:"output"`
	}
	batchStats struct {
		RequestCount           int64s `json:"requestCount"`
		SuccessfulRequestCount int64s `json:"successfulRequestCount"`
		FailedRequestCount     int64s `json:"failedRequestCount"`
	}
	// batchOutput holds one of ResponsesFile and InlinedResponses.
	batchOutput struct {
		ResponsesFile    string `json:"responsesFile"`
		InlinedResponses *struct {
			InlinedResponses []lineResult `json:"inlinedResponses"`
		} `json:"inlinedResponses"`
	}
	// lineResult is one line's outcome: an inline response (keyed by its metadata) or a line
	// of a responses file (keyed by key), with a GenerateContentResponse or an error.
	lineResult struct {
		Key      string          `json:"key"`
		Metadata *lineMetadata   `json:"metadata"`
		Response json.RawMessage `json:"response"`
		Error    *apiError       `json:"error"`
	}
	batchList struct {
		Operations    []operation `json:"operations"`
		NextPageToken string      `json:"nextPageToken"`
	}
)

// int64s is an int64 field, which proto3 JSON writes as a string.
type int64s int64

func (n *int64s) UnmarshalJSON(b []byte) error {
	s := strings.Trim(string(b), `"`)
	if s == "" || s == "null" {
		*n = 0
		return nil
	}
	v, err := strconv.ParseInt(s, 10, 64)
	*n = int64s(v)
	return err
}

// batchStates maps the REST states, and the SDKs' names for them, to the shared ones.
var batchStates = map[string]llm.BatchState{
	"BATCH_STATE_PENDING": llm.BatchPending, "BATCH_STATE_RUNNING": llm.BatchRunning,
	"BATCH_STATE_SUCCEEDED": llm.BatchSucceeded, "BATCH_STATE_FAILED": llm.BatchFailed,
	"BATCH_STATE_CANCELLED": llm.BatchCancelled, "BATCH_STATE_EXPIRED": llm.BatchExpired,
	"JOB_STATE_PENDING": llm.BatchPending, "JOB_STATE_QUEUED": llm.BatchPending, "JOB_STATE_RUNNING": llm.BatchRunning,
	"JOB_STATE_SUCCEEDED": llm.BatchSucceeded, "JOB_STATE_FAILED": llm.BatchFailed,
	"JOB_STATE_CANCELLING": llm.BatchCancelling, "JOB_STATE_CANCELLED": llm.BatchCancelled,
	"JOB_STATE_EXPIRED": llm.BatchExpired,
}

// grpcHTTP maps the canonical codes a batch reports a line's error with to the HTTP statuses
// the classifier knows them by.
var grpcHTTP = map[int]int{
	1: 499, 2: 500, 3: 400, 4: 504, 5: 404, 6: 409, 7: 403, 8: 429,
	9: 400, 10: 409, 11: 400, 12: 501, 13: 500, 14: 503, 15: 500, 16: 401,
}

// httpStatus is the HTTP status of a line error's code. A code of 100 or more already is one.
func httpStatus(code int) int {
	if code >= 100 {
		return code
	}
	if s, ok := grpcHTTP[code]; ok {
		return s
	}
	return http.StatusInternalServerError
}

// SubmitBatch creates a batch of reqs named name (its display name), inline when it is small
// and through an uploaded JSONL file otherwise. All reqs must name the same model, and their
// keys must be distinct and not empty. A failure is an *llm.Error, classified as a call's.
func (c *Client) SubmitBatch(ctx context.Context, name string, reqs []llm.BatchRequest) (llm.Batch, error) {
	model, err := c.batchModel(name, reqs)
	if err != nil {
		return llm.Batch{}, err
	}
	spec := batchSpec{DisplayName: name}
	var body []byte
	if len(reqs) <= maxInlineRequests {
		lines := make([]inlinedRequest, len(reqs))
		for i, r := range reqs {
			lines[i] = inlinedRequest{Request: c.newRequest(r.Request), Metadata: lineMetadata{Key: r.Key}}
		}
		spec.InputConfig.Requests = &inlinedRequests{Requests: lines}
		if body, err = json.Marshal(batchCreate{Batch: spec}); err != nil {
			return llm.Batch{}, &llm.Error{Kind: llm.BadRequest, Provider: config.ProviderGemini, Err: err}
		}
	}
	if body == nil || len(body) > maxInlineBytes {
		var file bytes.Buffer
		enc := json.NewEncoder(&file)
		for _, r := range reqs {
			if err := enc.Encode(fileLine{Key: r.Key, Request: c.newRequest(r.Request)}); err != nil {
				return llm.Batch{}, &llm.Error{Kind: llm.BadRequest, Provider: config.ProviderGemini, Err: err}
			}
		}
		fileName, err := c.upload(ctx, name+".jsonl", file.Bytes())
		if err != nil {
			return llm.Batch{}, fmt.Errorf("uploading the requests of batch %q: %w", name, err)
		}
		spec.InputConfig = inputConfig{FileName: fileName}
		body = nil
	}
	var op *operation
	err = httpx.Do(ctx, c.http, httpx.Exchange[apiError]{
		URL:     c.base + "/v1beta/models/" + url.PathEscape(model) + ":batchGenerateContent",
		Header:  c.keyHeader(),
		Body:    createBody(body, spec),
		Refused: c.classify,
		Whole: func(data []byte) (err error) {
			op, err = c.decodeOperation(data)
			return err
		},
	})
	if err != nil {
		return llm.Batch{}, err
	}
	return c.toBatch(op), nil
}

// createBody is the create request: body when it is already encoded, else spec.
func createBody(body []byte, spec batchSpec) any {
	if body != nil {
		return json.RawMessage(body)
	}
	return batchCreate{Batch: spec}
}

// batchModel checks reqs and returns the model they share: a batch is created for one model,
// which the create request names in its path.
func (c *Client) batchModel(name string, reqs []llm.BatchRequest) (string, error) {
	bad := func(msg string) (string, error) {
		return "", &llm.Error{Kind: llm.BadRequest, Provider: config.ProviderGemini, Message: msg}
	}
	if name == "" {
		return bad("a batch needs a name")
	}
	if len(reqs) == 0 {
		return bad("a batch needs at least one request")
	}
	model := c.modelOf(reqs[0].Request)
	seen := make(map[string]bool, len(reqs))
	for _, r := range reqs {
		switch {
		case r.Key == "":
			return bad("every request of a batch needs a key")
		case seen[r.Key]:
			return bad(fmt.Sprintf("key %q appears twice in the batch", r.Key))
		case c.modelOf(r.Request) != model:
			return bad(fmt.Sprintf("a batch takes one model: %q and %q", model, c.modelOf(r.Request)))
		}
		seen[r.Key] = true
	}
	return model, nil
}

// FindBatch returns the batch whose display name is name, the newest if there are several,
// from the listing of the key's batches. A listing longer than it reads (maxListPages pages)
// without a match is an error rather than "none": a wrong "none" would pay for the batch twice.
func (c *Client) FindBatch(ctx context.Context, name string) (llm.Batch, bool, error) {
	var (
		found *llm.Batch
		token string
	)
	for range maxListPages {
		u := c.base + "/v1beta/batches?pageSize=" + strconv.Itoa(listPageSize)
		if token != "" {
			u += "&pageToken=" + url.QueryEscape(token)
		}
		var list batchList
		err := c.get(ctx, u, c.http.RequestTimeout, func(r io.Reader) error { return json.NewDecoder(r).Decode(&list) })
		if err != nil {
			return llm.Batch{}, false, err
		}
		for i := range list.Operations {
			op := &list.Operations[i]
			if op.Metadata == nil || op.Metadata.DisplayName != name {
				continue
			}
			if b := c.toBatch(op); found == nil || b.CreatedAt.After(found.CreatedAt) {
				found = &b
			}
		}
		if token = list.NextPageToken; token == "" {
			if found == nil {
				return llm.Batch{}, false, nil
			}
			return *found, true, nil
		}
	}
	if found != nil {
		return *found, true, nil
	}
	return llm.Batch{}, false, &llm.Error{Kind: llm.Unavailable, Provider: config.ProviderGemini,
		Message: fmt.Sprintf("finding batch %q: the listing has more than %d pages", name, maxListPages)}
}

// GetBatch reads batch id ("batches/…").
func (c *Client) GetBatch(ctx context.Context, id string) (llm.Batch, error) {
	op, err := c.getOperation(ctx, id)
	if err != nil {
		return llm.Batch{}, err
	}
	return c.toBatch(op), nil
}

// BatchResults reads the answers of b's lines: inline responses from the batch itself, or the
// lines of its responses file, matched to their requests by key. A line cancelled before it ran
// has no result and is left out.
func (c *Client) BatchResults(ctx context.Context, b llm.Batch) ([]llm.BatchResult, error) {
	op, err := c.getOperation(ctx, b.ID)
	if err != nil {
		return nil, err
	}
	model := strings.TrimPrefix(op.Metadata.Model, "models/")
	out := op.Response
	if out == nil || (out.ResponsesFile == "" && out.InlinedResponses == nil) {
		out = op.Metadata.Output
	}
	var results []llm.BatchResult
	add := func(line *lineResult) {
		if r, ok := c.lineOutcome(line, model); ok {
			results = append(results, r)
		}
	}
	switch {
	case out == nil:
	case out.ResponsesFile != "":
		file := "files/" + url.PathEscape(strings.TrimPrefix(out.ResponsesFile, "files/"))
		err = c.get(ctx, c.base+"/download/v1beta/"+file+":download?alt=media", transferTimeout, func(r io.Reader) error {
			dec := json.NewDecoder(r)
			for {
				var line lineResult
				if err := dec.Decode(&line); errors.Is(err, io.EOF) {
					return nil
				} else if err != nil {
					return err
				}
				add(&line)
			}
		})
		if err != nil {
			return nil, fmt.Errorf("reading the responses of batch %s: %w", b.ID, err)
		}
	case out.InlinedResponses != nil:
		for i := range out.InlinedResponses.InlinedResponses {
			add(&out.InlinedResponses.InlinedResponses[i])
		}
	}
	return results, nil
}

// lineOutcome reads one line as a call's reply is read: a response through the same parser,
// an error through the same classifier. It is false for a line without a result: one without a
// key to match it by, or cancelled before it ran.
func (c *Client) lineOutcome(line *lineResult, model string) (llm.BatchResult, bool) {
	res := llm.BatchResult{Key: line.Key}
	if res.Key == "" && line.Metadata != nil {
		res.Key = line.Metadata.Key
	}
	switch {
	case res.Key == "":
		return res, false
	case line.Error != nil && line.Error.Code == grpcCancelled:
		return res, false
	case line.Error != nil:
		res.Err = c.classify(httpStatus(line.Error.Code), nil, line.Error, "")
	case len(line.Response) > 0 && !bytes.Equal(line.Response, []byte("null")):
		var r reply
		if err := c.take(line.Response, &r); err != nil {
			res.Err = err
		} else {
			res.Response, res.Err = c.result(&r, model)
		}
	default:
		return res, false
	}
	return res, true
}

// CancelBatch asks the API to cancel batch id. A batch that has ended already counts as
// cancelled: the API refuses the cancel, and the batch's results stand.
func (c *Client) CancelBatch(ctx context.Context, id string) error {
	err := httpx.Do(ctx, c.http, httpx.Exchange[apiError]{
		URL:     c.base + "/v1beta/" + batchPath(id) + ":cancel",
		Header:  c.keyHeader(),
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

// getOperation reads batch id.
func (c *Client) getOperation(ctx context.Context, id string) (*operation, error) {
	var op *operation
	err := c.get(ctx, c.base+"/v1beta/"+batchPath(id), c.http.RequestTimeout, func(r io.Reader) error {
		data, err := io.ReadAll(r)
		if err != nil {
			return err
		}
		op, err = c.decodeOperation(data)
		return err
	})
	return op, err
}

// decodeOperation reads a batch: an operation, or (tolerated) the GenerateContentBatch itself.
func (c *Client) decodeOperation(data []byte) (*operation, error) {
	op, err := httpx.Decode[operation](c.http, data)
	if err != nil {
		return nil, err
	}
	if op.Metadata == nil {
		if op.Metadata, err = httpx.Decode[batchResource](c.http, data); err != nil {
			return nil, err
		}
	}
	return op, nil
}

// toBatch is op in the shared terms.
func (c *Client) toBatch(op *operation) llm.Batch {
	m := op.Metadata
	state, known := batchStates[m.State]
	if !known {
		switch {
		case op.Done && op.Error != nil:
			state = llm.BatchFailed
		case op.Done:
			state = llm.BatchSucceeded
		default:
			state = llm.BatchPending
		}
	}
	b := llm.Batch{
		ID: op.Name, Name: m.DisplayName, State: state, ProviderState: m.State,
		Total: int(m.BatchStats.RequestCount), Completed: int(m.BatchStats.SuccessfulRequestCount),
		Failed: int(m.BatchStats.FailedRequestCount),
	}
	b.CreatedAt, _ = time.Parse(time.RFC3339Nano, m.CreateTime)
	if op.Error != nil && (state == llm.BatchFailed || state == llm.BatchExpired) {
		b.Error = httpx.Redact(op.Error.Message, c.http.Key.Reveal())
	}
	return b
}

// batchPath is the path of batch id under /v1beta/, with or without its "batches/" prefix.
func batchPath(id string) string {
	return "batches/" + url.PathEscape(strings.TrimPrefix(id, "batches/"))
}

func (c *Client) keyHeader() http.Header {
	h := http.Header{}
	h.Set("x-goog-api-key", c.http.Key.Reveal())
	return h
}

// upload stores data through the File API's resumable protocol and returns the file's name
// ("files/…"): a start request, whose reply names the upload URL, then the data in chunks of
// uploadChunk bytes, the last one finalizing the upload.
func (c *Client) upload(ctx context.Context, displayName string, data []byte) (string, error) {
	h := c.keyHeader()
	h.Set("X-Goog-Upload-Protocol", "resumable")
	h.Set("X-Goog-Upload-Command", "start")
	h.Set("X-Goog-Upload-Header-Content-Length", strconv.Itoa(len(data)))
	h.Set("X-Goog-Upload-Header-Content-Type", "application/jsonl")
	meta, _ := json.Marshal(map[string]any{"file": map[string]string{"displayName": displayName}})
	var uploadURL string
	err := c.post(ctx, c.base+"/upload/v1beta/files", h, meta, func(h http.Header, _ []byte) error {
		uploadURL = h.Get("X-Goog-Upload-URL")
		if uploadURL == "" {
			return &llm.Error{Kind: llm.Unavailable, Provider: config.ProviderGemini, StatusCode: http.StatusOK,
				Message: "the upload start reply has no X-Goog-Upload-URL"}
		}
		return nil
	})
	if err != nil {
		return "", err
	}
	uploadURL = c.onBase(uploadURL)
	for offset := 0; ; {
		end := min(offset+uploadChunk, len(data))
		command := "upload"
		if end == len(data) {
			command = "upload, finalize"
		}
		h := c.keyHeader()
		h.Set("X-Goog-Upload-Command", command)
		h.Set("X-Goog-Upload-Offset", strconv.Itoa(offset))
		var name string
		err := c.post(ctx, uploadURL, h, data[offset:end], func(h http.Header, body []byte) error {
			if end < len(data) {
				return nil
			}
			f, err := httpx.Decode[struct {
				File struct {
					Name string `json:"name"`
				} `json:"file"`
			}](c.http, body)
			if err != nil {
				return err
			}
			if name = f.File.Name; name == "" || h.Get("X-Goog-Upload-Status") != "final" {
				return &llm.Error{Kind: llm.Unavailable, Provider: config.ProviderGemini, StatusCode: http.StatusOK,
					Message: "the finalized upload names no file: " + httpx.Snippet(body, c.http.Key.Reveal())}
			}
			return nil
		})
		if err != nil {
			return "", err
		}
		if end == len(data) {
			return name, nil
		}
		offset = end
	}
}

// onBase moves an upload URL onto the client's base URL, scheme and host, as the official SDKs
// do, so that a proxy or a test server in front of the API gets the upload too.
func (c *Client) onBase(raw string) string {
	u, err := url.Parse(raw)
	base, berr := url.Parse(c.base)
	if err != nil || berr != nil {
		return raw
	}
	u.Scheme, u.Host = base.Scheme, base.Host
	return u.String()
}

// post sends body to url through the client's transport (as JSON, which the File API takes for
// every upload step) and hands a 200 reply's headers and body to take. Another status is
// classified as a call's.
func (c *Client) post(ctx context.Context, url string, h http.Header, body []byte, take func(http.Header, []byte) error) error {
	call, err := c.http.Post(ctx, url, h, body)
	if err != nil {
		return err
	}
	defer call.Close()
	data, err := call.ReadAll(1 << 20)
	if err != nil {
		return err
	}
	if call.Response.StatusCode != http.StatusOK {
		return c.refused(call.Response.StatusCode, call.Response.Header, data)
	}
	return take(call.Response.Header, data)
}

// get reads url with the client's key within timeout, and hands a 200 reply's body to take
// (see httpx.Client.Send).
func (c *Client) get(ctx context.Context, url string, timeout time.Duration, take func(io.Reader) error) error {
	return c.http.Send(ctx, http.MethodGet, url, c.keyHeader(), nil, timeout, c.refused, take)
}

// refused classifies a reply whose status is not 200, as httpx.Do does for a call.
func (c *Client) refused(status int, h http.Header, data []byte) error {
	if e := httpx.ErrorObject[apiError](data); e != nil {
		return c.classify(status, h, e, "")
	}
	return c.classify(status, h, nil, httpx.Snippet(data, c.http.Key.Reveal()))
}
