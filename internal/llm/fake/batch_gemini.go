package fake

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Gemini's batch mode: POST /v1beta/models/{model}:batchGenerateContent (inline requests, or a
// JSONL file of {"key", "request"} lines from the File API), the batch as a long-running
// operation (GET /v1beta/batches/{id}, GET /v1beta/batches, POST /v1beta/batches/{id}:cancel),
// the resumable upload of POST /upload/v1beta/files and GET /download/v1beta/files/{id}:download
// ?alt=media. The operation's metadata is the GenerateContentBatch (displayName, state,
// batchStats, output); a succeeded batch also has its output as the operation's response, and a
// failed, cancelled or expired one an error instead, with what it answered in metadata.output.

const (
	gemBatchType  = "type.googleapis.com/google.ai.generativelanguage.v1main.GenerateContentBatch"
	gemOutputType = "type.googleapis.com/google.ai.generativelanguage.v1main.GenerateContentBatchOutput"
)

type (
	// rpcStatus is a google.rpc.Status as a batch reports it: the canonical code, not the HTTP
	// status an error reply carries.
	rpcStatus struct {
		Code    int    `json:"code"`
		Message string `json:"message,omitempty"`
		Details []any  `json:"details,omitempty"`
	}
	gemInlined struct {
		Response *gemResponse `json:"response,omitempty"`
		Error    *rpcStatus   `json:"error,omitempty"`
		Metadata any          `json:"metadata,omitempty"`
	}
	gemFileLine struct {
		Key      string       `json:"key,omitempty"`
		Response *gemResponse `json:"response,omitempty"`
		Error    *rpcStatus   `json:"error,omitempty"`
	}
	gemBatchOutput struct {
		Type             string `json:"@type,omitempty"`
		ResponsesFile    string `json:"responsesFile,omitempty"`
		InlinedResponses *struct {
			InlinedResponses []gemInlined `json:"inlinedResponses"`
		} `json:"inlinedResponses,omitempty"`
	}
	gemBatchStats struct {
		RequestCount           string `json:"requestCount"`
		SuccessfulRequestCount string `json:"successfulRequestCount,omitempty"`
		FailedRequestCount     string `json:"failedRequestCount,omitempty"`
		PendingRequestCount    string `json:"pendingRequestCount,omitempty"`
	}
	gemBatch struct {
		Type        string            `json:"@type"`
		Model       string            `json:"model"`
		DisplayName string            `json:"displayName"`
		InputConfig map[string]string `json:"inputConfig,omitempty"`
		Output      *gemBatchOutput   `json:"output,omitempty"`
		CreateTime  string            `json:"createTime"`
		EndTime     string            `json:"endTime,omitempty"`
		UpdateTime  string            `json:"updateTime"`
		BatchStats  gemBatchStats     `json:"batchStats"`
		State       string            `json:"state"`
		Name        string            `json:"name"`
	}
	gemOperation struct {
		Name     string          `json:"name"`
		Metadata gemBatch        `json:"metadata"`
		Done     bool            `json:"done,omitempty"`
		Error    *rpcStatus      `json:"error,omitempty"`
		Response *gemBatchOutput `json:"response,omitempty"`
	}
	gemFile struct {
		Name           string `json:"name"`
		DisplayName    string `json:"displayName,omitempty"`
		MimeType       string `json:"mimeType"`
		SizeBytes      string `json:"sizeBytes"`
		CreateTime     string `json:"createTime"`
		UpdateTime     string `json:"updateTime"`
		ExpirationTime string `json:"expirationTime"`
		Sha256Hash     string `json:"sha256Hash"`
		URI            string `json:"uri"`
		State          string `json:"state"`
		Source         string `json:"source"`
	}
)

// grpcCodes are the canonical codes of the status names geminiStatus writes.
var grpcCodes = map[string]int{
	"CANCELLED": 1, "UNKNOWN": 2, "INVALID_ARGUMENT": 3, "DEADLINE_EXCEEDED": 4, "NOT_FOUND": 5,
	"ALREADY_EXISTS": 6, "PERMISSION_DENIED": 7, "RESOURCE_EXHAUSTED": 8, "FAILED_PRECONDITION": 9,
	"ABORTED": 10, "OUT_OF_RANGE": 11, "UNIMPLEMENTED": 12, "INTERNAL": 13, "UNAVAILABLE": 14,
	"DATA_LOSS": 15, "UNAUTHENTICATED": 16,
}

