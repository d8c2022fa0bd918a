package events

import (
	"context"

	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
)

// countingClient counts the calls the hub makes through it: the listing of changed runs, and
// what runs.Controller.Status and runs.QuotaClient.State call.
type countingClient struct {
	client.Client
	count func(operation string)
}

func (c countingClient) ListWorkflow(ctx context.Context, req *workflowservice.ListWorkflowExecutionsRequest) (*workflowservice.ListWorkflowExecutionsResponse, error) {
	c.count("ListWorkflowExecutions")
	return c.Client.ListWorkflow(ctx, req)
}

func (c countingClient) DescribeWorkflowExecution(ctx context.Context, id, runID string) (*workflowservice.DescribeWorkflowExecutionResponse, error) {
	c.count("DescribeWorkflowExecution")
	return c.Client.DescribeWorkflowExecution(ctx, id, runID)
}

func (c countingClient) QueryWorkflow(ctx context.Context, id, runID, queryType string, args ...any) (converter.EncodedValue, error) {
	c.count("QueryWorkflow")
	return c.Client.QueryWorkflow(ctx, id, runID, queryType, args...)
}

// GetWorkflow itself calls nothing; the result's Get reads the history once.
func (c countingClient) GetWorkflow(ctx context.Context, id, runID string) client.WorkflowRun {
	c.count("GetWorkflowExecutionHistory")
	return c.Client.GetWorkflow(ctx, id, runID)
}
