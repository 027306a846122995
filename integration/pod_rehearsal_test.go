package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/segmentio/kafka-go"
	"github.com/testcontainers/testcontainers-go"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

// The pod rehearsal runs the service image (SERVICE_IMAGE, default the tag
// scripts/images.sh service gives it) under Docker the way the production
// overlay's Deployment runs it: its user, read-only root filesystem,
// dropped capabilities, no privilege escalation, memory and CPU limits,
// environment (ConfigMap plus a stand-in Secret), args, probes and grace
// period, all read from the rendered manifests. Only what points the pod at
// this test's world is overridden: the brokers (the containerized Kafka's
// SASL_SSL listener), the topics, the group, the Segment endpoint, the CA
// file (mounted read-only, as a Secret volume would be) and, because the
// container shares the host's network, the admin port when the manifest's
// is taken.

const defaultServiceImage = "produktly-segment:ci"

// podSpec is what the rehearsal takes from the rendered production overlay.
type podSpec struct {
	container corev1.Container
	pod       corev1.PodSpec
	config    map[string]string // the ConfigMap the container's envFrom names
	grace     int
}

// renderProduction renders deploy/overlays/production with kustomize (as
// the deploy tests and `kubectl apply -k` do) and returns the Deployment's
// container and the ConfigMap it reads.
func renderProduction(t *testing.T) podSpec {
	t.Helper()
	dir, err := filepath.Abs(filepath.Join("..", "deploy", "overlays", "production"))
	if err != nil {
		t.Fatal(err)
	}
	res, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		t.Fatalf("render %s: %v", dir, err)
	}
	var dep *appsv1.Deployment
	maps := map[string]map[string]string{}
	for _, r := range res.Resources() {
		b, err := r.AsYAML()
		if err != nil {
			t.Fatal(err)
		}
		switch r.GetKind() {
		case "Deployment":
			dep = &appsv1.Deployment{}
			if err := yaml.Unmarshal(b, dep); err != nil {
				t.Fatal(err)
			}
		case "ConfigMap":
			var cm corev1.ConfigMap
			if err := yaml.Unmarshal(b, &cm); err != nil {
				t.Fatal(err)
			}
			maps[cm.Name] = cm.Data
		}
	}
	if dep == nil || len(dep.Spec.Template.Spec.Containers) != 1 {
		t.Fatalf("production overlay: want a Deployment with one container")
	}
	ps := podSpec{pod: dep.Spec.Template.Spec, container: dep.Spec.Template.Spec.Containers[0], config: map[string]string{}}
	for _, ef := range ps.container.EnvFrom {
		if ef.ConfigMapRef == nil {
			t.Fatalf("envFrom %+v: only ConfigMaps are rehearsed", ef)
		}
		data, ok := maps[ef.ConfigMapRef.Name]
		if !ok {
			t.Fatalf("envFrom names ConfigMap %s, which the overlay does not render", ef.ConfigMapRef.Name)
		}
		for k, v := range data {
			ps.config[k] = v
		}
	}
	if ps.pod.TerminationGracePeriodSeconds == nil {
		t.Fatal("the Deployment sets no terminationGracePeriodSeconds")
	}
	ps.grace = int(*ps.pod.TerminationGracePeriodSeconds)
	return ps
}

// rehearsal is one run of the image as a pod.
type rehearsal struct {
	t       *testing.T
	d       *dockerEnv
	c       *testcontainers.DockerContainer
	image   string
	admin   string // host:port of the admin server
	spec    podSpec
	summary []string // the constraints applied, for the summary line
}

// podEnv is the container's environment: the ConfigMap, then the env
// entries (values, or keys of the stand-in Secret), then the overrides.
func podEnv(t *testing.T, ps podSpec, secret, overrides map[string]string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for k, v := range ps.config {
		out[k] = v
	}
	for _, e := range ps.container.Env {
		switch {
		case e.ValueFrom == nil:
			out[e.Name] = e.Value
		case e.ValueFrom.SecretKeyRef != nil:
			v, ok := secret[e.ValueFrom.SecretKeyRef.Key]
			if !ok {
				if e.ValueFrom.SecretKeyRef.Optional != nil && *e.ValueFrom.SecretKeyRef.Optional {
					continue
				}
				t.Fatalf("env %s needs Secret key %s, which the stand-in Secret lacks", e.Name, e.ValueFrom.SecretKeyRef.Key)
			}
			out[e.Name] = v
		default:
			t.Fatalf("env %s: only values and secretKeyRef are rehearsed", e.Name)
		}
	}
	for k, v := range overrides {
		out[k] = v
	}
	return out
}

