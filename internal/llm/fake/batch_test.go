package fake

import (
	"bytes"
	"encoding/json"
	"fmt"
	"mime/multipart"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The batch APIs on the wire, without a client: what they accept, what they answer, and how a
// batch moves by the server's clock.

var batchStart = time.Date(2026, 11, 3, 12, 0, 0, 0, time.UTC)

// send makes a request with key in the header each format reads, and a JSON body unless body
// is nil.
func send(t *testing.T, s *Server, format, method, path, key string, body any) result {
	t.Helper()
	var rd *bytes.Reader
	if body != nil {
		rd = bytes.NewReader(mustJSON(t, body))
	} else {
		rd = bytes.NewReader(nil)
	}
	req, err := http.NewRequest(method, s.URL()+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if format == fmtGemini {
		req.Header.Set("x-goog-api-key", key)
	} else {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	return do(t, req)
}

func gemInline(name string, prompts ...string) map[string]any {
	var reqs []any
	for i, p := range prompts {
		reqs = append(reqs, map[string]any{"request": geminiBody(p), "metadata": map[string]any{"key": fmt.Sprintf("k%d", i+1)}})
	}
	return map[string]any{"batch": map[string]any{"display_name": name,
		"input_config": map[string]any{"requests": map[string]any{"requests": reqs}}}}
}

func gemCreate(t *testing.T, s *Server, body any) map[string]any {
	t.Helper()
	res := send(t, s, fmtGemini, "POST", "/v1beta/models/"+gemModel+":batchGenerateContent", key1, body)
	if res.status != 200 {
		t.Fatalf("create: %d %s", res.status, res.raw)
	}
	return res.json(t)
}

func gemGet(t *testing.T, s *Server, name string) map[string]any {
	t.Helper()
	res := send(t, s, fmtGemini, "GET", "/v1beta/"+name, key1, nil)
	if res.status != 200 {
		t.Fatalf("get %s: %d %s", name, res.status, res.raw)
	}
	return res.json(t)
}

// oaUpload posts lines as a batch input file and returns its id.
func oaUpload(t *testing.T, s *Server, lines ...any) string {
	t.Helper()
	var file bytes.Buffer
	for _, l := range lines {
		file.Write(mustJSON(t, l))
		file.WriteByte('\n')
	}
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	mw.WriteField("purpose", "batch")
	fw, _ := mw.CreateFormFile("file", "in.jsonl")
	fw.Write(file.Bytes())
	mw.Close()
	req, _ := http.NewRequest("POST", s.URL()+"/v1/files", &body)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	req.Header.Set("Authorization", "Bearer "+key1)
	res := do(t, req)
	if res.status != 200 {
		t.Fatalf("upload: %d %s", res.status, res.raw)
	}
	return path(t, res.json(t), "id").(string)
}

func oaLine(id, prompt string) map[string]any {
	return map[string]any{"custom_id": id, "method": "POST", "url": "/v1/chat/completions", "body": openaiBody(prompt, false, false)}
}

func oaCreate(t *testing.T, s *Server, fileID, name string) map[string]any {
	t.Helper()
	res := send(t, s, fmtOpenAI, "POST", "/v1/batches", key1, map[string]any{"input_file_id": fileID,
		"endpoint": "/v1/chat/completions", "completion_window": "24h", "metadata": map[string]any{"name": name}})
	if res.status != 200 {
		t.Fatalf("create: %d %s", res.status, res.raw)
	}
	return res.json(t)
}

// jsonl decodes the lines of a file.
func jsonl(t *testing.T, raw []byte) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(string(raw)), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("line %q: %v", l, err)
		}
		out = append(out, m)
	}
	return out
}

