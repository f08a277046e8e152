// The official Go SDK client (go.temporal.io/sdk/client) against keel's interop worker.
//
//	go build -o DIR/interop-go . && DIR/interop-go      (run by tests/interop/run)
//
// Environment: TEMPORAL_ADDRESS (default 127.0.0.1:7233), TEMPORAL_NAMESPACE (default "default"),
// KEEL_TASK_QUEUE (required: the queue the interop worker polls).
//
// Prints one line per case, "PASS go <case> (<ms> ms)" or
// "FAIL go <case>: <what was expected and what came>", and exits 1 if any case failed.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"reflect"
	"sort"
	"strings"
	"time"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/log"
	"go.temporal.io/sdk/temporal"
)

const (
	lang         = "go"
	workflowType = "InteropGreeting"
	caseTimeout  = 20 * time.Second // 5 cases and the dial stay below the runner's 120 s
)

// What the clients send: strings that need escaping (Go's encoder also escapes <, > and & as
// \u003c...), non-ASCII text, numbers of several kinds, nesting, null and booleans - everything
// must come back exactly as sent.
var (
	input = map[string]any{
		"name":           "Zoë 東京 🚀",
		"client":         lang,
		"count":          42,
		"ratio":          1.5,
		"negative":       -7,
		"maxSafeInteger": 9007199254740991,
		"ok":             true,
		"nothing":        nil,
		"tags":           []any{"a", "b", ""},
		"nested":         map[string]any{"deep": map[string]any{"list": []any{1, map[string]any{"y": "z"}, []any{}}, "empty": map[string]any{}}},
		"tricky":         "quote \" backslash \\ newline \n tab \t html <a & b> control \u0001 end",
	}
	approval  = map[string]any{"by": "ana", "comment": "looks good ✓", "level": 2}
	rejection = map[string]any{"by": "bob", "reason": "over budget"}
	renamed   = "Renée \"大阪\" 🌸" // what the update "rename" sets: non-ASCII, and a quote
)

type mismatch struct{ msg string }

func (m mismatch) Error() string { return m.msg }

func jsonText(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprintf("%#v", v)
	}
	return string(b)
}

// normal is v as encoding/json decodes it into an `any` (numbers become float64), so that values
// built here compare with values decoded from payloads.
func normal(v any) any {
	var out any
	if err := json.Unmarshal([]byte(jsonText(v)), &out); err != nil {
		panic(err)
	}
	return out
}

func show(v any, present bool) string {
	if !present {
		return "nothing"
	}
	return jsonText(v)
}

// differences lists where got differs from expected (both as decoded from JSON):
// "path: expected X, got Y".
func differences(expected, got any, path string, out []string) []string {
	if reflect.DeepEqual(expected, got) {
		return out
	}
	switch e := expected.(type) {
	case map[string]any:
		if g, ok := got.(map[string]any); ok {
			keys := make([]string, 0, len(e)+len(g))
			for k := range e {
				keys = append(keys, k)
			}
			for k := range g {
				if _, dup := e[k]; !dup {
					keys = append(keys, k)
				}
			}
			sort.Strings(keys)
			for _, k := range keys {
				ev, eok := e[k]
				gv, gok := g[k]
				if eok && gok {
					out = differences(ev, gv, path+"."+k, out)
				} else { // only one side has the key
					out = append(out, fmt.Sprintf("%s.%s: expected %s, got %s", path, k, show(ev, eok), show(gv, gok)))
				}
			}
			return out
		}
	case []any:
		if g, ok := got.([]any); ok {
			for i := 0; i < len(e) || i < len(g); i++ {
				p := fmt.Sprintf("%s[%d]", path, i)
				switch {
				case i < len(e) && i < len(g):
					out = differences(e[i], g[i], p, out)
				case i < len(e):
					out = append(out, fmt.Sprintf("%s: expected %s, got nothing", p, jsonText(e[i])))
				default:
					out = append(out, fmt.Sprintf("%s: expected nothing, got %s", p, jsonText(g[i])))
				}
			}
			return out
		}
	}
	return append(out, fmt.Sprintf("%s: expected %s, got %s", path, jsonText(expected), jsonText(got)))
}

func expectEqual(what string, expected, got any) error {
	if diffs := differences(normal(expected), got, what, nil); len(diffs) > 0 {
		return mismatch{strings.Join(diffs, "; ")}
	}
	return nil
}

func expectedResult(workflowID string) map[string]any {
	return expectedResultFor(workflowID, input["name"].(string))
}

