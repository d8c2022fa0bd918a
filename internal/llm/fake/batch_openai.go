package fake

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"strconv"
	"time"
)

// OpenAI's Batch API: POST /v1/files (multipart, purpose=batch) and GET /v1/files/{id}/content,
// POST /v1/batches, GET /v1/batches/{id}, GET /v1/batches?limit=&after=, POST
// /v1/batches/{id}/cancel. An input line is {"custom_id", "method": "POST", "url", "body"}; a
// structural fault of the file (a line that is not JSON, a missing or repeated custom_id, a
// method or url that is not the batch's) fails the batch when its validation ends, as the API
// does. Output lines are {"id", "custom_id", "response": {"status_code", "request_id", "body"},
// "error"}, written in reverse input order (the API promises no order): the output file holds
// the 200s, the error file the others, and for an expired or cancelled batch an error line
// without a response for every line it did not answer.

type (
	oaFile struct {
		ID        string `json:"id"`
		Object    string `json:"object"`
		Bytes     int    `json:"bytes"`
		CreatedAt int64  `json:"created_at"`
		Filename  string `json:"filename"`
		Purpose   string `json:"purpose"`
		Status    string `json:"status"`
	}
	oaBatchError struct {
		Code    string  `json:"code"`
		Message string  `json:"message"`
		Param   *string `json:"param"`
		Line    *int    `json:"line"`
	}
	oaBatchErrors struct {
		Object string         `json:"object"`
		Data   []oaBatchError `json:"data"`
	}
	oaCounts struct {
		Total     int `json:"total"`
		Completed int `json:"completed"`
		Failed    int `json:"failed"`
	}
	oaBatch struct {
		ID               string            `json:"id"`
		Object           string            `json:"object"`
		Endpoint         string            `json:"endpoint"`
		Errors           *oaBatchErrors    `json:"errors"`
		InputFileID      string            `json:"input_file_id"`
		CompletionWindow string            `json:"completion_window"`
		Status           string            `json:"status"`
		OutputFileID     *string           `json:"output_file_id"`
		ErrorFileID      *string           `json:"error_file_id"`
		CreatedAt        int64             `json:"created_at"`
		InProgressAt     *int64            `json:"in_progress_at"`
		ExpiresAt        *int64            `json:"expires_at"`
		FinalizingAt     *int64            `json:"finalizing_at"`
		CompletedAt      *int64            `json:"completed_at"`
		FailedAt         *int64            `json:"failed_at"`
		ExpiredAt        *int64            `json:"expired_at"`
		CancellingAt     *int64            `json:"cancelling_at"`
		CancelledAt      *int64            `json:"cancelled_at"`
		RequestCounts    oaCounts          `json:"request_counts"`
		Metadata         map[string]string `json:"metadata"`
	}
	oaLineResponse struct {
		StatusCode int    `json:"status_code"`
		RequestID  string `json:"request_id"`
		Body       any    `json:"body"`
	}
	oaLineError struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	}
	oaOutputLine struct {
		ID       string          `json:"id"`
		CustomID string          `json:"custom_id"`
		Response *oaLineResponse `json:"response"`
		Error    *oaLineError    `json:"error"`
	}
)

// oaEndpoint is the one batch endpoint the fake serves.
const oaEndpoint = "/v1/chat/completions"

var oaStatuses = map[phase]string{
	phasePending: "validating", phaseRunning: "in_progress", phaseFinalizing: "finalizing",
	phaseSucceeded: "completed", phaseFailed: "failed", phaseCancelling: "cancelling",
	phaseCancelled: "cancelled", phaseExpired: "expired",
}

func writeOA(w http.ResponseWriter, status int, body oaErrorBody) {
	writeJSON(w, status, "application/json", "    ", oaError{body})
}

func badOA(param, code, msg string) oaErrorBody {
	str := func(s string) *string {
		if s == "" {
			return nil
		}
		return &s
	}
	return oaErrorBody{Type: "invalid_request_error", Message: msg, Param: str(param), Code: str(code)}
}

// openaiAuth counts a batch or file request and checks its key, answering a bad one as the API
// does. It returns the key, and false when the request has been answered.
func (s *Server) openaiAuth(w http.ResponseWriter, r *http.Request) (string, bool) {
	o := openaiWire{s}
	key, present := o.key(r)
	if !s.listRequest(key) {
		kind := failInvalidKey
		if !present {
			kind = failMissingKey
		}
		o.writeError(w, &call{key: key}, apiErr{kind: kind})
		return "", false
	}
	return key, true
}

