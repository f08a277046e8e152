// The starter and measurer of the peer benchmark (docs/performance.md): it runs each worker
// process, starts the same workloads on each with the Go SDK client, samples the worker from
// /proc, reads the histories back and writes one table.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/sdk/client"
	"google.golang.org/protobuf/encoding/protojson"
)

type config struct {
	impls       []string
	cmds        map[string][]string
	rounds      int
	n           int
	concurrency int
	open        int
	chain       int
	steps       int
	toolRuns    int
	replays     int
	workloads   map[string]bool
	out         string
	prefix      string
	check       bool
}

// ---- /proc sampling ----

const clkTck = 100 // USER_HZ: 100 on every Linux architecture Debian ships

type procSample struct {
	cpu     float64 // seconds, user + system, all threads
	rssKiB  int64
	hwmKiB  int64
	threads int
}

func readProc(pid int) (procSample, error) {
	var s procSample
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return s, err
	}
	// Fields after the command name (which may hold spaces) start after the last ')'.
	rest := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
	if len(rest) < 13 {
		return s, errors.New("short /proc stat")
	}
	ut, _ := strconv.ParseFloat(rest[11], 64) // field 14, utime
	st, _ := strconv.ParseFloat(rest[12], 64) // field 15, stime
	s.cpu = (ut + st) / clkTck
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return s, err
	}
	for _, line := range strings.Split(string(status), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		v, _ := strconv.ParseInt(f[1], 10, 64)
		switch f[0] {
		case "VmRSS:":
			s.rssKiB = v
		case "VmHWM:":
			s.hwmKiB = v
		case "Threads:":
			s.threads = int(v)
		}
	}
	return s, nil
}

// monitor samples one worker process during one workload.
type monitor struct {
	pid        int
	start      procSample
	maxRSS     int64
	maxThreads int
	stop       chan struct{}
	done       chan struct{}
}

func beginMonitor(pid int) *monitor {
	// Reset VmHWM to the current RSS (clear_refs 5), so the peak is this workload's.
	_ = os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0)
	m := &monitor{pid: pid, stop: make(chan struct{}), done: make(chan struct{})}
	m.start, _ = readProc(pid)
	m.maxRSS, m.maxThreads = m.start.rssKiB, m.start.threads
	go func() {
		defer close(m.done)
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-m.stop:
				return
			case <-t.C:
				if s, err := readProc(pid); err == nil {
					m.maxRSS = max(m.maxRSS, s.rssKiB)
					m.maxThreads = max(m.maxThreads, s.threads)
				}
			}
		}
	}()
	return m
}

// end returns the CPU seconds used, the peak RSS (MiB) and the most threads seen.
func (m *monitor) end() (cpu, peakMiB float64, threads int) {
	close(m.stop)
	<-m.done
	s, err := readProc(m.pid)
	if err != nil {
		return math.NaN(), math.NaN(), 0
	}
	peak := max(m.maxRSS, s.rssKiB, s.hwmKiB)
	return s.cpu - m.start.cpu, float64(peak) / 1024, max(m.maxThreads, s.threads)
}

// ---- workers ----

type workerProc struct {
	cmd     *exec.Cmd
	pid     int
	version string
	exited  chan error
}

func startWorker(cfg *config, impl, queue, logPath string) (*workerProc, error) {
	argv := append(append([]string{}, cfg.cmds[impl]...), "worker", queue)
	cmd := exec.Command(argv[0], argv[1:]...)
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd.Stderr = logf
	pipe, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("%s worker: %w", impl, err)
	}
	w := &workerProc{cmd: cmd, pid: cmd.Process.Pid, exited: make(chan error, 1)}
	ready := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pipe)
		sent := false
		for sc.Scan() {
			line := sc.Text()
			fmt.Fprintln(logf, line)
			if !sent && strings.HasPrefix(line, "bench-peers-worker: ready") {
				ready <- line
				sent = true
			}
		}
		w.exited <- cmd.Wait()
		logf.Close()
	}()
	select {
	case line := <-ready:
		if i := strings.Index(line, "("); i >= 0 {
			w.version = strings.Trim(line[i:], "()")
		}
		return w, nil
	case err := <-w.exited:
		return nil, fmt.Errorf("%s worker exited before it was ready (%v; log %s)", impl, err, logPath)
	case <-time.After(60 * time.Second):
		_ = cmd.Process.Kill()
		return nil, fmt.Errorf("%s worker: no ready line within 60 s (log %s)", impl, logPath)
	}
}

func (w *workerProc) stopWorker() error {
	_ = w.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-w.exited:
		return err
	case <-time.After(30 * time.Second):
		_ = w.cmd.Process.Kill()
		<-w.exited
		return errors.New("still running 30 s after SIGTERM (killed)")
	}
}

