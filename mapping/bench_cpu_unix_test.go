//go:build unix

package mapping

import "syscall"

// processCPU returns the user and system CPU time the process has used,
// in nanoseconds, so benchmarks can report CPU per op: on a shared
// machine wall time per op mostly measures the neighbours.
func processCPU() (int64, bool) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, false
	}
	return ru.Utime.Nano() + ru.Stime.Nano(), true
}
