//go:build tools

// Package tools pins the temporal CLI that `make temporal` builds into ./bin.
// It lives in its own module so the server's dependency tree stays out of the main go.mod.
package tools

import _ "github.com/temporalio/cli/cmd/temporal"