// ---- histories ----

func fetchHistory(ctx context.Context, c client.Client, id string) ([]*historypb.HistoryEvent, error) {
	it := c.GetWorkflowHistory(ctx, id, "", false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	var evs []*historypb.HistoryEvent
	for it.HasNext() {
		e, err := it.Next()
		if err != nil {
			return nil, err
		}
		evs = append(evs, e)
	}
	return evs, nil
}

func fetchAll(ctx context.Context, c client.Client, ids []string, conc int) ([][]*historypb.HistoryEvent, error) {
	out := make([][]*historypb.HistoryEvent, len(ids))
	var firstErr atomic.Value
	forEach(len(ids), conc, func(i int) {
		h, err := fetchHistory(ctx, c, ids[i])
		if err != nil {
			firstErr.CompareAndSwap(nil, err)
		}
		out[i] = h
	})
	if e := firstErr.Load(); e != nil {
		return out, e.(error)
	}
	return out, nil
}

func ms(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e6 }

// wftLatencies: WorkflowTaskScheduled -> Started (schedule-to-start) and Started -> Completed
// (processing), in ms, from the events' server timestamps.
func wftLatencies(h []*historypb.HistoryEvent) (s2s, proc []float64) {
	when := map[int64]time.Time{}
	for _, e := range h {
		when[e.EventId] = e.EventTime.AsTime()
		switch e.EventType {
		case enumspb.EVENT_TYPE_WORKFLOW_TASK_STARTED:
			if t, ok := when[e.GetWorkflowTaskStartedEventAttributes().ScheduledEventId]; ok {
				s2s = append(s2s, ms(e.EventTime.AsTime().Sub(t)))
			}
		case enumspb.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
			if t, ok := when[e.GetWorkflowTaskCompletedEventAttributes().StartedEventId]; ok {
				proc = append(proc, ms(e.EventTime.AsTime().Sub(t)))
			}
		}
	}
	return
}

// stickyHit: the workflow task that the signal caused is a sticky hit when the first
// WorkflowTaskScheduled after WorkflowExecutionSignaled names a sticky queue (kind STICKY) and
// it is started and completed (no WorkflowTaskTimedOut - the sticky schedule-to-start timeout,
// after which the server schedules it again on the normal queue - and no WorkflowTaskFailed,
// which is how a worker that lost the run from its cache hands it back). Anything else is a
// full-history rebuild. ok is false when the history has no signal.
func stickyHit(h []*historypb.HistoryEvent) (hit, ok bool) {
	i := 0
	for i < len(h) && h[i].EventType != enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED {
		i++
	}
	if i == len(h) {
		return false, false
	}
	for ; i < len(h) && h[i].EventType != enumspb.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED; i++ {
	}
	if i+2 >= len(h) {
		return false, true
	}
	sched := h[i].GetWorkflowTaskScheduledEventAttributes()
	if sched.GetTaskQueue().GetKind() != enumspb.TASK_QUEUE_KIND_STICKY {
		return false, true
	}
	started, completed := h[i+1], h[i+2]
	return started.EventType == enumspb.EVENT_TYPE_WORKFLOW_TASK_STARTED &&
		started.GetWorkflowTaskStartedEventAttributes().ScheduledEventId == h[i].EventId &&
		completed.EventType == enumspb.EVENT_TYPE_WORKFLOW_TASK_COMPLETED, true
}

// stepOverheads: for each activity after the first, the time from the previous activity's
// ActivityTaskCompleted to its ActivityTaskStarted (ms): the worker's and the server's
// orchestration between two steps, the activity's own run excluded.
func stepOverheads(h []*historypb.HistoryEvent) []float64 {
	started := map[int64]time.Time{} // by scheduled event id
	var order []int64
	completed := map[int64]time.Time{}
	for _, e := range h {
		switch e.EventType {
		case enumspb.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
			order = append(order, e.EventId)
		case enumspb.EVENT_TYPE_ACTIVITY_TASK_STARTED:
			started[e.GetActivityTaskStartedEventAttributes().ScheduledEventId] = e.EventTime.AsTime()
		case enumspb.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
			completed[e.GetActivityTaskCompletedEventAttributes().ScheduledEventId] = e.EventTime.AsTime()
		}
	}
	var out []float64
	for k := 1; k < len(order); k++ {
		tc, ok1 := completed[order[k-1]]
		ts, ok2 := started[order[k]]
		if ok1 && ok2 {
			out = append(out, ms(ts.Sub(tc)))
		}
	}
	return out
}

// stampedGaps: the tool loop's result, {"end_us": E, "gaps_us": [...]}, from the history's
// WorkflowExecutionCompleted event: each gap is a "toolstep" activity's start minus the previous
// step's end (wall clock, microseconds, taken inside the activity), in ms.
func stampedGaps(h []*historypb.HistoryEvent) ([]float64, error) {
	if len(h) == 0 || h[len(h)-1].EventType != enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED {
		return nil, fmt.Errorf("the history does not end with WorkflowExecutionCompleted")
	}
	p := h[len(h)-1].GetWorkflowExecutionCompletedEventAttributes().GetResult().GetPayloads()
	if len(p) != 1 {
		return nil, fmt.Errorf("the result has %d payloads, expected 1", len(p))
	}
	var out struct {
		EndUs  *int64  `json:"end_us"`
		GapsUs []int64 `json:"gaps_us"`
	}
	if err := json.Unmarshal(p[0].Data, &out); err != nil || out.EndUs == nil || out.GapsUs == nil {
		return nil, fmt.Errorf("the result %q is not {\"end_us\":E,\"gaps_us\":[...]} (%v)", p[0].Data, err)
	}
	gaps := make([]float64, len(out.GapsUs))
	for i, g := range out.GapsUs {
		gaps[i] = float64(g) / 1e3
	}
	return gaps, nil
}

// ---- statistics ----

func percentile(xs []float64, p float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := append([]float64{}, xs...)
	sort.Float64s(s)
	// nearest rank
	k := int(math.Ceil(p/100*float64(len(s)))) - 1
	return s[max(0, min(k, len(s)-1))]
}

func forEach(n, conc int, f func(i int)) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for g := 0; g < max(1, conc); g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				f(i)
			}
		}()
	}
	wg.Wait()
}