// gemStates names the phases as the REST API does.
var gemStates = map[phase]string{
	phasePending: "BATCH_STATE_PENDING", phaseRunning: "BATCH_STATE_RUNNING", phaseFinalizing: "BATCH_STATE_RUNNING",
	phaseSucceeded: "BATCH_STATE_SUCCEEDED", phaseFailed: "BATCH_STATE_FAILED", phaseCancelling: "BATCH_STATE_RUNNING",
	phaseCancelled: "BATCH_STATE_CANCELLED", phaseExpired: "BATCH_STATE_EXPIRED",
}

// gemBatchFields are the GenerateContentBatch fields a create may carry.
var gemBatchFields = []string{"model", "name", "displayName", "inputConfig", "priority"}

func stamp(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

func writeGem(w http.ResponseWriter, st gemStatus) {
	writeJSON(w, st.Code, geminiJSON, "  ", gemError{st})
}

func notFoundGem(msg string) gemStatus {
	return gemStatus{Code: http.StatusNotFound, Status: "NOT_FOUND", Message: msg}
}

// geminiAuth counts a batch or file request and checks its key, answering a bad one as the API
// does. It returns the key, and false when the request has been answered.
func (s *Server) geminiAuth(w http.ResponseWriter, r *http.Request) (string, bool) {
	g := geminiWire{s}
	key, present := g.key(r)
	if !s.listRequest(key) {
		kind := failInvalidKey
		if !present {
			kind = failMissingKey
		}
		g.writeError(w, &call{}, apiErr{kind: kind})
		return "", false
	}
	return key, true
}

func (s *Server) geminiBatchCreate(w http.ResponseWriter, r *http.Request) {
	key, ok := s.geminiAuth(w, r)
	if !ok {
		s.count(&s.stats.BatchRejected)
		return
	}
	model := strings.TrimSuffix(r.PathValue("action"), ":batchGenerateContent")
	raw, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	j, bad := s.parseGeminiBatch(key, model, raw, err)
	if bad != nil {
		s.count(&s.stats.BatchRejected)
		writeGem(w, *bad)
		return
	}
	lim, f := s.admitBatch(j)
	switch {
	case lim != nil:
		writeGem(w, geminiBatchLimit(model, *lim))
	case f != nil && f.Kind == BatchLostReply:
		resetConnection(w)
	case f != nil && f.Kind == BatchHangingReply:
		s.hang(r.Context())
	default:
		writeJSON(w, http.StatusOK, geminiJSON, "  ", geminiWire{s}.operation(s.view(j)))
	}
}

// parseGeminiBatch reads a create request into a batch, or the 400 (404 for an unknown input
// file) the API answers it with. An invalid inline request refuses the whole create; a line of
// an input file that is no request becomes an error line; a line that is not JSON fails the
// batch.
func (s *Server) parseGeminiBatch(key, model string, raw []byte, readErr error) (*batchJob, *gemStatus) {
	bad := func(e *apiErr) (*batchJob, *gemStatus) {
		st := geminiStatus(&call{model: model}, *e)
		return nil, &st
	}
	if readErr != nil {
		return bad(badGemini("", "could not read the request body: "+readErr.Error()))
	}
	var body map[string]any
	if err := json.Unmarshal(raw, &body); err != nil {
		return bad(badGemini("", "Invalid JSON payload received. "+err.Error()))
	}
	if e := unknownFields(body, "", []string{"batch"}); e != nil {
		return bad(e)
	}
	batch, _ := field(body, "batch").(map[string]any)
	if e := unknownFields(batch, "batch", gemBatchFields); e != nil {
		return bad(e)
	}
	name, _ := field(batch, "displayName").(string)
	in, _ := field(batch, "inputConfig").(map[string]any)
	if e := unknownFields(in, "batch.input_config", []string{"fileName", "requests"}); e != nil {
		return bad(e)
	}
	fileName, _ := field(in, "fileName").(string)
	reqs, _ := field(in, "requests").(map[string]any)
	j := &batchJob{format: fmtGemini, key: key, name: name, model: model}
	switch {
	case batch == nil:
		return bad(badGemini("batch", "* BatchGenerateContentRequest.batch: batch is required\n"))
	case name == "":
		return bad(badGemini("batch.display_name", "* GenerateContentBatch.display_name: display_name is required\n"))
	case (fileName == "") == (reqs == nil):
		return bad(badGemini("batch.input_config", "* GenerateContentBatch.input_config: exactly one of file_name and requests must be set\n"))
	case reqs != nil:
		items, _ := field(reqs, "requests").([]any)
		if len(items) == 0 {
			return bad(badGemini("batch.input_config.requests.requests", "* InlinedRequests.requests: requests must not be empty\n"))
		}
		for i, item := range items {
			at := fmt.Sprintf("batch.input_config.requests.requests[%d]", i)
			m, _ := item.(map[string]any)
			if e := unknownFields(m, at, []string{"request", "metadata"}); e != nil {
				return bad(e)
			}
			req, _ := field(m, "request").(map[string]any)
			if req == nil {
				return bad(badGemini(at+".request", "* InlinedRequest.request: request is required\n"))
			}
			c := &call{key: key, model: model, body: req}
			if e := parseGeminiRequest(c); e != nil {
				e.field = strings.TrimSuffix(at+".request."+e.field, ".")
				return bad(e)
			}
			l := &batchLine{c: c, meta: m["metadata"]}
			if md, ok := l.meta.(map[string]any); ok {
				l.key, _ = md["key"].(string)
			}
			j.lines = append(j.lines, l)
		}
	default:
		s.mu.Lock()
		f := s.file(key, fileName)
		s.mu.Unlock()
		if f == nil {
			st := notFoundGem(fmt.Sprintf("File %s not found.", fileName))
			return nil, &st
		}
		j.inputFile = fileName
		j.lines, j.failMsg = parseGeminiFile(key, model, f.data)
		j.failCode = "invalid_input_file"
	}
	return j, nil
}

// parseGeminiFile reads the lines of an input file, or why the batch fails.
func parseGeminiFile(key, model string, data []byte) ([]*batchLine, string) {
	var lines []*batchLine
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64<<10), maxUpload)
	for n := 1; sc.Scan(); n++ {
		if len(bytes.TrimSpace(sc.Bytes())) == 0 {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			return nil, fmt.Sprintf("Line %d of the input file is not valid JSON: %v", n, err)
		}
		l := &batchLine{c: &call{key: key, model: model}}
		l.key, _ = m["key"].(string)
		if req, ok := m["request"].(map[string]any); ok {
			l.c.body = req
			l.err = parseGeminiRequest(l.c)
		} else {
			l.err = badGemini("request", "* line: request is required\n")
		}
		lines = append(lines, l)
	}
	if err := sc.Err(); err != nil {
		return nil, "The input file could not be read: " + err.Error()
	}
	if len(lines) == 0 {
		return nil, "The input file holds no requests."
	}
	return lines, ""
}

