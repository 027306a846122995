package integration

import (
	"fmt"
	"testing"
	"time"
)

// TestTermRightAfterStart: SIGTERM sent the moment the process was
// started, as the fault suite does to a replica that a loaded machine has
// not yet scheduled far. The harness holds the signal until the process
// has announced that it is up (its signal handler is installed by then),
// so the service drains and exits 0 instead of dying of the default
// SIGTERM action with an empty log.
func TestTermRightAfterStart(t *testing.T) {
	pl := newPipeline(t, 1)
	for i := range 3 {
		p := pl.start(fmt.Sprintf("early-%d", i), nil)
		p.term()
		p.mustExit(0, 60*time.Second)
	}
}