// ---- one round of one implementation ----

type roundResult struct {
	Round    int                `json:"round"`
	Impl     string             `json:"impl"`
	Queue    string             `json:"task_queue"`
	Metrics  map[string]float64 `json:"metrics"`
	Failures []string           `json:"failures"`
	mu       *sync.Mutex        // fail is called from the starters' goroutines
}

func (r *roundResult) fail(format string, a ...any) {
	msg := fmt.Sprintf(format, a...)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.Failures = append(r.Failures, msg)
	fmt.Fprintf(os.Stderr, "bench-peers: %s round %d: %s\n", r.Impl, r.Round, msg)
}

func (r *roundResult) set(k string, v float64) { r.Metrics[k] = v }

// startAndWait starts ids[i] as wfType with input(i) from conc starters, each starting its share
// then waiting for each; it returns how many completed.
func startAndWait(ctx context.Context, c client.Client, queue, wfType string, ids []string,
	input func(i int) any, conc int, r *roundResult) int {
	var ok atomic.Int64
	var wg sync.WaitGroup
	per := (len(ids) + conc - 1) / max(1, conc)
	for g := 0; g < conc; g++ {
		from, to := g*per, min(len(ids), (g+1)*per)
		if from >= to {
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			runs := make([]client.WorkflowRun, 0, to-from)
			for i := from; i < to; i++ {
				run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: ids[i], TaskQueue: queue}, wfType, input(i))
				if err != nil {
					r.fail("start %s: %v", ids[i], err)
					continue
				}
				runs = append(runs, run)
			}
			for _, run := range runs {
				var out any
				if err := run.Get(ctx, &out); err != nil {
					r.fail("%s: %v", run.GetID(), err)
					continue
				}
				ok.Add(1)
			}
		}()
	}
	wg.Wait()
	return int(ok.Load())
}

