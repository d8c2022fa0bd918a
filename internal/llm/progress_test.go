package llm

import (
	"context"
	"testing"
)

func TestProgressTravelsWithTheContext(t *testing.T) {
	if f := ProgressFrom(context.Background()); f != nil {
		t.Error("a context without a callback gave one")
	}
	n := 0
	ctx := WithProgress(context.Background(), func() { n++ })
	ProgressFrom(ctx)()
	ProgressFrom(context.WithoutCancel(ctx))() // survives derived contexts
	if n != 2 {
		t.Errorf("callback called %d times, want 2", n)
	}
}
