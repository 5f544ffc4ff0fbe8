// Command tidemark-porcupine checks a Tidemark chaos history (JSON, written by chaos-tests/lib/history.ts)
// for linearizability with Porcupine and writes Porcupine's HTML view of the violating series.
//
// The model: every series is an independent object (Porcupine partition) whose state is the set of
// (timestamp, value) samples written to it. A write adds one sample; a read returns the whole set and is
// legal only if it equals the state at its linearization point. Writes with an unknown outcome may take
// effect at any time after their invocation (their return is the end of the history); failed writes and
// failed or unknown reads are left out (they have no effect and observed nothing).
//
//	tidemark-porcupine -history h.json [-html out.html] [-timeout 60s]
//
// Prints one JSON line: {"result":"Ok|Illegal|Unknown","series":N,"operations":N,"illegal":[...],"unknown":[...]}.
// Exit status: 0 Ok, 2 Illegal, 3 Unknown (the time budget ran out), 1 bad input.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/anishathalye/porcupine"
)

type historyOp struct {
	ID       int         `json:"id"`
	Process  int         `json:"process"`
	Type     string      `json:"type"`
	Series   string      `json:"series"`
	Invoke   int64       `json:"invoke"`
	Complete *int64      `json:"complete"`
	Outcome  string      `json:"outcome"`
	T        float64     `json:"t"`
	V        float64     `json:"v"`
	Samples  [][]float64 `json:"samples"`
}

type history struct {
	Version int         `json:"version"`
	Ops     []historyOp `json:"ops"`
}

type input struct {
	write  bool
	series string
	sample string // "t=v" for writes
}

// A state is the canonical, sorted "t=v" list joined by commas: comparable with ==, cheap to hash.
func canonical(samples []string) string {
	sort.Slice(samples, func(i, j int) bool {
		a, _ := strconv.ParseFloat(strings.SplitN(samples[i], "=", 2)[0], 64)
		b, _ := strconv.ParseFloat(strings.SplitN(samples[j], "=", 2)[0], 64)
		return a < b
	})
	return strings.Join(samples, ",")
}

func sampleString(t, v float64) string {
	return strconv.FormatFloat(t, 'f', -1, 64) + "=" + strconv.FormatFloat(v, 'g', -1, 64)
}

func split(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, ",")
}

var model = porcupine.Model{
	Partition: func(h []porcupine.Operation) [][]porcupine.Operation {
		by := map[string][]porcupine.Operation{}
		var keys []string
		for _, op := range h {
			k := op.Input.(input).series
			if _, ok := by[k]; !ok {
				keys = append(keys, k)
			}
			by[k] = append(by[k], op)
		}
		out := make([][]porcupine.Operation, 0, len(keys))
		for _, k := range keys {
			out = append(out, by[k])
		}
		return out
	},
	Init: func() interface{} { return "" },
	Step: func(state, in, out interface{}) (bool, interface{}) {
		s := state.(string)
		i := in.(input)
		if i.write {
			cur := split(s)
			for _, x := range cur {
				if x == i.sample {
					return true, s
				}
			}
			return true, canonical(append(cur, i.sample))
		}
		return out.(string) == s, s
	},
	Equal: func(a, b interface{}) bool { return a.(string) == b.(string) },
	DescribeOperation: func(in, out interface{}) string {
		i := in.(input)
		if i.write {
			return fmt.Sprintf("write(%s, %s)", i.series, i.sample)
		}
		return fmt.Sprintf("read(%s) -> {%s}", i.series, out.(string))
	},
	DescribeState: func(state interface{}) string { return "{" + state.(string) + "}" },
}