func runRound(cfg *config, c client.Client, impl string, round int, versions map[string]string) roundResult {
	r := roundResult{Round: round, Impl: impl, Metrics: map[string]float64{}, mu: &sync.Mutex{}}
	stamp := time.Now().UnixMilli()
	r.Queue = fmt.Sprintf("%s-%s-%d-r%d", cfg.prefix, impl, stamp, round)
	logPath := filepath.Join(cfg.out, "logs", fmt.Sprintf("%s-round%d.log", impl, round))
	w, err := startWorker(cfg, impl, r.Queue, logPath)
	if err != nil {
		r.fail("%v", err)
		return r
	}
	versions[impl] = w.version
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	idPrefix := r.Queue
	ids := func(kind string, n int) []string {
		out := make([]string, n)
		for i := range out {
			out[i] = fmt.Sprintf("%s-%s-%d", idPrefix, kind, i)
		}
		return out
	}
	fmt.Printf("bench-peers: round %d %s (%s) on %s\n", round, impl, w.version, r.Queue)

	// 1. the one-activity workflow
	if cfg.workloads["one"] {
		list := ids("one", cfg.n)
		m := beginMonitor(w.pid)
		t0 := time.Now()
		done := startAndWait(ctx, c, r.Queue, "BenchOneActivity", list,
			func(i int) any { return map[string]any{"n": i} }, cfg.concurrency, &r)
		wall := time.Since(t0).Seconds()
		cpu, peak, threads := m.end()
		if done != cfg.n {
			r.fail("one-activity: %d of %d completed", done, cfg.n)
		}
		r.set("one_wall_s", wall)
		r.set("one_wf_per_s", float64(done)/wall)
		r.set("one_cpu_per_1000_s", cpu*1000/float64(max(done, 1)))
		r.set("one_peak_rss_mib", peak)
		r.set("one_threads", float64(threads))
		hs, err := fetchAll(ctx, c, list, cfg.concurrency)
		if err != nil {
			r.fail("one-activity histories: %v", err)
		}
		var s2s, proc []float64
		for _, h := range hs {
			a, b := wftLatencies(h)
			s2s, proc = append(s2s, a...), append(proc, b...)
		}
		r.set("wft_proc_p50_ms", percentile(proc, 50))
		r.set("wft_proc_p99_ms", percentile(proc, 99))
		r.set("wft_s2s_p50_ms", percentile(s2s, 50))
		r.set("wft_s2s_p99_ms", percentile(s2s, 99))
	}

	// 2. open runs waiting for a signal, then a burst of signals
	if cfg.workloads["burst"] {
		list := ids("wait", cfg.open)
		runs := make([]client.WorkflowRun, len(list))
		forEach(len(list), cfg.concurrency, func(i int) {
			run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: list[i], TaskQueue: r.Queue},
				"BenchSignalWait", map[string]any{"n": i})
			if err != nil {
				r.fail("start %s: %v", list[i], err)
				return
			}
			runs[i] = run
		})
		// Wait until every run has had its first workflow task (no task pending, one completed).
		pending := append([]string{}, list...)
		deadline := time.Now().Add(5 * time.Minute)
		for len(pending) > 0 && time.Now().Before(deadline) {
			still := make([]bool, len(pending))
			forEach(len(pending), cfg.concurrency, func(i int) {
				d, err := c.DescribeWorkflowExecution(ctx, pending[i], "")
				still[i] = err != nil || d.PendingWorkflowTask != nil ||
					d.WorkflowExecutionInfo.GetHistoryLength() < 4
			})
			var next []string
			for i, s := range still {
				if s {
					next = append(next, pending[i])
				}
			}
			pending = next
			if len(pending) > 0 {
				time.Sleep(200 * time.Millisecond)
			}
		}
		if len(pending) > 0 {
			r.fail("signal burst: %d runs had no first workflow task within 5 minutes", len(pending))
		}
		time.Sleep(time.Second)
		if s, err := readProc(w.pid); err == nil {
			r.set("open_rss_mib", float64(s.rssKiB)/1024)
		}
		m := beginMonitor(w.pid)
		t0 := time.Now()
		forEach(len(list), cfg.concurrency, func(i int) {
			if err := c.SignalWorkflow(ctx, list[i], "", "go", map[string]any{"i": i}); err != nil {
				r.fail("signal %s: %v", list[i], err)
			}
		})
		var done atomic.Int64
		forEach(len(runs), cfg.concurrency, func(i int) {
			if runs[i] == nil {
				return
			}
			var out any
			if err := runs[i].Get(ctx, &out); err != nil {
				r.fail("%s: %v", list[i], err)
				return
			}
			done.Add(1)
		})
		wall := time.Since(t0).Seconds()
		cpu, peak, _ := m.end()
		if int(done.Load()) != cfg.open {
			r.fail("signal burst: %d of %d completed", done.Load(), cfg.open)
		}
		r.set("burst_s", wall)
		r.set("burst_cpu_s", cpu)
		r.set("burst_peak_rss_mib", peak)
		hs, err := fetchAll(ctx, c, list, cfg.concurrency)
		if err != nil {
			r.fail("signal burst histories: %v", err)
		}
		hits, counted := 0, 0
		var s2s []float64
		for _, h := range hs {
			if hit, ok := stickyHit(h); ok {
				counted++
				if hit {
					hits++
				}
			}
			a, _ := wftLatencies(h)
			if len(a) > 1 {
				s2s = append(s2s, a[1:]...) // the tasks after the signal
			}
		}
		if counted != cfg.open {
			r.fail("signal burst: %d of %d histories have the signal", counted, cfg.open)
		}
		r.set("burst_sticky_hit_pct", 100*float64(hits)/float64(max(counted, 1)))
		r.set("burst_rebuilds", float64(counted-hits))
		r.set("burst_s2s_p99_ms", percentile(s2s, 99))
	}

	// 3. a chain of activities, then its replay
	if cfg.workloads["chain"] {
		list := ids("chain", 1)
		m := beginMonitor(w.pid)
		t0 := time.Now()
		done := startAndWait(ctx, c, r.Queue, "BenchChain", list,
			func(int) any { return map[string]any{"n": cfg.chain} }, 1, &r)
		wall := time.Since(t0).Seconds()
		cpu, _, _ := m.end()
		if done != 1 {
			r.fail("chain: not completed")
		}
		r.set("chain_wall_s", wall)
		r.set("chain_cpu_s", cpu)
		h, err := fetchHistory(ctx, c, list[0])
		if err != nil {
			r.fail("chain history: %v", err)
		} else {
			r.set("chain_events", float64(len(h)))
			path := filepath.Join(cfg.out, "histories", fmt.Sprintf("%s-chain%d-round%d.json", impl, cfg.chain, round))
			data, _ := protojson.Marshal(&historypb.History{Events: h})
			if err := os.WriteFile(path, data, 0o644); err != nil {
				r.fail("%v", err)
			} else if runs, err := replay(cfg, impl, path); err != nil {
				r.fail("replay: %v", err)
			} else {
				r.set("replay_ms", percentile(runs, 50))
			}
		}
	}

	// 4. a tool loop: short activities one after the other, as an agent calls tools; once with
	// regular activities, once with local ones
	if cfg.workloads["tool"] {
		for _, kind := range []struct{ wfType, prefix string }{
			{"BenchToolLoop", "tool_"}, {"BenchToolLoopLocal", "tool_local_"},
		} {
			var steps, histSteps, events, runMs []float64
			m := beginMonitor(w.pid)
			for k := 0; k < cfg.toolRuns; k++ {
				list := ids(fmt.Sprintf("%s%d", kind.prefix, k), 1)
				if startAndWait(ctx, c, r.Queue, kind.wfType, list,
					func(int) any { return map[string]any{"n": cfg.steps} }, 1, &r) != 1 {
					r.fail("%s %d: not completed", kind.wfType, k)
					continue
				}
				h, err := fetchHistory(ctx, c, list[0])
				if err != nil {
					r.fail("%s history: %v", kind.wfType, err)
					continue
				}
				events = append(events, float64(len(h)))
				runMs = append(runMs, ms(h[len(h)-1].EventTime.AsTime().Sub(h[0].EventTime.AsTime())))
				gaps, err := stampedGaps(h)
				if err != nil {
					r.fail("%s %d: %v", kind.wfType, k, err)
					continue
				}
				steps = append(steps, gaps...)
				if kind.prefix == "tool_" {
					histSteps = append(histSteps, stepOverheads(h)...)
				}
			}
			cpu, _, _ := m.end()
			if len(steps) != cfg.toolRuns*(cfg.steps-1) {
				r.fail("%s: %d step gaps, expected %d", kind.wfType, len(steps), cfg.toolRuns*(cfg.steps-1))
			}
			r.set(kind.prefix+"step_p50_ms", percentile(steps, 50))
			r.set(kind.prefix+"step_p99_ms", percentile(steps, 99))
			r.set(kind.prefix+"events", percentile(events, 50))
			r.set(kind.prefix+"run_ms", percentile(runMs, 50))
			r.set(kind.prefix+"cpu_per_step_ms", cpu*1000/float64(max(1, cfg.toolRuns*cfg.steps)))
			if kind.prefix == "tool_" {
				if len(histSteps) != cfg.toolRuns*(cfg.steps-1) {
					r.fail("%s: %d history gaps, expected %d", kind.wfType, len(histSteps), cfg.toolRuns*(cfg.steps-1))
				}
				r.set("tool_hist_step_p50_ms", percentile(histSteps, 50))
				r.set("tool_hist_step_p99_ms", percentile(histSteps, 99))
			}
		}
	}

	if err := w.stopWorker(); err != nil {
		r.fail("worker stop: %v (log %s)", err, logPath)
	}
	return r
}

