// Command healthcheck is the HEALTHCHECK of the platform's distroless images, which have no
// shell, curl or wget: it GETs one URL and exits 0 when the answer is 2xx, 1 otherwise.
//
//	healthcheck http://127.0.0.1:8081/readyz
package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"
)

// timeout bounds the whole check; Docker's own timeout would kill the process without a word.
const timeout = 3 * time.Second

func main() { os.Exit(run(os.Args[1:], os.Stderr)) }

func run(args []string, stderr io.Writer) int {
	if len(args) != 1 {
		fmt.Fprintln(stderr, "usage: healthcheck URL")
		return 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, args[0], nil)
	if err != nil {
		fmt.Fprintln(stderr, "healthcheck:", err)
		return 2
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		fmt.Fprintln(stderr, "healthcheck:", err)
		return 1
	}
	defer resp.Body.Close()
	// The reply says which check failed; Docker keeps it in `docker inspect`.
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode/100 != 2 {
		fmt.Fprintf(stderr, "healthcheck: %s: %s\n%s\n", args[0], resp.Status, body)
		return 1
	}
	return 0
}