// geminiBatchLimit is the 429 of a key over its batch limits, shaped as the API's quota errors.
func geminiBatchLimit(model string, lim batchLimit) gemStatus {
	metric, quotaID := "generativelanguage.googleapis.com/batch_concurrent_jobs", "BatchConcurrentJobsPerProject"
	if lim.tokens {
		metric, quotaID = "generativelanguage.googleapis.com/batch_enqueued_tokens", "BatchEnqueuedTokensPerModelPerProject"
	}
	delay := protoDuration(lim.retry.Round(time.Millisecond))
	return gemStatus{
		Code:   http.StatusTooManyRequests,
		Status: "RESOURCE_EXHAUSTED",
		Message: fmt.Sprintf("%s\n* Quota exceeded for metric: %s, limit: %d, model: %s\nPlease retry in %s.",
			geminiHelp, metric, lim.limit, model, delay),
		Details: []any{
			map[string]any{"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": []any{map[string]any{
				"quotaMetric": metric, "quotaId": quotaID, "quotaValue": strconv.Itoa(lim.limit),
				"quotaDimensions": map[string]string{"location": "global", "model": model},
			}}},
			map[string]any{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": delay},
		},
	}
}

func (s *Server) geminiBatchGet(w http.ResponseWriter, r *http.Request) {
	key, ok := s.geminiAuth(w, r)
	if !ok {
		return
	}
	j := s.job(fmtGemini, key, "batches/"+r.PathValue("id"))
	if j == nil {
		writeGem(w, notFoundGem("Requested entity was not found."))
		return
	}
	s.count(&s.stats.BatchPolls)
	writeJSON(w, http.StatusOK, geminiJSON, "  ", geminiWire{s}.operation(s.view(j)))
}

// geminiBatchList lists the key's batches, newest first. The page token is the offset of the
// page.
func (s *Server) geminiBatchList(w http.ResponseWriter, r *http.Request) {
	key, ok := s.geminiAuth(w, r)
	if !ok {
		return
	}
	q := r.URL.Query()
	size, err := strconv.Atoi(q.Get("pageSize"))
	if err != nil || size <= 0 {
		size = 50
	}
	size = min(size, 1000)
	from := 0
	if tok := q.Get("pageToken"); tok != "" {
		if from, err = strconv.Atoi(tok); err != nil || from < 0 {
			writeGem(w, *geminiStatusPtr(badGemini("page_token", "Invalid page token.")))
			return
		}
	}
	s.count(&s.stats.BatchLists)
	jobs := s.jobs(fmtGemini, key)
	page := struct {
		Operations    []gemOperation `json:"operations,omitempty"`
		NextPageToken string         `json:"nextPageToken,omitempty"`
	}{}
	for i := from; i < len(jobs) && i < from+size; i++ {
		page.Operations = append(page.Operations, geminiWire{s}.operation(s.view(jobs[i])))
	}
	if from+size < len(jobs) {
		page.NextPageToken = strconv.Itoa(from + size)
	}
	writeJSON(w, http.StatusOK, geminiJSON, "  ", page)
}

func geminiStatusPtr(e *apiErr) *gemStatus {
	st := geminiStatus(&call{}, *e)
	return &st
}

// geminiBatchCancel serves POST /v1beta/batches/{id}:cancel. Cancelling an ended batch is a
// FAILED_PRECONDITION.
func (s *Server) geminiBatchCancel(w http.ResponseWriter, r *http.Request) {
	key, ok := s.geminiAuth(w, r)
	if !ok {
		return
	}
	id, verb, _ := strings.Cut(r.PathValue("action"), ":")
	if verb != "cancel" {
		writeGem(w, notFoundGem("Method not found."))
		return
	}
	j := s.job(fmtGemini, key, "batches/"+id)
	if j == nil {
		writeGem(w, notFoundGem("Requested entity was not found."))
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
		writeGem(w, gemStatus{Code: http.StatusBadRequest, Status: "FAILED_PRECONDITION",
			Message: fmt.Sprintf("Batch %s has already ended (%s).", j.id, gemStates[p])})
		return
	}
	writeJSON(w, http.StatusOK, geminiJSON, "  ", struct{}{})
}

// operation renders v as the long-running operation the API returns for a batch.
func (g geminiWire) operation(v batchView) gemOperation {
	j := v.j
	b := gemBatch{
		Type: gemBatchType, Model: "models/" + j.model, DisplayName: j.name, Name: j.id,
		CreateTime: stamp(j.created), UpdateTime: stamp(v.now), State: gemStates[v.phase],
		BatchStats: gemBatchStats{RequestCount: strconv.Itoa(len(j.lines))},
	}
	if j.inputFile != "" {
		b.InputConfig = map[string]string{"fileName": j.inputFile}
	}
	count := func(n int) string {
		if n == 0 {
			return ""
		}
		return strconv.Itoa(n)
	}
	b.BatchStats.SuccessfulRequestCount = count(v.answered)
	b.BatchStats.FailedRequestCount = count(v.failed)
	if !v.phase.final() {
		b.BatchStats.PendingRequestCount = count(len(j.lines) - v.answered - v.failed)
	}
	op := gemOperation{Name: j.id}
	if v.phase.final() {
		op.Done = true
		b.EndTime = stamp(g.s.endedAt(j, v.phase))
		b.UpdateTime = b.EndTime
		b.Output = g.outputObject(v.out)
		switch v.phase {
		case phaseSucceeded:
			op.Response = b.Output
		case phaseFailed:
			op.Error = &rpcStatus{Code: grpcCodes["INVALID_ARGUMENT"], Message: j.failMsg}
		case phaseCancelled:
			op.Error = &rpcStatus{Code: grpcCodes["CANCELLED"], Message: "The batch was cancelled."}
		case phaseExpired:
			op.Error = &rpcStatus{Code: grpcCodes["DEADLINE_EXCEEDED"], Message: fmt.Sprintf(
				"The batch expired with %d of its %d requests processed.", v.answered+v.failed, len(j.lines))}
		}
	}
	op.Metadata = b
	return op
}

// outputObject is out as a GenerateContentBatchOutput, or nil when the batch answered nothing.
func (geminiWire) outputObject(out *batchOutput) *gemBatchOutput {
	switch {
	case out == nil:
		return nil
	case out.responses != "":
		return &gemBatchOutput{Type: gemOutputType, ResponsesFile: out.responses}
	case len(out.inlined) > 0:
		o := &gemBatchOutput{Type: gemOutputType}
		o.InlinedResponses = &struct {
			InlinedResponses []gemInlined `json:"inlinedResponses"`
		}{out.inlined}
		return o
	}
	return nil
}

// batchOutput renders the answers of the lines v.j answered: inline, in the order of the
// requests and with their metadata, or as a responses file of {"key", "response" | "error"}
// lines.
func (g geminiWire) batchOutput(v batchView) (batchOutput, []*storedFile) {
	j := v.j
	var out batchOutput
	var file bytes.Buffer
	for i, l := range j.lines {
		if !v.done[i] {
			continue
		}
		in := g.lineAnswer(l)
		if j.inputFile == "" {
			out.inlined = append(out.inlined, in)
			continue
		}
		file.Write(encode(gemFileLine{Key: l.key, Response: in.Response, Error: in.Error}, ""))
		file.WriteByte('\n')
	}
	if file.Len() == 0 {
		return out, nil
	}
	out.responses = fmt.Sprintf("files/batch-fake%d", g.s.nextID())
	return out, []*storedFile{{key: j.key, name: out.responses, displayName: "responses of " + j.id,
		mime: "application/jsonl", data: file.Bytes(), created: v.now}}
}

// lineAnswer renders a line's answer: the GenerateContentResponse a call would get, or its
// error as a google.rpc.Status.
func (g geminiWire) lineAnswer(l *batchLine) gemInlined {
	if l.err != nil {
		st := geminiStatus(l.c, *l.err)
		return gemInlined{Error: &rpcStatus{Code: grpcCodes[st.Status], Message: st.Message, Details: st.Details}, Metadata: l.meta}
	}
	resp := g.events(l.c, l.rep)[0]
	return gemInlined{Response: &resp, Metadata: l.meta}
}

// upload is a resumable upload under way.
type upload struct {
	key, displayName, mime string
	size                   int64 // declared by X-Goog-Upload-Header-Content-Length, -1 if not
	data                   []byte
}

// geminiUpload serves the File API's resumable protocol: a start request (X-Goog-Upload-Protocol:
// resumable, X-Goog-Upload-Command: start, the file's metadata as JSON) answered with the
// session's URL in X-Goog-Upload-URL, then chunks posted there (X-Goog-Upload-Command: upload,
// and "upload, finalize" for the last; X-Goog-Upload-Offset the bytes sent before), the last
// answered with {"file": File}.
func (s *Server) geminiUpload(w http.ResponseWriter, r *http.Request) {
	key, ok := s.geminiAuth(w, r)
	if !ok {
		return
	}
	if id := r.URL.Query().Get("upload_id"); id != "" {
		s.geminiUploadChunk(w, r, key, id)
		return
	}
	if !strings.EqualFold(r.Header.Get("X-Goog-Upload-Protocol"), "resumable") ||
		!strings.EqualFold(strings.TrimSpace(r.Header.Get("X-Goog-Upload-Command")), "start") {
		writeGem(w, *geminiStatusPtr(badGemini("", "this fake takes resumable uploads only: X-Goog-Upload-Protocol: resumable, X-Goog-Upload-Command: start")))
		return
	}
	raw, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<20))
	var meta struct {
		File map[string]any `json:"file"`
	}
	if err != nil || (len(bytes.TrimSpace(raw)) > 0 && json.Unmarshal(raw, &meta) != nil) {
		writeGem(w, *geminiStatusPtr(badGemini("", "Invalid JSON payload received.")))
		return
	}
	u := &upload{key: key, size: -1, mime: r.Header.Get("X-Goog-Upload-Header-Content-Type")}
	u.displayName, _ = field(meta.File, "displayName").(string)
	if v := r.Header.Get("X-Goog-Upload-Header-Content-Length"); v != "" {
		if u.size, err = strconv.ParseInt(v, 10, 64); err != nil || u.size < 0 {
			writeGem(w, *geminiStatusPtr(badGemini("", "Invalid X-Goog-Upload-Header-Content-Length.")))
			return
		}
	}
	s.mu.Lock()
	s.seq++
	id := fmt.Sprintf("fakeupload%d", s.seq)
	if s.batch.uploads == nil {
		s.batch.uploads = map[string]*upload{}
	}
	s.batch.uploads[id] = u
	s.mu.Unlock()
	w.Header().Set("X-Goog-Upload-URL", s.url+"/upload/v1beta/files?upload_id="+id+"&upload_protocol=resumable")
	w.Header().Set("X-Goog-Upload-Status", "active")
	w.Header().Set("X-Goog-Upload-Chunk-Granularity", strconv.Itoa(8<<20))
	w.WriteHeader(http.StatusOK)
}