// adminPort is the container port named by the readiness probe.
func adminPort(t *testing.T, c corev1.Container) int {
	t.Helper()
	if c.ReadinessProbe == nil || c.ReadinessProbe.HTTPGet == nil {
		t.Fatal("the container has no HTTP readiness probe")
	}
	want := c.ReadinessProbe.HTTPGet.Port
	for _, p := range c.Ports {
		if (want.StrVal != "" && p.Name == want.StrVal) || (want.StrVal == "" && int(p.ContainerPort) == want.IntValue()) {
			return int(p.ContainerPort)
		}
	}
	t.Fatalf("the readiness probe's port %s is not a container port", want.String())
	return 0
}

// startPod creates and starts the container with the Deployment's
// constraints.
func startPod(t *testing.T, d *dockerEnv, image string, ps podSpec, env map[string]string, binds []string) *rehearsal {
	t.Helper()
	c := ps.container
	sc := c.SecurityContext
	if sc == nil || sc.RunAsUser == nil {
		t.Fatal("the container sets no securityContext.runAsUser")
	}
	user := fmt.Sprint(*sc.RunAsUser)
	if sc.RunAsGroup != nil {
		user += fmt.Sprintf(":%d", *sc.RunAsGroup)
	}
	r := &rehearsal{t: t, d: d, image: image, spec: ps}
	r.summary = append(r.summary, "user "+user)
	readOnly := sc.ReadOnlyRootFilesystem != nil && *sc.ReadOnlyRootFilesystem
	if readOnly {
		r.summary = append(r.summary, "read-only rootfs")
	}
	var capDrop []string
	if sc.Capabilities != nil {
		for _, c := range sc.Capabilities.Drop {
			capDrop = append(capDrop, string(c))
		}
		r.summary = append(r.summary, "cap-drop "+strings.Join(capDrop, ","))
	}
	var secOpt []string
	if sc.AllowPrivilegeEscalation != nil && !*sc.AllowPrivilegeEscalation {
		secOpt = append(secOpt, "no-new-privileges")
		r.summary = append(r.summary, "no-new-privileges")
	}
	mem := c.Resources.Limits.Memory().Value()
	cpu := c.Resources.Limits.Cpu().MilliValue()
	if mem <= 0 || cpu <= 0 {
		t.Fatalf("the container has no memory or CPU limit: %v", c.Resources.Limits)
	}
	r.summary = append(r.summary, fmt.Sprintf("memory %s", c.Resources.Limits.Memory()), fmt.Sprintf("cpu %s", c.Resources.Limits.Cpu()))
	if v, ok := env["GOMEMLIMIT"]; ok {
		r.summary = append(r.summary, "GOMEMLIMIT "+v)
	}

	port := adminPort(t, c)
	if _, ok := env["ADMIN_ADDR"]; !ok {
		t.Fatal("the ConfigMap sets no ADMIN_ADDR")
	}
	if free, err := portFree(port); err != nil || !free {
		// Host network: the manifest's port may be in use on this machine.
		port = mustFreePort(t)
	}
	env["ADMIN_ADDR"] = fmt.Sprintf(":%d", port)
	r.admin = fmt.Sprintf("127.0.0.1:%d", port)
	r.summary = append(r.summary, fmt.Sprintf("admin port %d (manifest %d)", port, adminPort(t, c)), fmt.Sprintf("grace %ds", ps.grace))

	req := testcontainers.ContainerRequest{
		Image:  image,
		Name:   "produktly-pod-" + d.run + "-" + unique("r")[2:],
		Env:    env,
		Cmd:    c.Args,
		Labels: d.labels("pod"),
		ConfigModifier: func(cfg *container.Config) {
			cfg.User = user
		},
		HostConfigModifier: func(hc *container.HostConfig) {
			hc.NetworkMode = "host"
			hc.ReadonlyRootfs = readOnly
			hc.CapDrop = capDrop
			hc.SecurityOpt = secOpt
			hc.Memory = mem
			hc.MemorySwap = mem // no swap, like a kubelet
			hc.NanoCPUs = cpu * 1_000_000
			hc.Binds = binds
		},
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	gc, err := d.provider.CreateContainer(ctx, req)
	if err != nil {
		t.Fatalf("create the pod container: %v", err)
	}
	r.c = gc.(*testcontainers.DockerContainer)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("pod container log (tail):\n%s", r.logTail(60))
		}
		_ = r.c.Terminate(context.Background(), testcontainers.StopTimeout(time.Second))
	})
	r.start()
	return r
}