func TestAGeminiBatchMovesByTheClockAndAnswersAsCallsDo(t *testing.T) {
	clk := newClock(batchStart)
	s := start(t, Options{Now: clk.Now, BatchTurnaround: 100 * time.Minute})
	op := gemCreate(t, s, gemInline("job-1", "first text", "second text"))
	name := path(t, op, "name").(string)
	stateAt := func(d time.Duration) (string, map[string]any) {
		clk.Set(batchStart.Add(d))
		op := gemGet(t, s, name)
		return path(t, op, "metadata", "state").(string), op
	}
	for _, c := range []struct {
		at    time.Duration
		state string
		done  bool
	}{
		{0, "BATCH_STATE_PENDING", false},
		{24 * time.Minute, "BATCH_STATE_PENDING", false},
		{25 * time.Minute, "BATCH_STATE_RUNNING", false},
		{99 * time.Minute, "BATCH_STATE_RUNNING", false},
		{100 * time.Minute, "BATCH_STATE_SUCCEEDED", true},
	} {
		state, op := stateAt(c.at)
		if state != c.state || (op["done"] == true) != c.done {
			t.Errorf("at %v: state %s done %v, want %s %v", c.at, state, op["done"], c.state, c.done)
		}
	}
	_, op = stateAt(100 * time.Minute)
	if got := path(t, op, "metadata", "batchStats"); !equalJSON(got, map[string]any{"requestCount": "2", "successfulRequestCount": "2"}) {
		t.Errorf("batchStats = %v", got)
	}
	inlined := path(t, op, "response", "inlinedResponses", "inlinedResponses").([]any)
	if !equalJSON(path(t, op, "metadata", "output"), path(t, op, "response")) || len(inlined) != 2 {
		t.Fatalf("output = %v", op["response"])
	}
	for i, prompt := range []string{"first text", "second text"} {
		call := gemini(t, s, key1, prompt).json(t)
		line := inlined[i].(map[string]any)
		if path(t, line, "metadata", "key") != fmt.Sprintf("k%d", i+1) {
			t.Errorf("line %d metadata = %v", i, line["metadata"])
		}
		for _, p := range [][]any{{"candidates", 0, "content"}, {"usageMetadata"}, {"modelVersion"}} {
			if got, want := path(t, line, append([]any{"response"}, p...)...), path(t, call, p...); !equalJSON(got, want) {
				t.Errorf("line %d %v = %v, a call's %v", i, p, got, want)
			}
		}
	}
	if st := s.Stats(); st.BatchSubmits != 1 || st.BatchLines != 2 || st.BatchPolls != 6 || st.Duplicates != 2 {
		t.Errorf("stats = %+v", st)
	}
}

func equalJSON(a, b any) bool {
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return bytes.Equal(ja, jb)
}

func TestGeminiBatchCreateRefusesWhatTheAPIRefuses(t *testing.T) {
	s := start(t, Options{})
	good := geminiBody(plainText)
	bad := geminiBody(plainText)
	bad["generationConfig"].(map[string]any)["maxTokens"] = 10
	cases := []struct {
		name   string
		body   any
		status int
		want   string
	}{
		{"no batch", map[string]any{}, 400, "batch is required"},
		{"an unknown field", map[string]any{"batch": map[string]any{"displayName": "x", "inputConfig": map[string]any{"fileName": "files/x"}, "colour": 1}}, 400, `Unknown name "colour"`},
		{"no display name", map[string]any{"batch": map[string]any{"inputConfig": map[string]any{"requests": map[string]any{"requests": []any{map[string]any{"request": good}}}}}}, 400, "display_name is required"},
		{"both inputs", map[string]any{"batch": map[string]any{"displayName": "x", "inputConfig": map[string]any{"fileName": "files/x", "requests": map[string]any{}}}}, 400, "exactly one"},
		{"an invalid request", map[string]any{"batch": map[string]any{"displayName": "x", "inputConfig": map[string]any{"requests": map[string]any{"requests": []any{map[string]any{"request": good}, map[string]any{"request": bad}}}}}}, 400, `Unknown name "maxTokens"`},
		{"an unknown file", map[string]any{"batch": map[string]any{"displayName": "x", "inputConfig": map[string]any{"fileName": "files/nope"}}}, 404, "not found"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			res := send(t, s, fmtGemini, "POST", "/v1beta/models/"+gemModel+":batchGenerateContent", key1, c.body)
			if msg, _ := path(t, res.json(t), "error", "message").(string); res.status != c.status || !strings.Contains(msg, c.want) {
				t.Errorf("%d %s; want %d with %q", res.status, res.raw, c.status, c.want)
			}
		})
	}
	if res := send(t, s, fmtGemini, "POST", "/v1beta/models/"+gemModel+":batchGenerateContent", "wrong", gemInline("x", "y")); res.status != 400 || !strings.Contains(string(res.raw), "API_KEY_INVALID") {
		t.Errorf("a wrong key: %d %s", res.status, res.raw)
	}
	if st := s.Stats(); st.BatchRejected != len(cases)+1 || st.BatchSubmits != 0 || st.ByKey["wrong"].Rejected != 1 {
		t.Errorf("stats = %+v", st)
	}
}

