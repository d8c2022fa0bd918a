package llm

import "context"

type progressKey struct{}

// WithProgress returns a context under which a provider calls f each time a chunk of a
// streamed reply arrives. The callback travels with the call rather than the provider, so one
// provider (one connection pool) serves many calls that each report to their own activity.
func WithProgress(ctx context.Context, f func()) context.Context {
	return context.WithValue(ctx, progressKey{}, f)
}

// ProgressFrom returns the callback set by WithProgress, or nil when there is none.
func ProgressFrom(ctx context.Context) func() {
	f, _ := ctx.Value(progressKey{}).(func())
	return f
}
