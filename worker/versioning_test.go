package main

import (
	"strings"
	"testing"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/mhannotator/mha/workflows"
)

func TestVersioningFlags(t *testing.T) {
	t.Setenv("MHA_DEPLOYMENT_NAME", "")
	t.Setenv("MHA_BUILD_ID", "")
	f, err := parseFlags(nil)
	if err != nil {
		t.Fatal(err)
	}
	if o := f.deploymentOptions(); o != (worker.DeploymentOptions{}) {
		t.Fatalf("without --deployment-name and --build-id: %+v; want an unversioned worker", o)
	}
	if f, err = parseFlags([]string{"--deployment-name", "mha", "--build-id", "2025-06-01"}); err != nil {
		t.Fatal(err)
	}
	want := worker.DeploymentOptions{UseVersioning: true, Version: worker.WorkerDeploymentVersion{DeploymentName: "mha", BuildID: "2025-06-01"},
		DefaultVersioningBehavior: workflow.VersioningBehaviorAutoUpgrade}
	if o := f.deploymentOptions(); o != want {
		t.Fatalf("flags: %+v; want %+v", o, want)
	}
	t.Setenv("MHA_DEPLOYMENT_NAME", "mha")
	t.Setenv("MHA_BUILD_ID", "b7")
	if f, err = parseFlags(nil); err != nil || f.deploymentOptions().Version != (worker.WorkerDeploymentVersion{DeploymentName: "mha", BuildID: "b7"}) {
		t.Fatalf("from the environment: %+v, %v", f, err)
	}
	if f, err = parseFlags([]string{"--build-id", "b8"}); err != nil || f.deploymentOptions().Version.BuildID != "b8" {
		t.Fatalf("a flag over the environment: %+v, %v", f, err)
	}
	t.Setenv("MHA_DEPLOYMENT_NAME", "")
	t.Setenv("MHA_BUILD_ID", "")
	for _, args := range [][]string{{"--deployment-name", "mha"}, {"--build-id", "b7"}} {
		_, err := parseFlags(args)
		if err == nil || !strings.Contains(err.Error(), "--deployment-name") || !strings.Contains(err.Error(), "--build-id") {
			t.Fatalf("%v alone: %v; want an error naming both flags", args, err)
		}
	}
	for _, args := range [][]string{{"--deployment-name", "mha.prod", "--build-id", "b"}, {"--deployment-name", "mha:1", "--build-id", "b"},
		{"--deployment-name", "mha", "--build-id", "__b"}} {
		if _, err := parseFlags(args); err == nil {
			t.Fatalf("%v: want an error, the server refuses such names", args)
		}
	}
}

// Each workflow type registers its own versioning behaviour: a versioned worker without a
// default panics at the registration of a type that has none.
func TestAVersionedWorkerRegistersTheWorkflows(t *testing.T) {
	c, err := client.NewLazyClient(client.Options{HostPort: "127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	f, err := parseFlags([]string{"--deployment-name", "mha", "--build-id", "b1"})
	if err != nil {
		t.Fatal(err)
	}
	o := f.deploymentOptions()
	o.DefaultVersioningBehavior = workflow.VersioningBehaviorUnspecified
	w := worker.New(c, "q", worker.Options{DeploymentOptions: o})
	workflows.Register(w)
}