// gemUploadStart opens a resumable upload and returns its URL.
func gemUploadStart(t *testing.T, s *Server, size int) string {
	t.Helper()
	req, _ := http.NewRequest("POST", s.URL()+"/upload/v1beta/files", strings.NewReader(`{"file": {"display_name": "in.jsonl"}}`))
	req.Header.Set("x-goog-api-key", key1)
	req.Header.Set("X-Goog-Upload-Protocol", "resumable")
	req.Header.Set("X-Goog-Upload-Command", "start")
	req.Header.Set("X-Goog-Upload-Header-Content-Length", strconv.Itoa(size))
	req.Header.Set("X-Goog-Upload-Header-Content-Type", "application/jsonl")
	res := do(t, req)
	if res.status != 200 || res.header.Get("X-Goog-Upload-Status") != "active" {
		t.Fatalf("start: %d %v %s", res.status, res.header, res.raw)
	}
	return res.header.Get("X-Goog-Upload-URL")
}

func gemChunk(t *testing.T, url, command string, offset int, data string) result {
	t.Helper()
	req, _ := http.NewRequest("POST", url, strings.NewReader(data))
	req.Header.Set("x-goog-api-key", key1)
	req.Header.Set("X-Goog-Upload-Command", command)
	req.Header.Set("X-Goog-Upload-Offset", strconv.Itoa(offset))
	return do(t, req)
}

func TestAGeminiFileBatchUploadsInChunksAndAnswersInAResponsesFile(t *testing.T) {
	s := start(t, Options{})
	s.Inject(Fault{Kind: ServerError, Match: "broken", Times: 1})
	input := string(mustJSON(t, map[string]any{"key": "a", "request": geminiBody("fine text")})) + "\n" +
		string(mustJSON(t, map[string]any{"key": "b", "request": geminiBody("broken text")})) + "\n" +
		`{"key": "c", "request": {"contents": []}}` + "\n"
	url := gemUploadStart(t, s, len(input))
	if res := gemChunk(t, url, "upload", 5, input[:10]); res.status != 400 {
		t.Errorf("a chunk at the wrong offset: %d %s", res.status, res.raw)
	}
	url = gemUploadStart(t, s, len(input))
	if res := gemChunk(t, url, "upload", 0, input[:10]); res.status != 200 || res.header.Get("X-Goog-Upload-Status") != "active" {
		t.Fatalf("first chunk: %d %s", res.status, res.raw)
	}
	res := gemChunk(t, url, "upload, finalize", 10, input[10:])
	if res.status != 200 || res.header.Get("X-Goog-Upload-Status") != "final" {
		t.Fatalf("last chunk: %d %s", res.status, res.raw)
	}
	file := path(t, res.json(t), "file", "name").(string)
	op := gemCreate(t, s, map[string]any{"batch": map[string]any{"displayName": "from-file", "inputConfig": map[string]any{"fileName": file}}})
	op = gemGet(t, s, path(t, op, "name").(string)) // BatchTurnaround 0: done at once
	responses := path(t, op, "response", "responsesFile").(string)
	if got := path(t, op, "metadata", "batchStats"); !equalJSON(got, map[string]any{"requestCount": "3", "successfulRequestCount": "1", "failedRequestCount": "2"}) {
		t.Errorf("batchStats = %v", got)
	}
	if res := send(t, s, fmtGemini, "GET", "/download/v1beta/"+responses+":download", key1, nil); res.status != 400 {
		t.Errorf("a download without alt=media: %d", res.status)
	}
	res = send(t, s, fmtGemini, "GET", "/download/v1beta/"+responses+":download?alt=media", key1, nil)
	lines := jsonl(t, res.raw)
	if len(lines) != 3 || lines[0]["key"] != "a" || lines[1]["key"] != "b" || lines[2]["key"] != "c" {
		t.Fatalf("responses = %s", res.raw)
	}
	if !has(lines[0], "response", "candidates", 0, "content") {
		t.Errorf("line a = %v", lines[0])
	}
	// Line errors are google.rpc.Status with their canonical codes: INTERNAL, INVALID_ARGUMENT.
	if path(t, lines[1], "error", "code") != 13.0 || path(t, lines[2], "error", "code") != 3.0 {
		t.Errorf("error lines = %v, %v", lines[1], lines[2])
	}
	if st := s.Stats(); st.FileUploads != 1 || st.BatchFetches != 1 {
		t.Errorf("stats = %+v", st)
	}
	if res := gemini(t, s, key1, "broken text"); res.status != 200 {
		t.Errorf("the line used up the fault, yet a call got %d", res.status)
	}
}

