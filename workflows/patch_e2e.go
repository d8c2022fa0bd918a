//go:build mha_e2e_patched

package workflows

import "go.temporal.io/sdk/workflow"

// This file is only in the worker the upgrade end-to-end test builds (-tags mha_e2e_patched)
// as "build B": a change to the run loop, shipped the way every change to workflow code
// ships, behind workflow.GetVersion. A run that started on build A moves to B at its first
// workflow task after B became current; B replays its history, which never reached the
// patched code, so replay matches; the run then reaches it live when it ends, and records the
// marker of patchChange: the test finds it in the run's history, proof that B's code took
// the live run over.

// patchChange is the change ID of the patch; e2e/upgrade_test.go looks for it.
const patchChange = "e2e-finish-note"

func init() {
	patchAtFinish = func(ctx workflow.Context) {
		if workflow.GetVersion(ctx, patchChange, workflow.DefaultVersion, 1) == 1 {
			workflow.GetLogger(ctx).Info("Run finished on the patched build")
		}
	}
}