// openaiFileUpload serves POST /v1/files: a multipart form with purpose (batch) and file.
func (s *Server) openaiFileUpload(w http.ResponseWriter, r *http.Request) {
	key, ok := s.openaiAuth(w, r)
	if !ok {
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxUpload+1<<20)
	mr, err := r.MultipartReader()
	if err != nil {
		writeOA(w, http.StatusBadRequest, badOA("", "", "Expected a multipart/form-data body with the fields 'purpose' and 'file'."))
		return
	}
	var (
		purpose, filename string
		data              []byte
		hasFile           bool
	)
	for {
		part, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			writeOA(w, http.StatusBadRequest, badOA("", "", "Could not read the multipart body: "+err.Error()))
			return
		}
		switch part.FormName() {
		case "purpose":
			b, _ := io.ReadAll(io.LimitReader(part, 1024))
			purpose = string(b)
		case "file":
			hasFile, filename = true, part.FileName()
			if data, err = io.ReadAll(part); err != nil {
				writeOA(w, http.StatusRequestEntityTooLarge, badOA("file", "", "The file is larger than this fake takes."))
				return
			}
		}
	}
	switch {
	case !hasFile:
		writeOA(w, http.StatusBadRequest, badOA("file", "missing_required_parameter", "Missing required parameter: 'file'."))
		return
	case purpose == "":
		writeOA(w, http.StatusBadRequest, badOA("purpose", "missing_required_parameter", "Missing required parameter: 'purpose'."))
		return
	case purpose != "batch":
		writeOA(w, http.StatusBadRequest, badOA("purpose", "invalid_value", fmt.Sprintf("Invalid value for 'purpose': %q; this fake takes 'batch' only.", purpose)))
		return
	}
	s.mu.Lock()
	s.seq++
	f := &storedFile{key: key, name: fmt.Sprintf("file-fake%d", s.seq), displayName: filename, purpose: purpose,
		mime: "application/jsonl", data: data, created: s.opts.Now()}
	s.storeFile(f)
	s.stats.FileUploads++
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, "application/json", "  ", oaFileObject(f))
}

func oaFileObject(f *storedFile) oaFile {
	return oaFile{ID: f.name, Object: "file", Bytes: len(f.data), CreatedAt: f.created.Unix(),
		Filename: f.displayName, Purpose: f.purpose, Status: "processed"}
}