func TestGeminiBatchesAreTheKeysOwnAndListedNewestFirst(t *testing.T) {
	s := start(t, Options{BatchTurnaround: time.Hour})
	var names []string
	for i := range 3 {
		names = append(names, path(t, gemCreate(t, s, gemInline(fmt.Sprintf("job-%d", i), "text")), "name").(string))
	}
	if res := send(t, s, fmtGemini, "GET", "/v1beta/"+names[0], key2, nil); res.status != 404 {
		t.Errorf("another key's batch: %d", res.status)
	}
	var listed []string
	token := ""
	for range 5 {
		q := "/v1beta/batches?pageSize=2"
		if token != "" {
			q += "&pageToken=" + token
		}
		page := send(t, s, fmtGemini, "GET", q, key1, nil).json(t)
		for _, op := range page["operations"].([]any) {
			listed = append(listed, path(t, op, "metadata", "displayName").(string))
		}
		if token, _ = page["nextPageToken"].(string); token == "" {
			break
		}
	}
	if !slices.Equal(listed, []string{"job-2", "job-1", "job-0"}) {
		t.Errorf("listed %v", listed)
	}
	if res := send(t, s, fmtGemini, "POST", "/v1beta/"+names[1]+":cancel", key1, map[string]any{}); res.status != 200 {
		t.Errorf("cancel: %d %s", res.status, res.raw)
	}
	op := gemGet(t, s, names[1])
	if path(t, op, "metadata", "state") != "BATCH_STATE_CANCELLED" || path(t, op, "error", "code") != 1.0 {
		t.Errorf("a cancelled batch = %v", op)
	}
	if res := send(t, s, fmtGemini, "POST", "/v1beta/"+names[1]+":cancel", key1, map[string]any{}); res.status != 400 {
		t.Errorf("cancelling again: %d", res.status)
	}
	if st := s.Stats(); st.BatchLists != 2 || st.BatchCancels != 1 {
		t.Errorf("stats = %+v", st)
	}
}

func TestBatchLimitsAnswerTheProvidersRateLimit(t *testing.T) {
	clk := newClock(batchStart)
	s := start(t, Options{Now: clk.Now, BatchTurnaround: time.Hour, Keys: map[string]Key{key1: {MaxBatches: 1}}})
	gemCreate(t, s, gemInline("one", "text"))
	clk.Set(batchStart.Add(20 * time.Minute))
	res := send(t, s, fmtGemini, "POST", "/v1beta/models/"+gemModel+":batchGenerateContent", key1, gemInline("two", "text"))
	if res.status != 429 || path(t, res.json(t), "error", "status") != "RESOURCE_EXHAUSTED" {
		t.Fatalf("Gemini over the limit: %d %s", res.status, res.raw)
	}
	if got := path(t, geminiDetail(t, res.json(t), "RetryInfo"), "retryDelay"); got != "2400s" {
		t.Errorf("retryDelay = %v, want the 40 minutes left of the first batch", got)
	}
	id := oaUpload(t, s, oaLine("a", "text"))
	res = send(t, s, fmtOpenAI, "POST", "/v1/batches", key1, map[string]any{"input_file_id": id,
		"endpoint": "/v1/chat/completions", "completion_window": "24h"})
	if res.status != 429 || res.header.Get("Retry-After") != "2400" || path(t, res.json(t), "error", "code") != "rate_limit_exceeded" {
		t.Errorf("OpenAI over the limit: %d %v %s", res.status, res.header, res.raw)
	}
	clk.Set(batchStart.Add(time.Hour)) // the first batch has ended
	oaCreate(t, s, id, "three")
	if st := s.Stats(); st.BatchRateLimited != 2 || st.BatchSubmits != 2 {
		t.Errorf("stats = %+v", st)
	}
}

