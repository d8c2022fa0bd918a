package fake

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"
)

func TestHoldKeepsCallsInFlightUntilRelease(t *testing.T) {
	s := start(t, Options{Latency: 20 * time.Millisecond})
	s.Hold()
	s.Hold() // holding twice is holding once: one Release answers everything
	var wg sync.WaitGroup
	statuses := make([]int, 3)
	for i := range 3 {
		wg.Go(func() { statuses[i] = gemini(t, s, key1, fmt.Sprint("held ", i)).status })
	}
	// A fourth client gives up while held: a paid call it never gets.
	ctx, cancel := context.WithCancel(context.Background())
	gone := make(chan error, 1)
	go func() {
		resp, err := http.DefaultClient.Do(geminiRequest(t, s, key2, mustJSON(t, geminiBody("left")), false).WithContext(ctx))
		if err == nil {
			resp.Body.Close()
		}
		gone <- err
	}()
	eventually(t, "four requests are held", func() bool { return s.Stats().Held == 4 })
	// Held well past Latency, nothing is answered.
	time.Sleep(100 * time.Millisecond)
	if st := s.Stats(); st.Held != 4 || st.InFlight != 4 || st.Answered != 0 || st.Abandoned != 0 {
		t.Fatalf("while held: %+v", st)
	}
	cancel()
	if err := <-gone; err == nil {
		t.Fatal("the cancelled request got an answer")
	}
	eventually(t, "the abandoned request ends", func() bool { return s.Stats().InFlight == 3 })
	if st := s.Stats(); st.Held != 3 || st.Abandoned != 1 || st.Answered != 0 || st.ByKey[key2].Accepted != 1 {
		t.Fatalf("after the client left: %+v", st)
	}
	s.Release()
	wg.Wait()
	for i, code := range statuses {
		if code != 200 {
			t.Errorf("held request %d: status %d", i, code)
		}
	}
	st := s.Stats()
	if st.Answered != 3 || st.Abandoned != 1 || st.Held != 0 || st.ByKey[key1].Accepted != 3 {
		t.Fatalf("after Release: %+v", st)
	}
	// Released: answers flow again, and a second Release changes nothing.
	s.Release()
	if res := gemini(t, s, key1, "after"); res.status != 200 || s.Stats().Answered != 4 {
		t.Fatalf("after Release: status %d, stats %+v", res.status, s.Stats())
	}
}

func TestFaultedAndRefusedRequestsAreNeitherAnsweredNorAbandoned(t *testing.T) {
	s := start(t, Options{Keys: map[string]Key{key1: {RPM: 1}}})
	s.Inject(Fault{Kind: ServerError, Status: 500, Times: 1})
	gemini(t, s, key1, "faulted")
	gemini(t, s, key1, "accepted")
	gemini(t, s, key1, "rate limited")
	gemini(t, s, "bad-key", "rejected")
	if st := s.Stats(); st.Answered != 1 || st.Abandoned != 0 {
		t.Fatalf("stats %+v; want only the accepted request answered", st)
	}
}

func TestCloseEndsHeldRequests(t *testing.T) {
	s, err := Start(Options{Keys: map[string]Key{key1: {}}})
	if err != nil {
		t.Fatal(err)
	}
	s.Hold()
	errs := make(chan error, 1)
	go func() {
		resp, err := http.DefaultClient.Do(geminiRequest(t, s, key1, mustJSON(t, geminiBody(plainText)), false))
		if err == nil {
			resp.Body.Close()
		}
		errs <- err
	}()
	eventually(t, "the request is held", func() bool { return s.Stats().Held == 1 })
	closed := make(chan error, 1)
	go func() { closed <- s.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Errorf("Close: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close waited for a held request")
	}
	if err := <-errs; err == nil {
		t.Error("the held request was answered after Close")
	}
	if st := s.Stats(); st.Abandoned != 1 || st.Answered != 0 || st.Held != 0 {
		t.Errorf("stats %+v", st)
	}
}