// openaiFileContent serves GET /v1/files/{id}/content: the file's bytes.
func (s *Server) openaiFileContent(w http.ResponseWriter, r *http.Request) {
	key, ok := s.openaiAuth(w, r)
	if !ok {
		return
	}
	s.mu.Lock()
	f := s.file(key, r.PathValue("id"))
	if f != nil {
		s.stats.BatchFetches++
	}
	s.mu.Unlock()
	if f == nil {
		writeOA(w, http.StatusNotFound, badOA("id", "", fmt.Sprintf("No such File object: %s", r.PathValue("id"))))
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", strconv.Itoa(len(f.data)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(f.data)
}

func (s *Server) openaiBatchCreate(w http.ResponseWriter, r *http.Request) {
	key, ok := s.openaiAuth(w, r)
	if !ok {
		s.count(&s.stats.BatchRejected)
		return
	}
	raw, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	j, status, bad := s.parseOpenAIBatch(key, raw, err)
	if j == nil {
		s.count(&s.stats.BatchRejected)
		writeOA(w, status, bad)
		return
	}
	lim, f := s.admitBatch(j)
	switch {
	case lim != nil:
		writeOALimit(w, j.model, *lim)
	case f != nil && f.Kind == BatchLostReply:
		resetConnection(w)
	case f != nil && f.Kind == BatchHangingReply:
		s.hang(r.Context())
	default:
		writeJSON(w, http.StatusOK, "application/json", "  ", openaiWire{s}.batchObject(s.view(j)))
	}
}

// parseOpenAIBatch reads a create request and its input file into a batch, or the error the
// API answers the request with.
func (s *Server) parseOpenAIBatch(key string, raw []byte, readErr error) (*batchJob, int, oaErrorBody) {
	var req struct {
		InputFileID      string         `json:"input_file_id"`
		Endpoint         string         `json:"endpoint"`
		CompletionWindow string         `json:"completion_window"`
		Metadata         map[string]any `json:"metadata"`
	}
	if readErr != nil || json.Unmarshal(raw, &req) != nil {
		return nil, http.StatusBadRequest, badOA("", "", "We could not parse the JSON body of your request.")
	}
	switch {
	case req.InputFileID == "":
		return nil, http.StatusBadRequest, badOA("input_file_id", "missing_required_parameter", "Missing required parameter: 'input_file_id'.")
	case req.Endpoint != oaEndpoint:
		return nil, http.StatusBadRequest, badOA("endpoint", "invalid_value", fmt.Sprintf("Invalid value for 'endpoint': %q; this fake serves '%s' only.", req.Endpoint, oaEndpoint))
	case req.CompletionWindow != "24h":
		return nil, http.StatusBadRequest, badOA("completion_window", "invalid_value", fmt.Sprintf("Invalid value: %q. Supported values are: '24h'.", req.CompletionWindow))
	case len(req.Metadata) > 16:
		return nil, http.StatusBadRequest, badOA("metadata", "invalid_value", "Invalid 'metadata': too many properties. Expected an object with at most 16 properties.")
	}
	j := &batchJob{format: fmtOpenAI, key: key, endpoint: req.Endpoint, inputFile: req.InputFileID}
	if req.Metadata != nil {
		j.metadata = map[string]string{}
	}
	for k, v := range req.Metadata {
		str, isString := v.(string)
		if !isString || len(k) > 64 || len(str) > 512 {
			return nil, http.StatusBadRequest, badOA("metadata", "invalid_value", fmt.Sprintf("Invalid 'metadata.%s': keys are strings of at most 64 characters, values strings of at most 512.", k))
		}
		j.metadata[k] = str
	}
	j.name = j.metadata["name"]
	s.mu.Lock()
	f := s.file(key, req.InputFileID)
	s.mu.Unlock()
	switch {
	case f == nil:
		return nil, http.StatusNotFound, badOA("input_file_id", "", fmt.Sprintf("No such File object: %s", req.InputFileID))
	case f.purpose != "batch":
		return nil, http.StatusBadRequest, badOA("input_file_id", "invalid_value", fmt.Sprintf("File %s has purpose %q; a batch takes a file with purpose 'batch'.", f.name, f.purpose))
	}
	s.parseOpenAIFile(j, f.data)
	return j, 0, oaErrorBody{}
}

// parseOpenAIFile reads the lines of j's input file into j, or the fault that will fail it.
func (s *Server) parseOpenAIFile(j *batchJob, data []byte) {
	fail := func(n int, code, msg string) {
		j.lines, j.failLine, j.failCode, j.failMsg = nil, n, code, msg
	}
	seen := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64<<10), maxUpload)
	for n := 1; sc.Scan(); n++ {
		if len(bytes.TrimSpace(sc.Bytes())) == 0 {
			continue
		}
		var line struct {
			CustomID *string         `json:"custom_id"`
			Method   string          `json:"method"`
			URL      string          `json:"url"`
			Body     json.RawMessage `json:"body"`
		}
		if json.Unmarshal(sc.Bytes(), &line) != nil {
			fail(n, "invalid_json_line", "This line is not parseable as valid JSON.")
			return
		}
		switch {
		case line.CustomID == nil || *line.CustomID == "":
			fail(n, "missing_required_parameter", "Missing required parameter: 'custom_id'.")
			return
		case seen[*line.CustomID]:
			fail(n, "duplicate_custom_id", "The custom_id for this request is a duplicate of another request. The custom_id parameter must be unique for each request in a batch.")
			return
		case line.Method != http.MethodPost:
			fail(n, "invalid_method", "The method for this request must be POST.")
			return
		case line.URL != j.endpoint:
			fail(n, "invalid_url", "The URL provided for this request does not match the batch endpoint.")
			return
		case len(line.Body) == 0 || line.Body[0] != '{':
			fail(n, "missing_required_parameter", "Missing required parameter: 'body'.")
			return
		}
		seen[*line.CustomID] = true
		c, perr := openaiWire{s}.parse(nil, line.Body)
		c.key = j.key
		if perr == nil && c.stream {
			perr = &apiErr{kind: failBadRequest, field: "stream", code: "invalid_value", msg: "Streaming is not supported in a batch."}
		}
		if j.model == "" {
			j.model = c.model
		}
		j.lines = append(j.lines, &batchLine{key: *line.CustomID, c: c, err: perr})
	}
	switch {
	case sc.Err() != nil:
		fail(0, "invalid_file", "The input file could not be read: "+sc.Err().Error())
	case len(j.lines) == 0:
		fail(0, "empty_file", "The input file holds no requests.")
	}
}