// start starts the (new or stopped) container.
func (r *rehearsal) start() {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := r.c.Start(ctx); err != nil {
		r.t.Fatalf("start the pod container: %v", err)
	}
}

// stop is `docker stop -t <terminationGracePeriodSeconds>`: SIGTERM, and
// SIGKILL after the grace period. It returns the exit code and how long
// the stop took.
func (r *rehearsal) stop() (int, time.Duration) {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(r.spec.grace+60)*time.Second)
	defer cancel()
	grace := r.spec.grace
	began := time.Now()
	if err := r.d.provider.Client().ContainerStop(ctx, r.c.GetContainerID(), container.StopOptions{Timeout: &grace}); err != nil {
		r.t.Fatalf("docker stop -t %d: %v", grace, err)
	}
	took := time.Since(began)
	ins := r.inspect()
	if ins.State.Running {
		r.t.Fatal("the container still runs after docker stop")
	}
	return ins.State.ExitCode, took
}

func (r *rehearsal) inspect() container.InspectResponse {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ins, err := r.d.provider.Client().ContainerInspect(ctx, r.c.GetContainerID())
	if err != nil {
		r.t.Fatalf("inspect the pod container: %v", err)
	}
	return ins
}

// running fails the test when the container exited or was OOM-killed.
func (r *rehearsal) running() {
	r.t.Helper()
	ins := r.inspect()
	if ins.State.OOMKilled {
		r.t.Fatalf("the container was OOM-killed (memory limit %d bytes)", ins.HostConfig.Memory)
	}
	if !ins.State.Running {
		r.t.Fatalf("the container exited with %d", ins.State.ExitCode)
	}
}

// memory returns the container's memory use now and its peak since start
// (cgroup v1 max_usage; on cgroup v2, the highest sample taken).
func (r *rehearsal) memory() (usage, peak uint64) {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := r.d.provider.Client().ContainerStatsOneShot(ctx, r.c.GetContainerID())
	if err != nil {
		r.t.Fatalf("container stats: %v", err)
	}
	defer res.Body.Close()
	var st container.StatsResponse
	if err := json.NewDecoder(res.Body).Decode(&st); err != nil {
		r.t.Fatalf("container stats: %v", err)
	}
	return st.MemoryStats.Usage, max(st.MemoryStats.MaxUsage, st.MemoryStats.Usage)
}

// get is one HTTP GET of the admin server; code 0 is a transport error.
func (r *rehearsal) get(path string) (int, string) {
	client := &http.Client{Timeout: 5 * time.Second}
	resp, err := client.Get("http://" + r.admin + path)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	return resp.StatusCode, string(b)
}

// probeOK is what a kubelet's httpGet probe counts as success.
func probeOK(code int) bool { return code >= 200 && code < 400 }

// waitProbe waits until probe answers success.
func (r *rehearsal) waitProbe(p *corev1.Probe, timeout time.Duration) {
	r.t.Helper()
	path := p.HTTPGet.Path
	var code int
	var body string
	waitFor(r.t, timeout, path+" to succeed", func() bool {
		code, body = r.get(path)
		return probeOK(code)
	}, func() string { return fmt.Sprintf("last answer %d %q; log:\n%s", code, body, r.logTail(30)) })
}

// metric reads one un-labelled gauge or counter from /metrics.
func (r *rehearsal) metric(name string) float64 {
	code, body := r.getFull("/metrics")
	if code != http.StatusOK {
		return -1
	}
	return metricValue(body, name)
}

func (r *rehearsal) getFull(path string) (int, string) {
	client := &http.Client{Timeout: 10 * time.Second}
	resp, err := client.Get("http://" + r.admin + path)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func (r *rehearsal) logTail(lines int) string {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return containerLogTail(ctx, r.c, lines)
}

func portFree(port int) (bool, error) {
	l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		return false, nil
	}
	return true, l.Close()
}

func mustFreePort(t *testing.T) int {
	t.Helper()
	ps, err := freePorts(1)
	if err != nil {
		t.Fatal(err)
	}
	return ps[0]
}

// badRecords are records the mapping rejects, one per kind of defect.
func badRecords(run string) []kafka.Message {
	return []kafka.Message{
		{Key: []byte("bad-1"), Value: []byte(`{"type": "tour_start", "userId": `)},
		{Key: []byte("bad-2"), Value: []byte(fmt.Sprintf(`{"type":"no_such_event","userId":"u1","test_run":%q}`, run))},
		{Key: []byte("bad-3"), Value: []byte(fmt.Sprintf(`{"type":"tour_start","tourId":"t1","test_run":%q}`, run))},
		{Key: []byte("bad-4"), Value: []byte(`[1,2,3]`)},
	}
}

