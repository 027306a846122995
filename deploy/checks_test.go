package deploy_test

import (
	"errors"
	"fmt"
	"net"
	"regexp"
	"strconv"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// The names the manifests and the binary agree on.
const (
	appName            = "produktly-segment" // Deployment and container
	partitionsKey      = "produktly-segment/kafka-partitions"
	adminPortName      = "admin"
	livenessPath       = "/healthz" // cmd/produktly-segment/admin.go
	readinessPath      = "/readyz"
	metricsPath        = "/metrics"
	nonRootUID         = 65532 // distroless nonroot
	minScaleDownWindow = 300   // seconds, against rebalance churn
	// leaveMargin is what the pod needs after SHUTDOWN_TIMEOUT: the final
	// commit, LeaveGroup and the admin server's 2s shutdown.
	leaveMargin = 10 * time.Second
)

// goRuntimeEnv are variables read by the Go runtime, not by config.go; the
// manifests may set them besides the binary's settings.
var goRuntimeEnv = map[string]bool{"GOMEMLIMIT": true, "GOMAXPROCS": true, "GOGC": true, "GODEBUG": true, "GOTRACEBACK": true}

// allowedEgress are the only ports the NetworkPolicy may open: Kafka's
// listeners, HTTPS to Segment and DNS.
var allowedEgress = map[string]bool{"TCP/9092": true, "TCP/9093": true, "TCP/9094": true, "TCP/443": true, "UDP/53": true, "TCP/53": true}

// bundleCheck checks one rendered kustomization.
type bundleCheck struct {
	name string
	run  func(w *world, b *bundle) []error
}

// repoCheck checks files outside the rendered manifests.
type repoCheck struct {
	name string
	run  func(w *world, r *repoFiles) []error
}

var bundleChecks = []bundleCheck{
	{"env-known", checkEnvKnown},
	{"env-required", checkEnvRequired},
	{"env-secrets", checkEnvSecrets},
	{"probes", checkProbes},
	{"grace", checkGrace},
	{"security", checkSecurity},
	{"rollout", checkRollout},
	{"resources", checkResources},
	{"replicas", checkReplicas},
	{"scaledobject", checkScaledObject},
	{"hpa", checkHPA},
	{"no-secret-data", checkNoSecretData},
	{"networkpolicy", checkNetworkPolicy},
	{"pdb", checkPDB},
	{"service", checkService},
	{"monitoring", checkMonitoring},
	{"smoke", checkSmoke},
}

var repoChecks = []repoCheck{
	{"dockerfile", checkDockerfile},
	{"rules-file", checkRulesFile},
	{"dashboard", checkDashboard},
	{"docs", checkDocs},
}

// --- helpers -------------------------------------------------------------

// app returns the Deployment and its service container.
func (b *bundle) app() (*appsv1.Deployment, *corev1.Container, error) {
	if len(b.deployments) != 1 || b.deployments[0].Name != appName {
		return nil, nil, fmt.Errorf("want exactly one Deployment %q, have %d", appName, len(b.deployments))
	}
	d := b.deployments[0]
	for i := range d.Spec.Template.Spec.Containers {
		if c := &d.Spec.Template.Spec.Containers[i]; c.Name == appName {
			return d, c, nil
		}
	}
	return nil, nil, fmt.Errorf("Deployment %s has no container %q", d.Name, appName)
}

func (b *bundle) configMap(name string) *corev1.ConfigMap {
	for _, cm := range b.configMaps {
		if cm.Name == name {
			return cm
		}
	}
	return nil
}

// envVar is one variable of the container and where it comes from.
type envVar struct {
	name   string
	value  string // the literal or ConfigMap value; "" when not known here
	known  bool   // value is known from the manifests
	source string // "env", "configmap NAME", "secret NAME/KEY", "field"
	secret *corev1.SecretKeySelector
}

// containerEnv resolves the container's environment as the kubelet would:
// envFrom first, then env, later entries winning.
func (b *bundle) containerEnv(c *corev1.Container) (map[string]envVar, []error) {
	out := map[string]envVar{}
	var errs []error
	for _, from := range c.EnvFrom {
		switch {
		case from.ConfigMapRef != nil:
			cm := b.configMap(from.ConfigMapRef.Name)
			if cm == nil {
				if from.ConfigMapRef.Optional == nil || !*from.ConfigMapRef.Optional {
					errs = append(errs, fmt.Errorf("envFrom names ConfigMap %q, which the manifests do not contain", from.ConfigMapRef.Name))
				}
				continue
			}
			for k, v := range cm.Data {
				out[from.Prefix+k] = envVar{name: from.Prefix + k, value: v, known: true, source: "configmap " + cm.Name}
			}
			for k := range cm.BinaryData {
				errs = append(errs, fmt.Errorf("ConfigMap %s: binaryData %q cannot be an environment variable", cm.Name, k))
			}
		case from.SecretRef != nil:
			errs = append(errs, fmt.Errorf("envFrom secretRef %q: its keys cannot be checked here; use env with secretKeyRef per variable", from.SecretRef.Name))
		}
	}
	for _, e := range c.Env {
		v := envVar{name: e.Name, value: e.Value, known: true, source: "env"}
		if vf := e.ValueFrom; vf != nil {
			switch {
			case vf.SecretKeyRef != nil:
				v = envVar{name: e.Name, source: "secret " + vf.SecretKeyRef.Name + "/" + vf.SecretKeyRef.Key, secret: vf.SecretKeyRef}
			case vf.ConfigMapKeyRef != nil:
				cm := b.configMap(vf.ConfigMapKeyRef.Name)
				if cm == nil {
					errs = append(errs, fmt.Errorf("%s: configMapKeyRef names ConfigMap %q, which the manifests do not contain", e.Name, vf.ConfigMapKeyRef.Name))
					continue
				}
				v = envVar{name: e.Name, value: cm.Data[vf.ConfigMapKeyRef.Key], known: true, source: "configmap " + cm.Name}
			default:
				v = envVar{name: e.Name, source: "field"}
			}
		}
		out[e.Name] = v
	}
	return out, errs
}

// setting returns the value the binary will see for a setting: the
// manifests' value, else the binary's default.
func (b *bundle) setting(w *world, c *corev1.Container, name string) string {
	env, _ := b.containerEnv(c)
	if v, ok := env[name]; ok && v.known {
		return v.value
	}
	return w.bin.settings[name].def
}

// adminPort is the port of the effective ADMIN_ADDR.
func (b *bundle) adminPort(w *world, c *corev1.Container) (int32, error) {
	addr := b.setting(w, c, "ADMIN_ADDR")
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		return 0, fmt.Errorf("ADMIN_ADDR %q: %v", addr, err)
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		return 0, fmt.Errorf("ADMIN_ADDR %q: port is not a number", addr)
	}
	return int32(n), nil
}

