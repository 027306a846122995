package main

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// userHZ is the unit of /proc/stat's and /proc/<pid>/stat's counters:
// USER_HZ, 100 ticks a second on every Linux architecture Go supports.
const userHZ = 100

// cpuClock is where CPU went on the whole machine: the busy time of all
// its cores (every process: the contender, this driver with its
// Segment-compatible receiver, the broker), this driver's own, and the
// contender's (zero in a clock read before it started).
type cpuClock struct {
	machine, driver, contender time.Duration
	cores                      int  // the machine's cores, as /proc/stat lists them
	ok                         bool // all could be read
}

// readCPUClock reads the machine's busy time (/proc/stat), this process's
// CPU time (getrusage) and, for pid > 0, that process's (/proc/<pid>/stat).
func readCPUClock(pid int) cpuClock {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return cpuClock{}
	}
	busy, cores, err := machineBusy(string(b))
	if err != nil {
		return cpuClock{}
	}
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return cpuClock{}
	}
	c := cpuClock{machine: busy, driver: time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), cores: cores, ok: true}
	if pid > 0 {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return cpuClock{}
		}
		if c.contender, err = processCPU(string(b)); err != nil {
			return cpuClock{}
		}
	}
	return c
}

// since is the CPU spent between c0 and c.
func (c cpuClock) since(c0 cpuClock) cpuClock {
	if !c.ok || !c0.ok {
		return cpuClock{}
	}
	return cpuClock{machine: c.machine - c0.machine, driver: c.driver - c0.driver,
		contender: c.contender - c0.contender, cores: c.cores, ok: true}
}

// machineBusy is the busy time of all cores in /proc/stat's text, and the
// number of cores: the aggregate "cpu" line's user, nice, system, irq,
// softirq and steal (guest time is inside user and nice already; idle
// and iowait are not busy), and the count of "cpuN" lines.
func machineBusy(stat string) (time.Duration, int, error) {
	lines := strings.Split(stat, "\n")
	f := strings.Fields(lines[0])
	if len(f) < 9 || f[0] != "cpu" {
		return 0, 0, errors.New("/proc/stat: no aggregate cpu line with 8 counters")
	}
	var ticks int64
	for _, i := range []int{1, 2, 3, 6, 7, 8} { // user nice system - - irq softirq steal
		n, err := strconv.ParseInt(f[i], 10, 64)
		if err != nil {
			return 0, 0, errors.New("/proc/stat: counter " + strconv.Itoa(i) + " of the cpu line: " + err.Error())
		}
		ticks += n
	}
	cores := 0
	for _, l := range lines[1:] {
		if name, _, _ := strings.Cut(l, " "); len(name) > 3 && strings.HasPrefix(name, "cpu") {
			cores++
		}
	}
	if cores == 0 {
		return 0, 0, errors.New("/proc/stat: no cpuN lines")
	}
	return time.Duration(ticks) * time.Second / userHZ, cores, nil
}

// processCPU is a process's user + system time from its /proc/<pid>/stat
// text: the 14th and 15th fields, counted after the command name in
// parentheses (which may hold spaces).
func processCPU(stat string) (time.Duration, error) {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, errors.New("/proc/<pid>/stat: no command name")
	}
	f := strings.Fields(stat[i+1:]) // f[0] is field 3, the state
	if len(f) < 13 {
		return 0, errors.New("/proc/<pid>/stat: too few fields")
	}
	var ticks int64
	for _, s := range f[11:13] { // fields 14 (utime) and 15 (stime)
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return 0, errors.New("/proc/<pid>/stat: " + err.Error())
		}
		ticks += n
	}
	return time.Duration(ticks) * time.Second / userHZ, nil
}