func (s *Server) geminiUploadChunk(w http.ResponseWriter, r *http.Request, key, id string) {
	var upload, finalize bool
	for _, c := range strings.Split(r.Header.Get("X-Goog-Upload-Command"), ",") {
		switch strings.ToLower(strings.TrimSpace(c)) {
		case "upload":
			upload = true
		case "finalize":
			finalize = true
		}
	}
	offset, err := strconv.ParseInt(r.Header.Get("X-Goog-Upload-Offset"), 10, 64)
	if !upload && !finalize || err != nil {
		writeGem(w, *geminiStatusPtr(badGemini("", "a chunk needs X-Goog-Upload-Command (upload, finalize) and X-Goog-Upload-Offset")))
		return
	}
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxUpload))
	if err != nil {
		writeGem(w, *geminiStatusPtr(badGemini("", "could not read the chunk: "+err.Error())))
		return
	}
	s.mu.Lock()
	u := s.batch.uploads[id]
	var problem string
	switch {
	case u == nil || u.key != key:
		s.mu.Unlock()
		writeGem(w, notFoundGem("Upload session not found."))
		return
	case offset != int64(len(u.data)):
		problem = fmt.Sprintf("X-Goog-Upload-Offset is %d, but %d bytes have been received.", offset, len(u.data))
	case len(u.data)+len(data) > maxUpload:
		problem = fmt.Sprintf("The file is larger than this fake takes (%d bytes).", maxUpload)
	}
	if problem == "" {
		u.data = append(u.data, data...)
		if finalize && u.size >= 0 && int64(len(u.data)) != u.size {
			problem = fmt.Sprintf("Received %d bytes, but X-Goog-Upload-Header-Content-Length declared %d.", len(u.data), u.size)
		}
	}
	if problem != "" {
		delete(s.batch.uploads, id)
		s.mu.Unlock()
		writeGem(w, *geminiStatusPtr(badGemini("", problem)))
		return
	}
	if !finalize {
		s.mu.Unlock()
		w.Header().Set("X-Goog-Upload-Status", "active")
		w.WriteHeader(http.StatusOK)
		return
	}
	delete(s.batch.uploads, id)
	s.seq++
	f := &storedFile{key: key, name: fmt.Sprintf("files/fakefile%d", s.seq), displayName: u.displayName,
		mime: u.mime, data: u.data, created: s.opts.Now()}
	s.storeFile(f)
	s.stats.FileUploads++
	s.mu.Unlock()
	w.Header().Set("X-Goog-Upload-Status", "final")
	writeJSON(w, http.StatusOK, geminiJSON, "  ", map[string]any{"file": s.gemFile(f)})
}

