package main

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestMachineBusy(t *testing.T) {
	// user nice system idle iowait irq softirq steal guest guest_nice
	stat := "cpu  1000 20 300 9000 50 4 6 70 500 0\ncpu0 500 10 150 4500 25 2 3 35 250 0\nintr 1 2 3\n"
	got, err := machineBusy(stat)
	if err != nil {
		t.Fatal(err)
	}
	// 1000+20+300+4+6+70 = 1400 ticks of 10 ms; idle, iowait and guest
	// (counted in user already) are left out.
	if want := 14 * time.Second; got != want {
		t.Errorf("busy = %s, want %s", got, want)
	}
	for _, bad := range []string{"", "cpu0 1 2 3 4 5 6 7 8\n", "cpu 1 2 3\n", "cpu 1 2 x 4 5 6 7 8\n"} {
		if _, err := machineBusy(bad); err == nil {
			t.Errorf("machineBusy(%q): no error", bad)
		}
	}
}

func TestCPUClockSince(t *testing.T) {
	c0 := cpuClock{machine: 3 * time.Second, driver: time.Second, ok: true}
	c1 := cpuClock{machine: 10 * time.Second, driver: 1500 * time.Millisecond, ok: true}
	if got, want := c1.since(c0), (cpuClock{machine: 7 * time.Second, driver: 500 * time.Millisecond, ok: true}); got != want {
		t.Errorf("since = %+v, want %+v", got, want)
	}
	if got := c1.since(cpuClock{}); got.ok {
		t.Errorf("since an unread clock = %+v, want not ok", got)
	}
	if c := readCPUClock(); !c.ok || c.machine <= 0 {
		t.Errorf("readCPUClock() = %+v on Linux, want both read", c)
	}
}

func TestPrintMachine(t *testing.T) {
	run := func(own, driver, machine time.Duration) result {
		return result{records: 1_000_000, elapsed: 4 * time.Second, cpu: own,
			used: cpuClock{machine: machine, driver: driver, ok: true}}
	}
	rep := report{runs: map[string][]result{
		// Medians: own 3 s, driver 1 s, machine 6 s, the rest 2 s.
		"service":  {run(3*time.Second, time.Second, 6*time.Second), run(2*time.Second, time.Second, 5*time.Second), run(4*time.Second, 2*time.Second, 8*time.Second)},
		"kafka-go": {{records: 1_000_000, elapsed: time.Second, cpu: time.Second}}, // no clock: left out
	}}
	var b strings.Builder
	printMachine(&b, rep)
	out := b.String()
	busy := fmt.Sprintf("%.0f%%", 100*6.0/4/float64(numCPU()))
	if want := "| service | 3.00 | 1.00 | 2.00 | 6.00 | " + busy + " |\n"; !strings.Contains(out, want) {
		t.Errorf("printMachine wrote\n%s\nwant the line %q", out, want)
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