func toOperations(h history) ([]porcupine.Operation, error) {
	var end int64
	for _, op := range h.Ops {
		if op.Invoke > end {
			end = op.Invoke
		}
		if op.Complete != nil && *op.Complete > end {
			end = *op.Complete
		}
	}
	ops := make([]porcupine.Operation, 0, len(h.Ops))
	for _, op := range h.Ops {
		switch op.Type {
		case "write":
			if op.Outcome == "failed" {
				continue
			}
			ret := end + 1
			if op.Outcome == "ok" {
				if op.Complete == nil {
					return nil, fmt.Errorf("op %d: ok without a completion time", op.ID)
				}
				ret = *op.Complete
			} else if op.Outcome != "unknown" {
				return nil, fmt.Errorf("op %d: outcome %q", op.ID, op.Outcome)
			}
			ops = append(ops, porcupine.Operation{
				ClientId: op.Process, Input: input{true, op.Series, sampleString(op.T, op.V)},
				Call: op.Invoke, Output: "", Return: ret,
			})
		case "read":
			if op.Outcome != "ok" {
				continue
			}
			if op.Complete == nil {
				return nil, fmt.Errorf("op %d: ok without a completion time", op.ID)
			}
			got := make([]string, 0, len(op.Samples))
			for _, s := range op.Samples {
				if len(s) != 2 {
					return nil, fmt.Errorf("op %d: a sample is not [t, v]", op.ID)
				}
				got = append(got, sampleString(s[0], s[1]))
			}
			ops = append(ops, porcupine.Operation{
				ClientId: op.Process, Input: input{false, op.Series, ""},
				Call: op.Invoke, Output: canonical(got), Return: *op.Complete,
			})
		default:
			return nil, fmt.Errorf("op %d: type %q", op.ID, op.Type)
		}
		if ops[len(ops)-1].Return < ops[len(ops)-1].Call {
			return nil, fmt.Errorf("op %d: completes before it is invoked", op.ID)
		}
	}
	return ops, nil
}

type report struct {
	Result     string   `json:"result"`
	Series     int      `json:"series"`
	Operations int      `json:"operations"`
	Illegal    []string `json:"illegal"`
	Unknown    []string `json:"unknown"`
	HTML       string   `json:"html,omitempty"`
}

func main() {
	path := flag.String("history", "", "history JSON file")
	html := flag.String("html", "", "where to write the visualization of violating series")
	timeout := flag.Duration("timeout", 60*time.Second, "time budget for the whole check")
	flag.Parse()
	if *path == "" {
		fmt.Fprintln(os.Stderr, "usage: tidemark-porcupine -history h.json [-html out.html] [-timeout 60s]")
		os.Exit(1)
	}
	raw, err := os.ReadFile(*path)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	var h history
	if err := json.Unmarshal(raw, &h); err != nil {
		fmt.Fprintln(os.Stderr, "history:", err)
		os.Exit(1)
	}
	ops, err := toOperations(h)
	if err != nil {
		fmt.Fprintln(os.Stderr, "history:", err)
		os.Exit(1)
	}
	// Check series by series so the report names the violating ones; each gets a share of the budget.
	parts := model.Partition(ops)
	rep := report{Result: "Ok", Series: len(parts), Operations: len(ops), Illegal: []string{}, Unknown: []string{}}
	deadline := time.Now().Add(*timeout)
	single := model
	single.Partition = nil
	var bad []porcupine.Operation
	for i, p := range parts {
		// An even share of what is left, but at least 2 s: most series take microseconds, so the
		// shares of the easy ones flow to the hard ones.
		left := time.Until(deadline) / time.Duration(len(parts)-i)
		if left < 2*time.Second {
			left = 2 * time.Second
		}
		switch porcupine.CheckOperationsTimeout(single, p, left) {
		case porcupine.Illegal:
			rep.Illegal = append(rep.Illegal, p[0].Input.(input).series)
			bad = append(bad, p...)
		case porcupine.Unknown:
			rep.Unknown = append(rep.Unknown, p[0].Input.(input).series)
		}
	}
	code := 0
	if len(rep.Illegal) > 0 {
		rep.Result, code = "Illegal", 2
		if *html != "" {
			budget := time.Until(deadline)
			if budget < 10*time.Second {
				budget = 10 * time.Second
			}
			_, info := porcupine.CheckOperationsVerbose(model, bad, budget)
			if err := porcupine.VisualizePath(model, info, *html); err != nil {
				fmt.Fprintln(os.Stderr, "visualization:", err)
			} else {
				rep.HTML = *html
			}
		}
	} else if len(rep.Unknown) > 0 {
		rep.Result, code = "Unknown", 3
	}
	out, _ := json.Marshal(rep)
	fmt.Println(string(out))
	os.Exit(code)
}