func TestAnOpenAIBatchWritesOutputAndErrorFilesInNoParticularOrder(t *testing.T) {
	clk := newClock(batchStart)
	s := start(t, Options{Now: clk.Now, BatchTurnaround: time.Hour})
	s.Inject(Fault{Kind: ServerError, Match: "broken", Times: 1})
	id := oaUpload(t, s, oaLine("r1", "first text"), oaLine("r2", "broken text"), oaLine("r3", "third text"))
	b := oaCreate(t, s, id, "job")
	if b["status"] != "validating" || path(t, b, "metadata", "name") != "job" {
		t.Errorf("created = %v", b)
	}
	get := func() map[string]any {
		return send(t, s, fmtOpenAI, "GET", "/v1/batches/"+b["id"].(string), key1, nil).json(t)
	}
	for _, c := range []struct {
		at     time.Duration
		status string
	}{{20 * time.Minute, "in_progress"}, {55 * time.Minute, "finalizing"}, {time.Hour, "completed"}} {
		clk.Set(batchStart.Add(c.at))
		if got := get()["status"]; got != c.status {
			t.Errorf("at %v: %v, want %s", c.at, got, c.status)
		}
	}
	done := get()
	if !equalJSON(done["request_counts"], map[string]any{"total": 3, "completed": 2, "failed": 1}) || done["completed_at"] == nil {
		t.Errorf("completed batch = %v", done)
	}
	out := jsonl(t, send(t, s, fmtOpenAI, "GET", "/v1/files/"+done["output_file_id"].(string)+"/content", key1, nil).raw)
	if len(out) != 2 || out[0]["custom_id"] != "r3" || out[1]["custom_id"] != "r1" {
		t.Fatalf("output = %v", out)
	}
	call := openai(t, s, key1, "first text").json(t)
	if got, want := path(t, out[1], "response", "body", "choices", 0, "message"), path(t, call, "choices", 0, "message"); !equalJSON(got, want) {
		t.Errorf("r1 answered %v, a call %v", got, want)
	}
	errs := jsonl(t, send(t, s, fmtOpenAI, "GET", "/v1/files/"+done["error_file_id"].(string)+"/content", key1, nil).raw)
	// An HTTP error is a response with its status and the error body, and error null.
	if len(errs) != 1 || errs[0]["custom_id"] != "r2" || path(t, errs[0], "response", "status_code") != 500.0 ||
		!has(errs[0], "response", "body", "error", "message") || errs[0]["error"] != nil {
		t.Errorf("errors = %v", errs)
	}
}

func TestAnOpenAIBatchWithABadInputFileFailsItsValidation(t *testing.T) {
	s := start(t, Options{})
	id := oaUpload(t, s, oaLine("r1", "text"), oaLine("r1", "text again"))
	b := oaCreate(t, s, id, "dup")
	b = send(t, s, fmtOpenAI, "GET", "/v1/batches/"+b["id"].(string), key1, nil).json(t)
	if b["status"] != "failed" || path(t, b, "errors", "data", 0, "code") != "duplicate_custom_id" || path(t, b, "errors", "data", 0, "line") != 2.0 {
		t.Errorf("batch = %v", b)
	}
	for name, body := range map[string]map[string]any{
		"a window other than 24h": {"input_file_id": id, "endpoint": "/v1/chat/completions", "completion_window": "1h"},
		"another endpoint":        {"input_file_id": id, "endpoint": "/v1/embeddings", "completion_window": "24h"},
		"no input file":           {"endpoint": "/v1/chat/completions", "completion_window": "24h"},
	} {
		if res := send(t, s, fmtOpenAI, "POST", "/v1/batches", key1, body); res.status != 400 {
			t.Errorf("%s: %d %s", name, res.status, res.raw)
		}
	}
}

