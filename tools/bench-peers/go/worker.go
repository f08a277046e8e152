// The Go SDK side of the peer benchmark: the five workflow types and the noop and toolstep
// activities, a worker for them, and a replayer of one recorded history.
package main

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/log"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"
)

// Input is what the starter sends every workflow: {"n": N} (steps of a chain; 0 otherwise).
type Input struct {
	N int `json:"n"`
}

var activityOptions = workflow.ActivityOptions{StartToCloseTimeout: 10 * time.Second}

// Noop returns its argument.
func Noop(_ context.Context, in map[string]any) (map[string]any, error) { return in, nil }

// BenchOneActivity: one activity, complete with its result.
func BenchOneActivity(ctx workflow.Context, in map[string]any) (map[string]any, error) {
	ctx = workflow.WithActivityOptions(ctx, activityOptions)
	var out map[string]any
	err := workflow.ExecuteActivity(ctx, "noop", in).Get(ctx, &out)
	return out, err
}

// BenchSignalWait: wait for signal "go", then complete.
func BenchSignalWait(ctx workflow.Context, in map[string]any) (map[string]any, error) {
	var arg map[string]any
	workflow.GetSignalChannel(ctx, "go").Receive(ctx, &arg)
	return in, nil
}

// ToolStep is the tool loops' activity argument and result: the previous step's end stamp (0 in
// the first step) and the gaps measured so far (microseconds, CLOCK_REALTIME).
type ToolStep struct {
	EndUs  int64   `json:"end_us"`
	GapsUs []int64 `json:"gaps_us"`
}

// ToolStepActivity stamps the wall clock at its start and end: it appends start minus the previous
// step's end (the orchestration between two steps) to the gaps and returns its end stamp.
func ToolStepActivity(_ context.Context, in ToolStep) (ToolStep, error) {
	start := time.Now().UnixMicro()
	gaps := append(make([]int64, 0, len(in.GapsUs)+1), in.GapsUs...)
	if in.EndUs > 0 {
		gaps = append(gaps, start-in.EndUs)
	}
	return ToolStep{EndUs: time.Now().UnixMicro(), GapsUs: gaps}, nil
}

// BenchToolLoop: in.N "toolstep" activities one after the other, each given the previous one's
// result; completes with the last one's (its gaps_us has in.N-1 entries).
func BenchToolLoop(ctx workflow.Context, in Input) (ToolStep, error) {
	ctx = workflow.WithActivityOptions(ctx, activityOptions)
	out := ToolStep{GapsUs: []int64{}}
	for i := 1; i <= in.N; i++ {
		if err := workflow.ExecuteActivity(ctx, "toolstep", out).Get(ctx, &out); err != nil {
			return ToolStep{}, err
		}
	}
	return out, nil
}

// BenchToolLoopLocal: BenchToolLoop with the steps run as local activities.
func BenchToolLoopLocal(ctx workflow.Context, in Input) (ToolStep, error) {
	ctx = workflow.WithLocalActivityOptions(ctx, workflow.LocalActivityOptions{StartToCloseTimeout: 10 * time.Second})
	out := ToolStep{GapsUs: []int64{}}
	for i := 1; i <= in.N; i++ {
		if err := workflow.ExecuteLocalActivity(ctx, "toolstep", out).Get(ctx, &out); err != nil {
			return ToolStep{}, err
		}
	}
	return out, nil
}

// BenchChain: in.N activities one after the other, each given the previous one's result.
func BenchChain(ctx workflow.Context, in Input) (map[string]any, error) {
	ctx = workflow.WithActivityOptions(ctx, activityOptions)
	out := map[string]any{"n": in.N, "step": 0}
	for i := 1; i <= in.N; i++ {
		arg := map[string]any{"n": in.N, "step": i}
		if err := workflow.ExecuteActivity(ctx, "noop", arg).Get(ctx, &out); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func registerWorkflows(r interface {
	RegisterWorkflowWithOptions(any, workflow.RegisterOptions)
}) {
	r.RegisterWorkflowWithOptions(BenchOneActivity, workflow.RegisterOptions{Name: "BenchOneActivity"})
	r.RegisterWorkflowWithOptions(BenchSignalWait, workflow.RegisterOptions{Name: "BenchSignalWait"})
	r.RegisterWorkflowWithOptions(BenchChain, workflow.RegisterOptions{Name: "BenchChain"})
	r.RegisterWorkflowWithOptions(BenchToolLoop, workflow.RegisterOptions{Name: "BenchToolLoop"})
	r.RegisterWorkflowWithOptions(BenchToolLoopLocal, workflow.RegisterOptions{Name: "BenchToolLoopLocal"})
}

func quietLogger() log.Logger { return log.NewStructuredLogger(slog.New(slog.DiscardHandler)) }

func dial() (client.Client, error) {
	addr := os.Getenv("TEMPORAL_ADDRESS")
	if addr == "" {
		addr = "127.0.0.1:7233"
	}
	ns := os.Getenv("TEMPORAL_NAMESPACE")
	if ns == "" {
		ns = "default"
	}
	return client.Dial(client.Options{HostPort: addr, Namespace: ns, Logger: quietLogger()})
}

// runWorker serves queue with the SDK's defaults until SIGINT or SIGTERM.
func runWorker(queue string) error {
	c, err := dial()
	if err != nil {
		return err
	}
	defer c.Close()
	w := worker.New(c, queue, worker.Options{})
	registerWorkflows(w)
	w.RegisterActivityWithOptions(Noop, activity.RegisterOptions{Name: "noop"})
	w.RegisterActivityWithOptions(ToolStepActivity, activity.RegisterOptions{Name: "toolstep"})
	if err := w.Start(); err != nil {
		return err
	}
	fmt.Printf("bench-peers-worker: ready on task queue %s (go.temporal.io/sdk %s)\n", queue, sdkVersion())
	<-worker.InterruptCh()
	w.Stop()
	return nil
}

// runReplay replays the JSON history in path reps times after one warm-up, each time decoding
// the JSON and replaying it, and prints {"runs_ms":[...]}.
func runReplay(path string, reps int) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	r := worker.NewWorkflowReplayer()
	registerWorkflows(r)
	logger := quietLogger()
	once := func() (float64, error) {
		t0 := time.Now()
		h, err := client.HistoryFromJSON(bytes.NewReader(data), client.HistoryJSONOptions{})
		if err != nil {
			return 0, err
		}
		if err := r.ReplayWorkflowHistory(logger, h); err != nil {
			return 0, err
		}
		return float64(time.Since(t0).Nanoseconds()) / 1e6, nil
	}
	if _, err := once(); err != nil {
		return fmt.Errorf("replay of %s: %w", path, err)
	}
	out := "{\"runs_ms\":["
	for i := 0; i < reps; i++ {
		ms, err := once()
		if err != nil {
			return fmt.Errorf("replay of %s: %w", path, err)
		}
		if i > 0 {
			out += ","
		}
		out += strconv.FormatFloat(ms, 'f', 3, 64)
	}
	fmt.Println(out + "]}")
	return nil
}