// writeOALimit answers a submission over the key's batch limits with a 429 and a Retry-After.
func writeOALimit(w http.ResponseWriter, model string, lim batchLimit) {
	wait := lim.retry.Round(time.Millisecond)
	w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(wait.Seconds()))))
	code := "token_limit_exceeded"
	body := oaErrorBody{Type: "invalid_request_error", Code: &code, Message: fmt.Sprintf(
		"Enqueued token limit reached for %s in organization org-fake. Limit: %d enqueued tokens. Please try submitting your requests again later.",
		model, lim.limit)}
	if !lim.tokens {
		code = "rate_limit_exceeded"
		body = oaErrorBody{Type: "requests", Code: &code, Message: fmt.Sprintf(
			"Too many unfinished batches for this key: limit %d. Please try again in %s.", lim.limit, wait)}
	}
	writeOA(w, http.StatusTooManyRequests, body)
}

func (s *Server) openaiBatchGet(w http.ResponseWriter, r *http.Request) {
	key, ok := s.openaiAuth(w, r)
	if !ok {
		return
	}
	j := s.job(fmtOpenAI, key, r.PathValue("id"))
	if j == nil {
		writeOA(w, http.StatusNotFound, badOA("", "", fmt.Sprintf("No batch found with id '%s'.", r.PathValue("id"))))
		return
	}
	s.count(&s.stats.BatchPolls)
	writeJSON(w, http.StatusOK, "application/json", "  ", openaiWire{s}.batchObject(s.view(j)))
}

// openaiBatchList lists the key's batches, newest first, limit (1..100, default 20) at a time
// after the batch whose id is after.
func (s *Server) openaiBatchList(w http.ResponseWriter, r *http.Request) {
	key, ok := s.openaiAuth(w, r)
	if !ok {
		return
	}
	q := r.URL.Query()
	limit := 20
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 100 {
			writeOA(w, http.StatusBadRequest, badOA("limit", "invalid_value", fmt.Sprintf("Invalid 'limit': %q. Expected an integer between 1 and 100.", v)))
			return
		}
		limit = n
	}
	s.count(&s.stats.BatchLists)
	jobs := s.jobs(fmtOpenAI, key)
	from := 0
	if after := q.Get("after"); after != "" {
		for i, j := range jobs {
			if j.id == after {
				from = i + 1
			}
		}
	}
	page := struct {
		Object  string    `json:"object"`
		Data    []oaBatch `json:"data"`
		FirstID *string   `json:"first_id"`
		LastID  *string   `json:"last_id"`
		HasMore bool      `json:"has_more"`
	}{Object: "list", Data: []oaBatch{}}
	for i := from; i < len(jobs) && i < from+limit; i++ {
		page.Data = append(page.Data, openaiWire{s}.batchObject(s.view(jobs[i])))
	}
	if n := len(page.Data); n > 0 {
		page.FirstID, page.LastID = &page.Data[0].ID, &page.Data[n-1].ID
	}
	page.HasMore = from+limit < len(jobs)
	writeJSON(w, http.StatusOK, "application/json", "  ", page)
}

// openaiBatchCancel serves POST /v1/batches/{id}/cancel: the batch, cancelling. An ended batch
// cannot be cancelled.
func (s *Server) openaiBatchCancel(w http.ResponseWriter, r *http.Request) {
	key, ok := s.openaiAuth(w, r)
	if !ok {
		return
	}
	j := s.job(fmtOpenAI, key, r.PathValue("id"))
	if j == nil {
		writeOA(w, http.StatusNotFound, badOA("", "", fmt.Sprintf("No batch found with id '%s'.", r.PathValue("id"))))
		return
	}
	s.mu.Lock()
	now := s.opts.Now()
	p := s.phaseOf(j, now)
	if !p.final() && j.cancelled.IsZero() {
		j.cancelled = now
		s.stats.BatchCancels++
	}
	s.mu.Unlock()
	if p.final() {
		writeOA(w, http.StatusBadRequest, badOA("", "", fmt.Sprintf("Cannot cancel a batch with status '%s'.", oaStatuses[p])))
		return
	}
	writeJSON(w, http.StatusOK, "application/json", "  ", openaiWire{s}.batchObject(s.view(j)))
}