// TestPodRehearsal: the built image, run as the production Deployment
// runs it, against Kafka over SASL_SSL and the Segment stand-in: probes,
// a mixed backlog delivered in full, a graceful stop that commits to the
// end, a restart that resumes from the committed offsets, and a Segment
// outage over a large backlog within the memory limit.
func TestPodRehearsal(t *testing.T) {
	image := os.Getenv("SERVICE_IMAGE")
	if image == "" {
		image = defaultServiceImage
	}
	skip := func(why string) {
		t.Helper()
		if os.Getenv("CI") == "true" {
			t.Fatal("CI=true and the pod rehearsal cannot run: " + why)
		}
		t.Skip(why)
	}
	if env.docker == nil {
		skip("no healthy Docker engine")
	}
	{
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, _, err := env.docker.provider.Client().ImageInspectWithRaw(ctx, image)
		cancel()
		if err != nil {
			skip(fmt.Sprintf("image %s not found (scripts/images.sh service builds it): %v", image, err))
		}
	}
	scram := scramEnv(t)
	ps := renderProduction(t)
	if ps.config["KAFKA_TLS"] != "true" || ps.config["KAFKA_SASL_MECHANISM"] == "" {
		t.Fatalf("the production ConfigMap no longer asks for TLS and SASL (%v): the rehearsal's listener choice needs revisiting", ps.config)
	}

	const parts = 4
	pl := newPipeline(t, parts)
	run := unique("pod")
	const first, second = 3000, 1000
	bad := badRecords(run)
	backlog := append(records(run, 0, first), bad...)
	produce(t, pl.topic, backlog)
	good, rejected := pl.mapSource()
	if len(good) != first || len(rejected) != len(bad) {
		t.Fatalf("the mixed backlog maps to %d good and %d bad records, want %d and %d", len(good), len(rejected), first, len(bad))
	}

	secret := map[string]string{
		"segment-write-key":   writeKey,
		"kafka-sasl-username": scram.user,
		"kafka-sasl-password": scram.password,
	}
	const caPath = "/etc/produktly-segment/kafka-ca/ca.crt"
	penv := podEnv(t, ps, secret, map[string]string{
		"KAFKA_BROKERS":     scram.addr,
		"KAFKA_TOPIC":       pl.topic,
		"KAFKA_GROUP_ID":    pl.group,
		"KAFKA_DLQ_TOPIC":   pl.dlq,
		"KAFKA_TLS_CA_FILE": caPath,
		"SEGMENT_ENDPOINT":  pl.seg.URL(),
	})
	r := startPod(t, env.docker, image, ps, penv, []string{scram.caFile + ":" + caPath + ":ro"})

	// Probes, as the kubelet asks them.
	r.waitProbe(ps.container.LivenessProbe, 2*time.Minute)
	r.waitProbe(ps.container.ReadinessProbe, 2*time.Minute)

	// The mixed backlog: every good record at Segment, every bad one
	// dead-lettered, the group committed to the end.
	pl.waitDistinct(first, 3*time.Minute)
	waitFor(t, time.Minute, fmt.Sprintf("%d dead-lettered records", len(bad)),
		func() bool { return pl.dlqCount() >= int64(len(bad)) }, nil)
	waitCommitted(t, pl.group, pl.topic, parts, time.Minute)
	if dups := pl.checkDelivered(good); dups != 0 {
		t.Logf("duplicates in the first backlog: %d", dups)
	}
	if n := pl.dlqCount(); n != int64(len(bad)) {
		t.Errorf("dead-letter topic holds %d records, want %d", n, len(bad))
	}

	// docker stop with the manifest's grace period: exit 0, committed = end.
	code, took := r.stop()
	if code != 0 {
		t.Fatalf("docker stop -t %d: exit code %d, want 0; log:\n%s", ps.grace, code, r.logTail(30))
	}
	if c, e := committedOffsets(t, pl.group, pl.topic, parts), endOffsets(t, pl.topic, parts); !equalOffsets(c, e) {
		t.Fatalf("after docker stop: committed %v, want the end offsets %v", c, e)
	}
	stopNote := fmt.Sprintf("stop exit 0 in %s, committed = end", took.Round(100*time.Millisecond))

	// Started again, the same container resumes from the committed offsets:
	// only the new records reach Segment.
	produce(t, pl.topic, records(run, first, second))
	before := pl.seg.Count()
	r.start()
	r.waitProbe(ps.container.ReadinessProbe, 2*time.Minute)
	pl.waitDistinct(first+second, 3*time.Minute)
	waitCommitted(t, pl.group, pl.topic, parts, time.Minute)
	if got := pl.seg.Count() - before; got != second {
		t.Errorf("after the restart Segment received %d messages, want exactly the %d new ones (the restart did not resume from the committed offsets)", got, second)
	}
	resumeNote := fmt.Sprintf("restart resumed from committed offsets (+%d, %d redelivered)", second, pl.seg.Count()-before-second)

	// A Segment outage over a backlog larger than the in-flight limits: the
	// service holds what its limits allow and stays within its memory limit.
	const large = 60000
	limit := ps.container.Resources.Limits.Memory().Value()
	pl.seg.SetOutage(http.StatusServiceUnavailable)
	for i := 0; i < large; i += 10000 {
		produce(t, pl.topic, records(run, first+second+i, 10000))
	}
	// The in-flight budget is full when fetching has stopped short of the
	// backlog: whichever cap binds first (records per partition, or the
	// bytes a record really holds, MAX_IN_FLIGHT_BYTES), the count of
	// records in flight then stays put while nothing is acknowledged.
	var peak uint64
	var level float64
	var since time.Time
	waitFor(t, 5*time.Minute, "the in-flight budget filled during the outage", func() bool {
		r.running()
		_, p := r.memory()
		peak = max(peak, p)
		n := r.metric("produktly_segment_records_in_flight")
		if n != level {
			level, since = n, time.Now()
			return false
		}
		return n >= 1000 && n < large && time.Since(since) >= 5*time.Second
	}, func() string {
		return fmt.Sprintf("in flight %v, Segment requests %d", r.metric("produktly_segment_records_in_flight"), pl.seg.Requests())
	})
	// A few more refused requests with the budget full, sampling memory.
	reqs := pl.seg.Requests()
	waitFor(t, 2*time.Minute, "more retries against the failing Segment", func() bool {
		r.running()
		_, p := r.memory()
		peak = max(peak, p)
		return pl.seg.Requests() >= reqs+3
	}, nil)
	if code, body := r.get(ps.container.LivenessProbe.HTTPGet.Path); !probeOK(code) {
		t.Errorf("liveness probe %s = %d %q during the outage, want success", ps.container.LivenessProbe.HTTPGet.Path, code, body)
	}
	if code, _ := r.get(ps.container.ReadinessProbe.HTTPGet.Path); probeOK(code) {
		t.Errorf("readiness probe %s = %d while Segment refuses everything, want not ready", ps.container.ReadinessProbe.HTTPGet.Path, code)
	}
	inFlight := r.metric("produktly_segment_records_in_flight")
	if peak >= uint64(limit) {
		t.Errorf("memory peak %d bytes reached the limit %d", peak, limit)
	}
	pl.seg.ClearOutage()
	pl.waitDistinct(first+second+large, 5*time.Minute)
	waitCommitted(t, pl.group, pl.topic, parts, 2*time.Minute)
	r.running()
	_, p := r.memory()
	peak = max(peak, p)
	code, took = r.stop()
	if code != 0 {
		t.Fatalf("final docker stop -t %d: exit code %d, want 0", ps.grace, code)
	}
	if c, e := committedOffsets(t, pl.group, pl.topic, parts), endOffsets(t, pl.topic, parts); !equalOffsets(c, e) {
		t.Fatalf("after the final docker stop: committed %v, want the end offsets %v", c, e)
	}

	line := fmt.Sprintf("pod rehearsal: image %s; %s; Kafka %s over SASL_SSL/SCRAM-SHA-512; "+
		"mixed backlog %d good + %d bad: all delivered / dead-lettered; %s; %s; "+
		"Segment outage over %d records: %.0f in flight, memory peak %.1f MiB of %.0f MiB limit; final stop exit 0 in %s; %s",
		image, strings.Join(r.summary, ", "), env.desc, first, len(bad), stopNote, resumeNote,
		large, inFlight, float64(peak)/(1<<20), float64(limit)/(1<<20), took.Round(100*time.Millisecond), outcome(t))
	fmt.Println(line)
	t.Log(line)
	if out := os.Getenv("POD_REHEARSAL_OUT"); out != "" {
		_ = os.WriteFile(out, []byte(line+"\n"), 0o644)
	}
}

func outcome(t *testing.T) string {
	if t.Failed() {
		return "FAILED"
	}
	return "passed"
}
