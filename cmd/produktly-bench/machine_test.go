package main

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
)

func TestMachineBusy(t *testing.T) {
	// user nice system idle iowait irq softirq steal guest guest_nice
	stat := "cpu  1000 20 300 9000 50 4 6 70 500 0\ncpu0 500 10 150 4500 25 2 3 35 250 0\ncpu1 500 10 150 4500 25 2 3 35 250 0\nintr 1 2 3\nctxt 5\n"
	got, cores, err := machineBusy(stat)
	if err != nil {
		t.Fatal(err)
	}
	// 1000+20+300+4+6+70 = 1400 ticks of 10 ms; idle, iowait and guest
	// (counted in user already) are left out.
	if want := 14 * time.Second; got != want || cores != 2 {
		t.Errorf("busy = %s over %d cores, want %s over 2", got, cores, want)
	}
	for _, bad := range []string{"", "cpu0 1 2 3 4 5 6 7 8\n", "cpu 1 2 3\n", "cpu 1 2 x 4 5 6 7 8\ncpu0 1 2 3 4 5 6 7 8\n", "cpu 1 2 3 4 5 6 7 8\nintr 1\n"} {
		if _, _, err := machineBusy(bad); err == nil {
			t.Errorf("machineBusy(%q): no error", bad)
		}
	}
}

func TestProcessCPU(t *testing.T) {
	// pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime cutime ...
	stat := "4242 (a (b) c) S 1 4242 4242 0 -1 4194560 900 0 0 0 250 75 1000 2000 20 0 9 0\n"
	got, err := processCPU(stat)
	if err != nil {
		t.Fatal(err)
	}
	// utime 250 + stime 75 ticks; the children's (1000, 2000) are not its own.
	if want := 3250 * time.Millisecond; got != want {
		t.Errorf("processCPU = %s, want %s", got, want)
	}
	for _, bad := range []string{"", "4242 (x", "4242 (x) S 1 2 3\n", "4242 (x) S 1 4242 4242 0 -1 4194560 900 0 0 0 x 75 0\n"} {
		if _, err := processCPU(bad); err == nil {
			t.Errorf("processCPU(%q): no error", bad)
		}
	}
}

func TestCPUClockSince(t *testing.T) {
	c0 := cpuClock{machine: 3 * time.Second, driver: time.Second, cores: 2, ok: true}
	c1 := cpuClock{machine: 10 * time.Second, driver: 1500 * time.Millisecond, contender: 4 * time.Second, cores: 2, ok: true}
	if got, want := c1.since(c0), (cpuClock{machine: 7 * time.Second, driver: 500 * time.Millisecond, contender: 4 * time.Second, cores: 2, ok: true}); got != want {
		t.Errorf("since = %+v, want %+v", got, want)
	}
	if got := c1.since(cpuClock{}); got.ok {
		t.Errorf("since an unread clock = %+v, want not ok", got)
	}
	// Enough CPU of its own that /proc counts some ticks of it.
	for start := time.Now(); time.Since(start) < 100*time.Millisecond; {
	}
	if c := readCPUClock(os.Getpid()); !c.ok || c.machine <= 0 || c.cores < 1 || c.contender <= 0 {
		t.Errorf("readCPUClock(own pid) = %+v on Linux, want everything read", c)
	}
}

func TestPrintMachine(t *testing.T) {
	run := func(own, driver, machine time.Duration) result {
		return result{records: 1_000_000, elapsed: 4 * time.Second, cpu: own + time.Second, // cpu: to the exit, more
			used: cpuClock{machine: machine, driver: driver, contender: own, cores: 2, ok: true}}
	}
	rep := report{runs: map[string][]result{
		// The median run by whole-machine CPU is the first: 6 s.
		"service":  {run(3*time.Second, time.Second, 6*time.Second), run(2*time.Second, time.Second, 5*time.Second), run(2*time.Second, 4*time.Second, 8*time.Second)},
		"kafka-go": {{records: 1_000_000, elapsed: time.Second, cpu: time.Second}}, // no clock: left out
	}}
	var b strings.Builder
	printMachine(&b, rep)
	out := b.String()
	busy := fmt.Sprintf("%.0f%%", 100*6.0/4/2)
	if want := "| service | 3.00 | 1.00 | 2.00 | 6.00 | " + busy + " |\n"; !strings.Contains(out, want) {
		t.Errorf("printMachine wrote\n%s\nwant the line %q", out, want)
	}
	if !strings.Contains(out, "2 cores") {
		t.Errorf("printMachine does not give the clock's cores:\n%s", out)
	}
	if strings.Contains(out, "kafka-go") {
		t.Errorf("printMachine listed a contender without a clock:\n%s", out)
	}
	b.Reset()
	printMachine(&b, report{runs: map[string][]result{"kafka-go": rep.runs["kafka-go"]}})
	if b.Len() != 0 {
		t.Errorf("printMachine wrote %q without a clock read", b.String())
	}
}