// resolvePort maps a port given by name or number to the container's port number.
func resolvePort(c *corev1.Container, p intstr.IntOrString) (int32, bool) {
	if p.Type == intstr.Int {
		return p.IntVal, true
	}
	for _, cp := range c.Ports {
		if cp.Name == p.StrVal {
			return cp.ContainerPort, true
		}
	}
	return 0, false
}

// selects reports whether a selector picks the Deployment's pods.
func selects(sel *metav1.LabelSelector, d *appsv1.Deployment) error {
	if sel == nil || (len(sel.MatchLabels) == 0 && len(sel.MatchExpressions) == 0) {
		return errors.New("empty selector")
	}
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		return err
	}
	if !s.Matches(labels.Set(d.Spec.Template.Labels)) {
		return fmt.Errorf("selector %v does not match the pod labels %v", sel.MatchLabels, d.Spec.Template.Labels)
	}
	return nil
}

func (b *bundle) partitions() (int32, error) {
	d, _, err := b.app()
	if err != nil {
		return 0, err
	}
	v, ok := d.Annotations[partitionsKey]
	if !ok {
		return 0, fmt.Errorf("Deployment has no %s annotation", partitionsKey)
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		return 0, fmt.Errorf("annotation %s=%q is not a positive integer", partitionsKey, v)
	}
	return int32(n), nil
}

var docsPartitions = regexp.MustCompile(`(\d+) partitions in production`)

// documentedPartitions is the production partition count docs/deploying.md states.
func documentedPartitions(r *repoFiles) (int32, error) {
	m := docsPartitions.FindAllStringSubmatch(r.deploying, -1)
	if len(m) == 0 {
		return 0, errors.New(`docs/deploying.md does not state "N partitions in production"`)
	}
	n, _ := strconv.Atoi(m[0][1])
	for _, o := range m[1:] {
		if o[1] != m[0][1] {
			return 0, fmt.Errorf("docs/deploying.md states both %s and %s partitions in production", m[0][1], o[1])
		}
	}
	return int32(n), nil
}