func (s *Server) gemFile(f *storedFile) gemFile {
	sum := sha256.Sum256(f.data)
	return gemFile{
		Name: f.name, DisplayName: f.displayName, MimeType: orString(f.mime, "application/octet-stream"),
		SizeBytes: strconv.Itoa(len(f.data)), CreateTime: stamp(f.created), UpdateTime: stamp(f.created),
		ExpirationTime: stamp(f.created.Add(48 * time.Hour)), Sha256Hash: base64.StdEncoding.EncodeToString(sum[:]),
		URI: s.url + "/v1beta/" + f.name, State: "ACTIVE", Source: "UPLOADED",
	}
}

// geminiDownload serves GET /download/v1beta/files/{id}:download?alt=media: the file's bytes.
func (s *Server) geminiDownload(w http.ResponseWriter, r *http.Request) {
	key, ok := s.geminiAuth(w, r)
	if !ok {
		return
	}
	id, verb, _ := strings.Cut(r.PathValue("action"), ":")
	if verb != "download" || r.URL.Query().Get("alt") != "media" {
		writeGem(w, *geminiStatusPtr(badGemini("", "a download is GET /download/v1beta/files/{id}:download?alt=media")))
		return
	}
	s.mu.Lock()
	f := s.file(key, "files/"+id)
	if f != nil {
		s.stats.BatchFetches++
	}
	s.mu.Unlock()
	if f == nil {
		writeGem(w, notFoundGem(fmt.Sprintf("File files/%s not found.", id)))
		return
	}
	w.Header().Set("Content-Type", orString(f.mime, "application/octet-stream"))
	w.Header().Set("Content-Length", strconv.Itoa(len(f.data)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(f.data)
}
