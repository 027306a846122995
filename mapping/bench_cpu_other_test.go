//go:build !unix

package mapping

func processCPU() (int64, bool) { return 0, false }