func replay(cfg *config, impl, path string) ([]float64, error) {
	argv := append(append([]string{}, cfg.cmds[impl]...), "replay", path, strconv.Itoa(cfg.replays))
	cmd := exec.Command(argv[0], argv[1:]...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("%v: %v %s", argv, err, strings.TrimSpace(stderr.String()))
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	var v struct {
		RunsMs []float64 `json:"runs_ms"`
	}
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &v); err != nil || len(v.RunsMs) == 0 {
		return nil, fmt.Errorf("replayer printed %q", string(out))
	}
	return v.RunsMs, nil
}

// ---- the table ----

type rowDef struct {
	key, label string
	digits     int
	target     string                         // the target, "" for none
	met        func(keel, ratio float64) bool // ratio: keel/Go
}

var rows = []rowDef{
	{"one_wf_per_s", "one-activity: workflows/s", 1, "", nil},
	{"one_cpu_per_1000_s", "worker CPU per 1,000 workflows (s)", 2, "≤ 0.25× Go",
		func(_, r float64) bool { return r <= 0.25 }},
	{"one_peak_rss_mib", "peak RSS during the batch (MiB)", 1, "", nil},
	{"one_threads", "threads (most seen)", 0, "", nil},
	{"wft_proc_p50_ms", "WFT processing p50 (ms)", 1, "", nil},
	{"wft_proc_p99_ms", "WFT processing p99 (ms)", 1, "≤ 0.5× Go",
		func(_, r float64) bool { return r <= 0.5 }},
	{"wft_s2s_p50_ms", "WFT schedule-to-start p50 (ms)", 1, "", nil},
	{"wft_s2s_p99_ms", "WFT schedule-to-start p99 (ms)", 1, "", nil},
	{"open_rss_mib", "RSS with the open runs cached (MiB)", 1, "≤ 0.2× Go",
		func(_, r float64) bool { return r <= 0.2 }},
	{"burst_sticky_hit_pct", "signal burst: sticky hits (%)", 1, "keel ≥ 95 %",
		func(k, _ float64) bool { return k >= 95 }},
	{"burst_rebuilds", "signal burst: full-history rebuilds", 0, "", nil},
	{"burst_s", "signal burst: time to all completed (s)", 2, "≤ 1× Go",
		func(_, r float64) bool { return r <= 1 }},
	{"burst_cpu_s", "signal burst: worker CPU (s)", 2, "", nil},
	{"burst_s2s_p99_ms", "signal burst: WFT schedule-to-start p99 (ms)", 0, "", nil},
	{"chain_wall_s", "activity chain: wall time (s)", 2, "", nil},
	{"chain_events", "activity chain: history events", 0, "", nil},
	{"replay_ms", "replay of the chain's history, JSON in (ms)", 2, "≤ 0.1× Go",
		func(_, r float64) bool { return r <= 0.1 }},
	{"tool_step_p50_ms", "tool loop, regular activities: overhead per step p50 (ms)", 1, "", nil},
	{"tool_step_p99_ms", "tool loop, regular activities: overhead per step p99 (ms)", 1, "", nil},
	{"tool_hist_step_p50_ms", "tool loop, regular: ActivityTaskCompleted → next Started p50 (ms)", 1, "", nil},
	{"tool_hist_step_p99_ms", "tool loop, regular: ActivityTaskCompleted → next Started p99 (ms)", 1, "", nil},
	{"tool_events", "tool loop, regular activities: history events per run", 0, "", nil},
	{"tool_run_ms", "tool loop, regular activities: run, started → completed, p50 (ms)", 0, "", nil},
	{"tool_cpu_per_step_ms", "tool loop, regular activities: worker CPU per step (ms)", 2, "", nil},
	{"tool_local_step_p50_ms", "tool loop, local activities: overhead per step p50 (ms)", 2, "", nil},
	{"tool_local_step_p99_ms", "tool loop, local activities: overhead per step p99 (ms)", 2, "keel local < 25 ms",
		func(k, _ float64) bool { return k < 25 }},
	{"tool_local_events", "tool loop, local activities: history events per run", 0, "", nil},
	{"tool_local_run_ms", "tool loop, local activities: run, started → completed, p50 (ms)", 0, "", nil},
	{"tool_local_cpu_per_step_ms", "tool loop, local activities: worker CPU per step (ms)", 2, "", nil},
}

