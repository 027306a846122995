package main

import (
	"cmp"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"
)

// report is a whole run: every contender's repeated drains, and the
// single-run scenarios (Segment latency, live traffic).
type report struct {
	runs  map[string][]result
	extra []result
}

// summary is the median and the spread (min–max) of one figure over a
// contender's runs.
type summary struct{ median, min, max float64 }

func summarise(rs []result, f func(result) float64) summary {
	v := make([]float64, len(rs))
	for i, r := range rs {
		v[i] = f(r)
	}
	slices.Sort(v)
	s := summary{min: v[0], max: v[len(v)-1]}
	if n := len(v); n%2 == 1 {
		s.median = v[n/2]
	} else {
		s.median = (v[n/2-1] + v[n/2]) / 2
	}
	return s
}

func printReport(w io.Writer, o options, rep report) {
	host, _ := os.Hostname()
	fmt.Fprintf(w, "\n%d records, %d partitions, %.1f%% bad, %d accounts (Zipf s=%.2f); %d runs per contender; machine: %s, %d cores, load average %s\n\n",
		o.records, o.partitions, o.badShare*100, o.accounts, o.zipf, o.runs, host, numCPU(), loadAverage())
	fmt.Fprintln(w, "| contender | CPU-µs per record, median (min–max) | events/s, median (min–max) | peak RSS (max) | CPU ÷ baseline | events/s ÷ kafka-go | delivered |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|---|")
	cpu := func(r result) float64 { return r.cpuPerRecord() }
	rate := func(r result) float64 { return r.rate() }
	var baseCPU, kgoRate float64
	if rs := rep.runs["baseline"]; len(rs) > 0 {
		baseCPU = summarise(rs, cpu).median
	}
	if rs := rep.runs["kafka-go"]; len(rs) > 0 {
		kgoRate = summarise(rs, rate).max // the bench's fastest kafka-go consumer
	}
	for _, c := range contenders {
		rs := rep.runs[c.key]
		if len(rs) == 0 {
			continue
		}
		cs, ts := summarise(rs, cpu), summarise(rs, rate)
		var peak int64
		for _, r := range rs {
			peak = max(peak, r.peakRSS)
		}
		name := c.name
		switch c.key {
		case "baseline":
			name = strings.Replace(name, "the baseline commit", o.baselineRev, 1)
		case "small":
			name = fmt.Sprintf("%s (SEGMENT_BATCH_SIZE=%d)", name, o.smallBatch)
		}
		ratioCPU, ratioRate := "", ""
		if baseCPU > 0 {
			ratioCPU = fmt.Sprintf("%.2f", cs.median/baseCPU)
		}
		if kgoRate > 0 {
			ratioRate = fmt.Sprintf("%.0f%%", 100*ts.median/kgoRate)
		}
		note := rs[len(rs)-1].note
		if note == "" {
			note = "n/a (no Segment)"
		}
		fmt.Fprintf(w, "| %s | %.2f (%.2f–%.2f) | %.0f (%.0f–%.0f) | %d MB | %s | %s | %s |\n",
			name, cs.median, cs.min, cs.max, ts.median, ts.min, ts.max, peak>>20, ratioCPU, ratioRate, note)
	}
	if a, s := rep.runs["accounts"], rep.runs["service"]; len(a) > 0 && len(s) > 0 {
		fmt.Fprintf(w, "\naccounts ÷ single source (HEAD, medians): CPU per record %.2f, events/s %.2f\n",
			summarise(a, cpu).median/summarise(s, cpu).median, summarise(a, rate).median/summarise(s, rate).median)
	}
	if m, s := rep.runs["small"], rep.runs["service"]; len(m) > 0 && len(s) > 0 {
		// How much of accounts mode's extra CPU its request size explains.
		fmt.Fprintf(w, "single source in batches of %d ÷ single source (HEAD, medians): CPU per record %.2f\n",
			o.smallBatch, summarise(m, cpu).median/summarise(s, cpu).median)
		if a := rep.runs["accounts"]; len(a) > 0 {
			fmt.Fprintf(w, "accounts ÷ single source in batches of %d (HEAD, medians): CPU per record %.2f\n",
				o.smallBatch, summarise(a, cpu).median/summarise(m, cpu).median)
		}
	}
	printMachine(w, rep)
	if len(rep.extra) > 0 {
		fmt.Fprintln(w, "\n| scenario (one run) | events/s | MB/s | CPU-µs per record | peak RSS | p50 / p99 latency | notes |")
		fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|---|")
		for _, r := range rep.extra {
			lat := "n/a (backlog)"
			if r.p99 > 0 {
				lat = fmt.Sprintf("%s / %s", r.p50.Round(time.Millisecond), r.p99.Round(time.Millisecond))
			}
			fmt.Fprintf(w, "| %s | %.0f | %.1f | %.2f | %d MB | %s | %s |\n",
				r.name, r.rate(), r.mbps(), r.cpuPerRecord(), r.peakRSS>>20, lat, r.note)
		}
	}
	fmt.Fprintln(w, "\nper run:")
	for _, c := range contenders {
		for i, r := range rep.runs[c.key] {
			fmt.Fprintf(w, "- %s run %d: %d records in %s, CPU %s, %.2f CPU-µs/record, %.0f events/s, peak RSS %d MB\n",
				c.key, i+1, r.records, r.elapsed.Round(time.Millisecond), r.cpu.Round(time.Millisecond), r.cpuPerRecord(), r.rate(), r.peakRSS>>20)
		}
	}
}

// printMachine tells where the machine's CPU went while each contender
// drained: the contender's own, this driver's (for the services, most of
// it the Segment-compatible receiver), and the rest (the broker, the
// kernel's work no process is charged for, anything else running), per
// record, and how busy the machine's cores were. All from one run per
// contender, the one whose whole-machine CPU per record is the median,
// so that the parts add up; all measured from the contender's start to
// the drain's end. A throughput ratio between contenders that share a
// machine of few cores with the broker and the receiver is also a ratio
// of what each leaves the others.
func printMachine(w io.Writer, rep report) {
	header := false
	for _, c := range contenders {
		rs := slices.DeleteFunc(slices.Clone(rep.runs[c.key]), func(r result) bool { return !r.used.ok || r.records == 0 || r.used.cores == 0 })
		if len(rs) == 0 {
			continue
		}
		if !header {
			header = true
			fmt.Fprintf(w, "\nwhere the machine's CPU went during the drains (CPU-µs per record, from the contender's start to the drain's end; of each contender the run whose whole-machine figure is the median; %d cores):\n\n", rs[0].used.cores)
			fmt.Fprintln(w, "| contender | the contender | the bench driver (its Segment receiver) | the rest (broker, kernel, other) | whole machine | cores busy |")
			fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|")
		}
		slices.SortFunc(rs, func(a, b result) int { return cmp.Compare(a.perRecord(a.used.machine), b.perRecord(b.used.machine)) })
		r := rs[(len(rs)-1)/2]
		u := r.used
		fmt.Fprintf(w, "| %s | %.2f | %.2f | %.2f | %.2f | %.0f%% |\n", c.key,
			r.perRecord(u.contender), r.perRecord(u.driver), r.perRecord(u.machine-u.driver-u.contender), r.perRecord(u.machine),
			100*u.machine.Seconds()/r.elapsed.Seconds()/float64(u.cores))
	}
}

// loadAverage is the machine's 1, 5 and 15 minute load average.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}