// expectedResultFor is the result of a run that greets name.
func expectedResultFor(workflowID, name string) map[string]any {
	return map[string]any{
		"greeting":   "Hello, " + name + "!",
		"approvedBy": approval["by"],
		"input":      input,
		"approval":   approval,
		"workflowId": workflowID,
		"attempt":    1,
	}
}

func newID(name string) string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return fmt.Sprintf("interop-%s-%s-%s", lang, name, hex.EncodeToString(b))
}

func startOptions(id string) client.StartWorkflowOptions {
	// The server ends a run that a failing test left behind.
	return client.StartWorkflowOptions{
		ID:                       id,
		TaskQueue:                os.Getenv("KEEL_TASK_QUEUE"),
		WorkflowExecutionTimeout: time.Minute,
	}
}

func getResult(ctx context.Context, run client.WorkflowRun, workflowID string) error {
	var got any
	if err := run.Get(ctx, &got); err != nil {
		return err
	}
	return expectEqual("result", expectedResult(workflowID), got)
}

// start, then signal approve: the result is the activity's greeting.
func startSignalResult(ctx context.Context, c client.Client) error {
	id := newID("start-signal")
	run, err := c.ExecuteWorkflow(ctx, startOptions(id), workflowType, input)
	if err != nil {
		return err
	}
	if err := c.SignalWorkflow(ctx, id, run.GetRunID(), "approve", approval); err != nil {
		return err
	}
	return getResult(ctx, run, id)
}

// signal-with-start: the signal arrives in the run's first workflow task.
func signalWithStart(ctx context.Context, c client.Client) error {
	id := newID("signal-with-start")
	run, err := c.SignalWithStartWorkflow(ctx, id, "approve", approval, startOptions(id), workflowType, input)
	if err != nil {
		return err
	}
	return getResult(ctx, run, id)
}

func queryStage(ctx context.Context, c client.Client, id, runID, when string) error {
	v, err := c.QueryWorkflow(ctx, id, runID, "stage")
	if err != nil {
		return err
	}
	var got any
	if err := v.Get(&got); err != nil {
		return err
	}
	expected := map[string]string{"before": "waiting for approval", "after": "done"}[when]
	return expectEqual(fmt.Sprintf("query \"stage\" %s", when), expected, got)
}

// query while the run waits, then let it finish and query the closed run.
func query(ctx context.Context, c client.Client) error {
	id := newID("query")
	run, err := c.ExecuteWorkflow(ctx, startOptions(id), workflowType, input)
	if err != nil {
		return err
	}
	if err := queryStage(ctx, c, id, run.GetRunID(), "before"); err != nil {
		return err
	}
	if err := c.SignalWorkflow(ctx, id, run.GetRunID(), "approve", approval); err != nil {
		return err
	}
	if err := getResult(ctx, run, id); err != nil {
		return err
	}
	return queryStage(ctx, c, id, run.GetRunID(), "after")
}

// signal reject: the run fails with keel's application failure.
func reject(ctx context.Context, c client.Client) error {
	id := newID("reject")
	run, err := c.ExecuteWorkflow(ctx, startOptions(id), workflowType, input)
	if err != nil {
		return err
	}
	if err := c.SignalWorkflow(ctx, id, run.GetRunID(), "reject", rejection); err != nil {
		return err
	}
	var got any
	err = run.Get(ctx, &got)
	if err == nil {
		return mismatch{"result: expected a WorkflowExecutionError, got a result " + jsonText(got)}
	}
	var wfErr *temporal.WorkflowExecutionError
	if !errors.As(err, &wfErr) {
		return err
	}
	var appErr *temporal.ApplicationError
	if !errors.As(err, &appErr) {
		return mismatch{fmt.Sprintf("failure cause: expected an ApplicationError, got %T: %v", errors.Unwrap(wfErr), err)}
	}
	if err := expectEqual("failure type", "Rejected", appErr.Type()); err != nil {
		return err
	}
	if err := expectEqual("failure non-retryable", true, appErr.NonRetryable()); err != nil {
		return err
	}
	var message any
	if err := json.Unmarshal([]byte(appErr.Message()), &message); err != nil {
		return mismatch{fmt.Sprintf("failure message: expected the reject argument as JSON, got %q", appErr.Message())}
	}
	return expectEqual("failure message (parsed)", rejection, message)
}