type stat struct {
	Median float64 `json:"median"`
	Min    float64 `json:"min"`
	Max    float64 `json:"max"`
	N      int     `json:"rounds"`
}

func summarize(results []roundResult, impl, key string) (stat, bool) {
	var xs []float64
	for _, r := range results {
		if r.Impl != impl {
			continue
		}
		if v, ok := r.Metrics[key]; ok && !math.IsNaN(v) && !math.IsInf(v, 0) {
			xs = append(xs, v)
		}
	}
	if len(xs) == 0 {
		return stat{}, false
	}
	sort.Float64s(xs)
	med := xs[len(xs)/2]
	if len(xs)%2 == 0 {
		med = (xs[len(xs)/2-1] + xs[len(xs)/2]) / 2
	}
	return stat{med, xs[0], xs[len(xs)-1], len(xs)}, true
}

func fmtNum(v float64, digits int) string { return strconv.FormatFloat(v, 'f', digits, 64) }

func drive(args []string) error {
	fs := flag.NewFlagSet("drive", flag.ExitOnError)
	impls := fs.String("impls", "keel,go,ts", "implementations, in the first round's order")
	keelCmd := fs.String("keel", "", "keel's worker command (gets 'worker QUEUE' or 'replay FILE N')")
	goCmd := fs.String("go", "", "the Go SDK worker command")
	tsCmd := fs.String("ts", "", "the TypeScript SDK worker command")
	cfg := &config{cmds: map[string][]string{}, workloads: map[string]bool{}}
	fs.IntVar(&cfg.rounds, "rounds", 3, "rounds (the order rotates each round)")
	fs.IntVar(&cfg.n, "n", 1000, "one-activity workflows per round")
	fs.IntVar(&cfg.concurrency, "concurrency", 16, "concurrent starters")
	fs.IntVar(&cfg.open, "open", 1000, "open runs signalled in the burst")
	fs.IntVar(&cfg.chain, "chain", 300, "activities in the chain that is replayed")
	fs.IntVar(&cfg.steps, "steps", 20, "steps of each tool loop")
	fs.IntVar(&cfg.toolRuns, "tool-runs", 5, "tool loops per round, one after the other")
	fs.IntVar(&cfg.replays, "replays", 7, "timed replays after one warm-up")
	workloads := fs.String("workloads", "one,burst,chain,tool", "which workloads")
	fs.StringVar(&cfg.out, "out", "build/bench-peers", "output directory")
	fs.StringVar(&cfg.prefix, "queue-prefix", "peers", "task queue prefix")
	fs.BoolVar(&cfg.check, "check", false, "exit 1 unless every run completed and every number is finite (the smoke)")
	_ = fs.Parse(args)
	for impl, s := range map[string]string{"keel": *keelCmd, "go": *goCmd, "ts": *tsCmd} {
		if s != "" {
			cfg.cmds[impl] = strings.Fields(s)
		}
	}
	for _, impl := range strings.Split(*impls, ",") {
		if cfg.cmds[impl] == nil {
			return fmt.Errorf("no command for implementation %q (-%s)", impl, impl)
		}
		cfg.impls = append(cfg.impls, impl)
	}
	for _, wl := range strings.Split(*workloads, ",") {
		switch wl {
		case "one", "burst", "chain", "tool":
			cfg.workloads[wl] = true
		default:
			return fmt.Errorf("unknown workload %q (one, burst, chain, tool)", wl)
		}
	}
	for _, d := range []string{"logs", "histories"} {
		if err := os.MkdirAll(filepath.Join(cfg.out, d), 0o755); err != nil {
			return err
		}
	}
	c, err := dial()
	if err != nil {
		return err
	}
	defer c.Close()

	versions := map[string]string{}
	var results []roundResult
	started := time.Now()
	for round := 0; round < cfg.rounds; round++ {
		k := len(cfg.impls)
		for j := 0; j < k; j++ {
			impl := cfg.impls[(round+j)%k]
			r := runRound(cfg, c, impl, round, versions)
			results = append(results, r)
			keys := make([]string, 0, len(r.Metrics))
			for key := range r.Metrics {
				keys = append(keys, key)
			}
			sort.Strings(keys)
			var b strings.Builder
			for _, key := range keys {
				fmt.Fprintf(&b, " %s=%.4g", key, r.Metrics[key])
			}
			fmt.Printf("bench-peers: round %d %s:%s\n", round, impl, b.String())
		}
		if round+1 < cfg.rounds { // the table so far, in case the run is cut short
			part := *cfg
			part.rounds, part.check = round+1, false
			if err := report(&part, results, versions, time.Since(started)); err != nil {
				return err
			}
		}
	}
	elapsed := time.Since(started)
	return report(cfg, results, versions, elapsed)
}

