package main

import (
	"errors"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// userHZ is the unit of /proc/stat's counters: USER_HZ, 100 ticks a
// second on every Linux architecture Go supports.
const userHZ = 100

// cpuClock is where a drain's CPU went on the whole machine: the busy time
// of all its cores (every process: the contender, this driver with its
// Segment-compatible receiver, the broker) and this driver's own.
type cpuClock struct {
	machine, driver time.Duration
	ok              bool // both could be read
}

// readCPUClock reads the machine's busy time (/proc/stat) and this
// process's CPU time (getrusage).
func readCPUClock() cpuClock {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return cpuClock{}
	}
	busy, err := machineBusy(string(b))
	if err != nil {
		return cpuClock{}
	}
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return cpuClock{}
	}
	return cpuClock{machine: busy, driver: time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), ok: true}
}

// since is the CPU spent between c0 and c.
func (c cpuClock) since(c0 cpuClock) cpuClock {
	if !c.ok || !c0.ok {
		return cpuClock{}
	}
	return cpuClock{machine: c.machine - c0.machine, driver: c.driver - c0.driver, ok: true}
}

// machineBusy is the busy time of all cores in /proc/stat's text: the
// aggregate "cpu" line's user, nice, system, irq, softirq and steal
// (guest time is inside user already); idle and iowait are not busy.
func machineBusy(stat string) (time.Duration, error) {
	line, _, _ := strings.Cut(stat, "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return 0, errors.New("/proc/stat: no aggregate cpu line with 8 counters")
	}
	var ticks int64
	for _, i := range []int{1, 2, 3, 6, 7, 8} { // user nice system idle iowait irq softirq steal
		n, err := strconv.ParseInt(f[i], 10, 64)
		if err != nil {
			return 0, errors.New("/proc/stat: counter " + strconv.Itoa(i) + " of the cpu line: " + err.Error())
		}
		ticks += n
	}
	return time.Duration(ticks) * time.Second / userHZ, nil
}