func TestAnExpiredOrCancelledOpenAIBatchListsTheLinesItDidNotRun(t *testing.T) {
	for _, kind := range []string{"expired", "cancelled"} {
		t.Run(kind, func(t *testing.T) {
			clk := newClock(batchStart)
			s := start(t, Options{Now: clk.Now, BatchTurnaround: time.Hour})
			if kind == "expired" {
				s.InjectBatch(BatchFault{Kind: BatchExpire, Done: 1})
			}
			id := oaUpload(t, s, oaLine("r1", "one"), oaLine("r2", "two"), oaLine("r3", "three"))
			b := oaCreate(t, s, id, "job")
			if kind == "cancelled" {
				clk.Set(batchStart.Add(30 * time.Minute)) // r1 done at 15+10 minutes
				if c := send(t, s, fmtOpenAI, "POST", "/v1/batches/"+b["id"].(string)+"/cancel", key1, nil).json(t); c["status"] != "cancelling" {
					t.Fatalf("cancel = %v", c)
				}
			}
			clk.Set(batchStart.Add(2 * time.Hour))
			b = send(t, s, fmtOpenAI, "GET", "/v1/batches/"+b["id"].(string), key1, nil).json(t)
			if b["status"] != kind || path(t, b, "request_counts", "completed") != 1.0 {
				t.Fatalf("batch = %v", b)
			}
			errs := jsonl(t, send(t, s, fmtOpenAI, "GET", "/v1/files/"+b["error_file_id"].(string)+"/content", key1, nil).raw)
			code := map[string]string{"expired": "batch_expired", "cancelled": "batch_cancelled"}[kind]
			if len(errs) != 2 || path(t, errs[0], "error", "code") != code || errs[0]["response"] != nil {
				t.Errorf("errors = %v", errs)
			}
			if out := jsonl(t, send(t, s, fmtOpenAI, "GET", "/v1/files/"+b["output_file_id"].(string)+"/content", key1, nil).raw); len(out) != 1 || out[0]["custom_id"] != "r1" {
				t.Errorf("output = %v", out)
			}
		})
	}
}

func TestALostReplyStillMakesTheBatchAndAFailedBatchTakesNoLineFaults(t *testing.T) {
	s := start(t, Options{})
	s.InjectBatch(BatchFault{Kind: BatchLostReply, Match: "lost", Times: 1})
	s.InjectBatch(BatchFault{Kind: BatchFail, Match: "doomed", Times: 1, Reason: "no"})
	s.Inject(Fault{Kind: Malformed, Match: "text", Times: 1})
	req, _ := http.NewRequest("POST", s.URL()+"/v1beta/models/"+gemModel+":batchGenerateContent", bytes.NewReader(mustJSON(t, gemInline("lost", "text"))))
	req.Header.Set("x-goog-api-key", key1)
	if _, err := http.DefaultClient.Do(req); err == nil {
		t.Error("the reply was not lost")
	}
	op := gemCreate(t, s, gemInline("doomed", "text"))
	op = gemGet(t, s, path(t, op, "name").(string))
	if path(t, op, "metadata", "state") != "BATCH_STATE_FAILED" || path(t, op, "error", "message") != "no" {
		t.Errorf("doomed = %v", op)
	}
	page := send(t, s, fmtGemini, "GET", "/v1beta/batches", key1, nil).json(t)
	if ops := page["operations"].([]any); len(ops) != 2 || path(t, ops[1], "metadata", "displayName") != "lost" {
		t.Errorf("listing = %v", page)
	}
	// The lost batch's line took the Malformed fault; the failed batch took none.
	if st := s.Stats(); st.BatchSubmits != 2 || st.BatchDuplicates != 0 {
		t.Errorf("stats = %+v", st)
	}
	if res := gemini(t, s, key1, "text"); !strings.Contains(string(res.raw), "<<") {
		t.Errorf("a call after the batches was malformed: the fault was not used up")
	}
}