func report(cfg *config, results []roundResult, versions map[string]string, elapsed time.Duration) error {
	sdk := "go.temporal.io/sdk (version unknown)"
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			if d.Path == "go.temporal.io/sdk" {
				sdk = d.Path + " " + d.Version
			}
		}
	}
	summary := map[string]map[string]stat{}
	ratios := map[string]map[string]float64{}
	var md strings.Builder
	fmt.Fprintf(&md, "Peer benchmark: %d round(s) in rotating order, medians with min–max; "+
		"%d one-activity workflows from %d starters, %d open runs signalled at once, "+
		"a %d-activity chain (replayed %d times after a warm-up), %d tool loops of %d steps. "+
		"Workers: %s. Starter: %s. %s.\n\n",
		cfg.rounds, cfg.n, cfg.concurrency, cfg.open, cfg.chain, cfg.replays, cfg.toolRuns, cfg.steps,
		versionList(cfg, versions), sdk, elapsed.Round(time.Second))
	header := "| |"
	sep := "|---|"
	for _, impl := range cfg.impls {
		header += " " + impl + " |"
		sep += "---|"
	}
	hasGo, hasTS := contains(cfg.impls, "go"), contains(cfg.impls, "ts")
	if contains(cfg.impls, "keel") {
		if hasGo {
			header += " keel/Go |"
			sep += "---|"
		}
		if hasTS {
			header += " keel/TS |"
			sep += "---|"
		}
		header += " target | met |"
		sep += "---|---|"
	}
	fmt.Fprintln(&md, header)
	fmt.Fprintln(&md, sep)
	var missing []string
	for _, row := range rows {
		line := "| " + row.label + " |"
		any := false
		for _, impl := range cfg.impls {
			s, ok := summarize(results, impl, row.key)
			if !ok {
				line += " — |"
				if cfg.workloads[workloadOf(row.key)] {
					missing = append(missing, impl+" "+row.key)
				}
				continue
			}
			any = true
			if summary[row.key] == nil {
				summary[row.key] = map[string]stat{}
			}
			summary[row.key][impl] = s
			cell := fmtNum(s.Median, row.digits)
			if s.N > 1 {
				cell += " (" + fmtNum(s.Min, row.digits) + "–" + fmtNum(s.Max, row.digits) + ")"
			}
			line += " " + cell + " |"
		}
		if !any {
			continue
		}
		if contains(cfg.impls, "keel") {
			keel, okK := summary[row.key]["keel"]
			ratio := func(peer string) string {
				p, ok := summary[row.key][peer]
				if !okK || !ok || p.Median == 0 {
					return " — |"
				}
				if ratios[row.key] == nil {
					ratios[row.key] = map[string]float64{}
				}
				ratios[row.key]["keel/"+peer] = keel.Median / p.Median
				return " " + fmtNum(keel.Median/p.Median, 2) + " |"
			}
			if hasGo {
				line += ratio("go")
			}
			if hasTS {
				line += ratio("ts")
			}
			met := ""
			if row.met != nil && okK {
				r, ok := ratios[row.key]["keel/go"]
				if !ok {
					r = math.NaN()
				}
				switch {
				case strings.Contains(row.target, "Go") && math.IsNaN(r):
					met = "—"
				case row.met(keel.Median, r):
					met = "yes"
				default:
					met = "no"
				}
			}
			line += " " + row.target + " | " + met + " |"
		}
		fmt.Fprintln(&md, line)
	}
	var failures []string
	for _, r := range results {
		for _, f := range r.Failures {
			failures = append(failures, fmt.Sprintf("%s round %d: %s", r.Impl, r.Round, f))
		}
	}
	if len(failures) > 0 {
		fmt.Fprintf(&md, "\n%d failure(s):\n", len(failures))
		for _, f := range failures {
			fmt.Fprintf(&md, "- %s\n", f)
		}
	}
	mdPath := filepath.Join(cfg.out, "results.md")
	jsonPath := filepath.Join(cfg.out, "results.json")
	if err := os.WriteFile(mdPath, []byte(md.String()), 0o644); err != nil {
		return err
	}
	doc := map[string]any{
		"config": map[string]any{
			"impls": cfg.impls, "rounds": cfg.rounds, "n": cfg.n, "concurrency": cfg.concurrency,
			"open": cfg.open, "chain": cfg.chain, "steps": cfg.steps, "tool_runs": cfg.toolRuns,
			"replays": cfg.replays, "workloads": keysOf(cfg.workloads),
		},
		"versions": versions, "starter": sdk, "elapsed_s": elapsed.Seconds(),
		"rounds": results, "summary": summary, "ratios": ratios, "failures": failures,
	}
	data, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(jsonPath, data, 0o644); err != nil {
		return err
	}
	_, _ = io.WriteString(os.Stdout, "\n"+md.String()+"\n")
	fmt.Printf("bench-peers: wrote %s and %s\n", mdPath, jsonPath)
	if cfg.check {
		if len(failures) > 0 {
			return fmt.Errorf("%d failure(s)", len(failures))
		}
		if len(missing) > 0 {
			return fmt.Errorf("no finite value for: %s", strings.Join(missing, ", "))
		}
		fmt.Println("bench-peers: check passed: every implementation completed every workflow, every number is finite")
	}
	return nil
}

func workloadOf(key string) string {
	switch {
	case strings.HasPrefix(key, "one_"), strings.HasPrefix(key, "wft_"):
		return "one"
	case strings.HasPrefix(key, "burst_"), key == "open_rss_mib":
		return "burst"
	case strings.HasPrefix(key, "chain_"), key == "replay_ms":
		return "chain"
	}
	return "tool"
}

func versionList(cfg *config, versions map[string]string) string {
	var parts []string
	for _, impl := range cfg.impls {
		parts = append(parts, impl+" = "+versions[impl])
	}
	return strings.Join(parts, ", ")
}

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}

func keysOf(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