// rename sends update "rename" with arg and waits for its outcome: the result, or the failure
// (from UpdateWorkflow or from the handle).
func rename(ctx context.Context, c client.Client, id, runID string, arg any) (any, error) {
	handle, err := c.UpdateWorkflow(ctx, client.UpdateWorkflowOptions{
		WorkflowID:   id,
		RunID:        runID,
		UpdateName:   "rename",
		Args:         []any{arg},
		WaitForStage: client.WorkflowUpdateStageCompleted,
	})
	if err != nil {
		return nil, err
	}
	var got any
	err = handle.Get(ctx, &got)
	return got, err
}

// expectRenameFailure sends update "rename" with arg and expects an ApplicationError of errType
// with text in its message.
func expectRenameFailure(ctx context.Context, c client.Client, id, runID, what string, arg any, errType, text string) error {
	got, err := rename(ctx, c, id, runID, arg)
	if err == nil {
		return mismatch{fmt.Sprintf("%s: expected an update failure, got a result %s", what, jsonText(got))}
	}
	var appErr *temporal.ApplicationError
	if !errors.As(err, &appErr) {
		return mismatch{fmt.Sprintf("%s: expected an ApplicationError, got %T: %v", what, err, err)}
	}
	if err := expectEqual(what+": failure type", errType, appErr.Type()); err != nil {
		return err
	}
	if !strings.Contains(appErr.Message(), text) {
		return mismatch{fmt.Sprintf("%s: failure message: expected it to contain %q, got %q", what, text, appErr.Message())}
	}
	return nil
}

// update "rename" while the run waits: answered with the old and the new name; the validator
// rejects an empty name; a name too long for the workflow's state fails in its handler; then the
// greeting uses the new name.
func update(ctx context.Context, c client.Client) error {
	id := newID("update")
	run, err := c.ExecuteWorkflow(ctx, startOptions(id), workflowType, input)
	if err != nil {
		return err
	}
	got, err := rename(ctx, c, id, run.GetRunID(), map[string]any{"name": renamed})
	if err != nil {
		return fmt.Errorf("update \"rename\": %w", err)
	}
	expected := map[string]any{"previous": input["name"], "name": renamed}
	if err := expectEqual("update \"rename\" result", expected, got); err != nil {
		return err
	}
	if err := expectRenameFailure(ctx, c, id, run.GetRunID(), "update \"rename\" with an empty name",
		map[string]any{"name": ""}, "UpdateRejected", "rename needs a non-empty string name"); err != nil {
		return err
	}
	if err := expectRenameFailure(ctx, c, id, run.GetRunID(), "update \"rename\" with a 600-byte name",
		map[string]any{"name": strings.Repeat("x", 600)}, "NameTooLong", "more than 511"); err != nil {
		return err
	}
	if err := c.SignalWorkflow(ctx, id, run.GetRunID(), "approve", approval); err != nil {
		return err
	}
	var result any
	if err := run.Get(ctx, &result); err != nil {
		return err
	}
	return expectEqual("result", expectedResultFor(id, renamed), result)
}

func main() {
	if os.Getenv("KEEL_TASK_QUEUE") == "" {
		fmt.Fprintln(os.Stderr, "interop-go: KEEL_TASK_QUEUE is not set")
		os.Exit(2)
	}
	address := os.Getenv("TEMPORAL_ADDRESS")
	if address == "" {
		address = "127.0.0.1:7233"
	}
	namespace := os.Getenv("TEMPORAL_NAMESPACE")
	if namespace == "" {
		namespace = "default"
	}
	quiet := log.NewStructuredLogger(slog.New(slog.NewTextHandler(os.Stderr,
		&slog.HandlerOptions{Level: slog.LevelWarn})))
	dialCtx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	c, err := client.DialContext(dialCtx, client.Options{HostPort: address, Namespace: namespace, Logger: quiet})
	cancel()
	if err != nil {
		fmt.Printf("FAIL %s setup: connect to %s: %v\n", lang, address, err)
		os.Exit(1)
	}
	defer c.Close()

	cases := []struct {
		name string
		run  func(context.Context, client.Client) error
	}{
		{"start-signal-result", startSignalResult},
		{"signal-with-start", signalWithStart},
		{"query", query},
		{"reject", reject},
		{"update", update},
	}
	failed := 0
	for _, tc := range cases {
		t0 := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), caseTimeout)
		err := tc.run(ctx, c)
		cancel()
		if err != nil {
			failed++
			fmt.Printf("FAIL %s %s: %v\n", lang, tc.name, err)
		} else {
			fmt.Printf("PASS %s %s (%d ms)\n", lang, tc.name, time.Since(t0).Milliseconds())
		}
	}
	if failed > 0 {
		c.Close()
		os.Exit(1)
	}
}