// batchObject renders v as the API's Batch object.
func (o openaiWire) batchObject(v batchView) oaBatch {
	j := v.j
	at := func(t time.Time) *int64 {
		u := t.Unix()
		return &u
	}
	b := oaBatch{
		ID: j.id, Object: "batch", Endpoint: j.endpoint, InputFileID: j.inputFile, CompletionWindow: "24h",
		Status: oaStatuses[v.phase], CreatedAt: j.created.Unix(), ExpiresAt: at(j.created.Add(24 * time.Hour)),
		Metadata:      j.metadata,
		RequestCounts: oaCounts{Total: len(j.lines), Completed: v.answered, Failed: v.failed},
	}
	stop := v.now
	if !v.cancelled.IsZero() {
		b.CancellingAt = at(v.cancelled)
		stop = v.cancelled
	}
	if started := j.created.Add(o.s.pendingFor()); j.failMsg == "" && !started.After(stop) {
		b.InProgressAt = at(started)
	}
	switch v.phase {
	case phaseFinalizing, phaseSucceeded, phaseExpired:
		b.FinalizingAt = at(j.created.Add(o.s.answeredBy()))
	}
	switch v.phase {
	case phaseSucceeded:
		b.CompletedAt = at(o.s.endedAt(j, v.phase))
	case phaseExpired:
		b.ExpiredAt = at(o.s.endedAt(j, v.phase))
	case phaseCancelled:
		b.CancelledAt = at(o.s.endedAt(j, v.phase))
	case phaseFailed:
		b.FailedAt = at(o.s.endedAt(j, v.phase))
		b.RequestCounts = oaCounts{}
		e := oaBatchError{Code: j.failCode, Message: j.failMsg}
		if j.failLine > 0 {
			e.Line = &j.failLine
		}
		b.Errors = &oaBatchErrors{Object: "list", Data: []oaBatchError{e}}
	}
	if v.out != nil {
		if v.out.outputFile != "" {
			b.OutputFileID = &v.out.outputFile
		}
		if v.out.errorFile != "" {
			b.ErrorFileID = &v.out.errorFile
		}
	}
	return b
}

// batchOutput renders the output and error files of v.j, which has ended.
func (o openaiWire) batchOutput(v batchView) (batchOutput, []*storedFile) {
	j := v.j
	var ok, bad bytes.Buffer
	for i := len(j.lines) - 1; i >= 0; i-- {
		l := j.lines[i]
		if !v.done[i] && v.phase != phaseExpired && v.phase != phaseCancelled {
			continue
		}
		n := o.s.nextID()
		line := oaOutputLine{ID: fmt.Sprintf("batch_req_fake%d", n), CustomID: l.key}
		requestID := fmt.Sprintf("req_fake%d", n)
		out := &bad
		switch {
		case !v.done[i] && v.phase == phaseExpired:
			line.Error = &oaLineError{Code: "batch_expired", Message: "This request could not be executed before the completion window expired."}
		case !v.done[i]:
			line.Error = &oaLineError{Code: "batch_cancelled", Message: "This request was not executed because the batch was cancelled."}
		case l.err != nil:
			status, body := openaiError(l.c, *l.err)
			line.Response = &oaLineResponse{StatusCode: status, RequestID: requestID, Body: oaError{body}}
		default:
			line.Response = &oaLineResponse{StatusCode: http.StatusOK, RequestID: requestID, Body: o.completion(l.c, l.rep)}
			out = &ok
		}
		out.Write(encode(line, ""))
		out.WriteByte('\n')
	}
	var (
		result batchOutput
		files  []*storedFile
	)
	for _, f := range []struct {
		data *bytes.Buffer
		id   *string
	}{{&ok, &result.outputFile}, {&bad, &result.errorFile}} {
		if f.data.Len() == 0 {
			continue
		}
		*f.id = fmt.Sprintf("file-fake%d", o.s.nextID())
		files = append(files, &storedFile{key: j.key, name: *f.id, displayName: "batch_" + j.id + "_output.jsonl",
			purpose: "batch_output", mime: "application/jsonl", data: f.data.Bytes(), created: v.now})
	}
	return result, files
}
