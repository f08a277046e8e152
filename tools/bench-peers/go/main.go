// bench-peers-go: the Go SDK worker of the peer benchmark, and the benchmark's starter.
//
//	bench-peers-go worker QUEUE         serve the benchmark's workflows on QUEUE (SIGTERM stops)
//	bench-peers-go replay FILE N        replay a JSON history N times after a warm-up
//	bench-peers-go drive [flags]        run the benchmark (tools/bench-peers/run passes the flags)
//
// Environment: TEMPORAL_ADDRESS (default 127.0.0.1:7233), TEMPORAL_NAMESPACE (default "default").
package main

import (
	"fmt"
	"os"
	"runtime/debug"
	"strconv"
)

func sdkVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			if d.Path == "go.temporal.io/sdk" {
				return d.Version
			}
		}
	}
	return "unknown"
}

func main() {
	var err error
	switch {
	case len(os.Args) == 3 && os.Args[1] == "worker":
		err = runWorker(os.Args[2])
	case len(os.Args) == 4 && os.Args[1] == "replay":
		n, convErr := strconv.Atoi(os.Args[3])
		if convErr != nil || n < 1 {
			err = fmt.Errorf("replay: N must be a positive number, not %q", os.Args[3])
			break
		}
		err = runReplay(os.Args[2], n)
	case len(os.Args) >= 2 && os.Args[1] == "drive":
		err = drive(os.Args[2:])
	default:
		fmt.Fprintln(os.Stderr, "usage: bench-peers-go worker QUEUE | replay FILE N | drive [flags]")
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench-peers-go: %v\n", err)
		os.Exit(1)
	}
}
