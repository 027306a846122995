package deploy_test

import (
	"testing"
)

// TestManifests renders the base, both overlays and the HPA variant with
// kustomize, decodes every object strictly, and runs every check on each.
func TestManifests(t *testing.T) {
	w := getWorld(t)
	for _, spec := range renders {
		t.Run(spec.name, func(t *testing.T) {
			b, err := load(spec)
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range bundleChecks {
				t.Run(c.name, func(t *testing.T) {
					for _, err := range c.run(w, b) {
						t.Error(err)
					}
				})
			}
		})
	}
}

// TestRepo checks the Dockerfile, the rule file, the dashboard and the docs.
func TestRepo(t *testing.T) {
	w := getWorld(t)
	for _, c := range repoChecks {
		t.Run(c.name, func(t *testing.T) {
			r := *w.repo
			for _, err := range c.run(w, &r) {
				t.Error(err)
			}
		})
	}
}

func TestBinarySettings(t *testing.T) {
	w := getWorld(t)
	for _, name := range []string{"KAFKA_BROKERS", "SEGMENT_WRITE_KEY", "ADMIN_ADDR", "SHUTDOWN_TIMEOUT"} {
		if _, ok := w.bin.settings[name]; !ok {
			t.Errorf("run --help does not list %s; the parser or the binary changed", name)
		}
	}
	for _, name := range []string{"SEGMENT_WRITE_KEY", "INTEGRATIONS_TOPIC", "INTEGRATIONS_FILE"} {
		if s := w.bin.settings[name]; !s.mode {
			t.Errorf("run --help does not state the mode rule (%s) for %s", modeRule, name)
		}
	}
	if !w.bin.metrics["produktly_segment_consumer_lag"] || !w.bin.metrics["process_resident_memory_bytes"] {
		t.Errorf("metric names were not collected: %d names", len(w.bin.metrics))
	}
}
