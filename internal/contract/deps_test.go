package contract

import (
	"os/exec"
	"strings"
	"testing"
)

// TestSteeringLinksNeitherTheStoreNorTheProviders keeps the packages that steer runs, and the
// workflow code, free of what only the worker needs: a program that starts, pauses or reads
// runs must not link SQLite or the LLM providers, and workflow code must not depend on the
// activities' implementation.
func TestSteeringLinksNeitherTheStoreNorTheProviders(t *testing.T) {
	forbidden := []string{"modernc.org/sqlite", "github.com/mhannotator/mha/internal/store",
		"github.com/mhannotator/mha/internal/llm", "github.com/mhannotator/mha/activities"}
	for _, pkg := range []string{"github.com/mhannotator/mha/internal/contract", "github.com/mhannotator/mha/internal/runs",
		"github.com/mhannotator/mha/workflows"} {
		out, err := exec.Command("go", "list", "-deps", pkg).Output()
		if err != nil {
			t.Fatalf("go list -deps %s: %v", pkg, err)
		}
		for dep := range strings.FieldsSeq(string(out)) {
			ours := strings.HasPrefix(dep, "github.com/mhannotator/mha/")
			if pkg == "github.com/mhannotator/mha/internal/contract" && ours && dep != pkg && dep != "github.com/mhannotator/mha/internal/labels" {
				t.Errorf("the contract imports %s; it may import only the label catalogue of ours", dep)
			}
			for _, f := range forbidden {
				if dep == f || strings.HasPrefix(dep, f+"/") {
					t.Errorf("%s depends on %s", pkg, dep)
				}
			}
		}
	}
}
