package deploy_test

import (
	"encoding/json"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// breakage is a deliberate mistake that one check must catch.
type breakage struct {
	check  string // a bundleChecks or repoChecks name
	render string // the render to break; "" for a repo check
	what   string
	apply  func(b *bundle, r *repoFiles)
}

func ptr[T any](v T) *T { return &v }

// Accessors for the objects the breakages change.
func dep(b *bundle) *appsv1.Deployment { d, _, _ := b.app(); return d }
func ctr(b *bundle) *corev1.Container  { _, c, _ := b.app(); return c }
func podSpec(b *bundle) *corev1.PodSpec {
	return &dep(b).Spec.Template.Spec
}
func settingsMap(b *bundle) map[string]string {
	return b.configMap(ctr(b).EnvFrom[0].ConfigMapRef.Name).Data
}
func envEntry(b *bundle, name string) *corev1.EnvVar {
	c := ctr(b)
	for i := range c.Env {
		if c.Env[i].Name == name {
			return &c.Env[i]
		}
	}
	panic("no env " + name)
}
func dropEnv(b *bundle, name string) {
	c := ctr(b)
	for i := range c.Env {
		if c.Env[i].Name == name {
			c.Env = append(c.Env[:i], c.Env[i+1:]...)
			return
		}
	}
}
func netpol(b *bundle) *networkingv1.NetworkPolicy { return b.networkPolicies[0] }
func replace(s *string, old, new string) {
	if !strings.Contains(*s, old) {
		panic("breakage does not apply: no " + old)
	}
	*s = strings.Replace(*s, old, new, 1)
}
func replaceBytes(s *[]byte, old, new string) {
	str := string(*s)
	replace(&str, old, new)
	*s = []byte(str)
}

var breakages = []breakage{
	// environment
	{"env-known", "base", "a variable the binary does not read", func(b *bundle, _ *repoFiles) {
		ctr(b).Env = append(ctr(b).Env, corev1.EnvVar{Name: "SEGMENT_WRITEKEY", Value: "x"})
	}},
	{"env-known", "production", "a misspelt ConfigMap key", func(b *bundle, _ *repoFiles) { settingsMap(b)["KAFKA_BROKER"] = "a:9093" }},
	{"env-known", "dev", "envFrom of a ConfigMap that is not rendered", func(b *bundle, _ *repoFiles) {
		ctr(b).EnvFrom[0].ConfigMapRef.Name = "produktly-segment-settings"
	}},
	{"env-required", "dev", "no SEGMENT_WRITE_KEY", func(b *bundle, _ *repoFiles) { dropEnv(b, "SEGMENT_WRITE_KEY") }},
	{"env-required", "base", "no KAFKA_BROKERS", func(b *bundle, _ *repoFiles) { delete(settingsMap(b), "KAFKA_BROKERS") }},
	{"env-required", "accounts", "two modes: INTEGRATIONS_TOPIC and SEGMENT_WRITE_KEY", func(b *bundle, _ *repoFiles) {
		ctr(b).Env = append(ctr(b).Env, corev1.EnvVar{Name: "SEGMENT_WRITE_KEY", ValueFrom: &corev1.EnvVarSource{
			SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "produktly-segment-credentials"}, Key: "segment-write-key"}}})
	}},
	{"env-required", "accounts", "no mode: INTEGRATIONS_TOPIC dropped", func(b *bundle, _ *repoFiles) { delete(settingsMap(b), "INTEGRATIONS_TOPIC") }},
	{"env-secrets", "production", "the write key as a literal", func(b *bundle, _ *repoFiles) {
		*envEntry(b, "SEGMENT_WRITE_KEY") = corev1.EnvVar{Name: "SEGMENT_WRITE_KEY", Value: "literal"}
	}},
	{"env-secrets", "production", "the SASL password in the ConfigMap", func(b *bundle, _ *repoFiles) {
		dropEnv(b, "KAFKA_SASL_PASSWORD")
		settingsMap(b)["KAFKA_SASL_PASSWORD"] = "hunter2"
	}},
	{"env-secrets", "production", "a Secret key the docs never create", func(b *bundle, _ *repoFiles) {
		envEntry(b, "SEGMENT_WRITE_KEY").ValueFrom.SecretKeyRef.Key = "write-key"
	}},
	{"env-secrets", "dev", "docs create another Secret name", func(_ *bundle, r *repoFiles) {
		r.deploying = strings.ReplaceAll(r.deploying, "create secret generic produktly-segment-credentials", "create secret generic produktly-segment")
	}},

	// pod behaviour
	{"probes", "base", "liveness on /livez", func(b *bundle, _ *repoFiles) { ctr(b).LivenessProbe.HTTPGet.Path = "/livez" }},
	{"probes", "base", "readiness on /healthz", func(b *bundle, _ *repoFiles) { ctr(b).ReadinessProbe.HTTPGet.Path = "/healthz" }},
	{"probes", "production", "readiness on another port", func(b *bundle, _ *repoFiles) {
		ctr(b).ReadinessProbe.HTTPGet.Port = intstr.FromInt32(9090)
	}},
	{"probes", "dev", "ADMIN_ADDR moved, container port not", func(b *bundle, _ *repoFiles) { settingsMap(b)["ADMIN_ADDR"] = ":9090" }},
	{"probes", "dev", "no liveness probe", func(b *bundle, _ *repoFiles) { ctr(b).LivenessProbe = nil }},
	{"grace", "production", "grace 30s", func(b *bundle, _ *repoFiles) { podSpec(b).TerminationGracePeriodSeconds = ptr(int64(30)) }},
	{"grace", "base", "grace unset", func(b *bundle, _ *repoFiles) { podSpec(b).TerminationGracePeriodSeconds = nil }},
	{"grace", "dev", "SHUTDOWN_TIMEOUT raised to 35s", func(b *bundle, _ *repoFiles) { settingsMap(b)["SHUTDOWN_TIMEOUT"] = "35s" }},
	{"security", "base", "runs as root", func(b *bundle, _ *repoFiles) {
		ctr(b).SecurityContext.RunAsUser = ptr(int64(0))
	}},
	{"security", "base", "runAsNonRoot false", func(b *bundle, _ *repoFiles) {
		ctr(b).SecurityContext.RunAsNonRoot = ptr(false)
	}},
	{"security", "production", "writable root filesystem", func(b *bundle, _ *repoFiles) {
		ctr(b).SecurityContext.ReadOnlyRootFilesystem = ptr(false)
	}},
	{"security", "production", "privilege escalation allowed", func(b *bundle, _ *repoFiles) {
		ctr(b).SecurityContext.AllowPrivilegeEscalation = nil
	}},
	{"security", "dev", "capabilities kept", func(b *bundle, _ *repoFiles) { ctr(b).SecurityContext.Capabilities = nil }},
	{"security", "dev", "NET_ADMIN added", func(b *bundle, _ *repoFiles) {
		ctr(b).SecurityContext.Capabilities.Add = []corev1.Capability{"NET_ADMIN"}
	}},
	{"security", "hpa", "no seccomp profile", func(b *bundle, _ *repoFiles) {
		ctr(b).SecurityContext.SeccompProfile = nil
		podSpec(b).SecurityContext.SeccompProfile = nil
	}},
	{"security", "base", "service account token mounted", func(b *bundle, _ *repoFiles) {
		b.serviceAccounts[0].AutomountServiceAccountToken = ptr(true)
	}},
	{"rollout", "production", "maxUnavailable 1", func(b *bundle, _ *repoFiles) {
		dep(b).Spec.Strategy.RollingUpdate.MaxUnavailable = ptr(intstr.FromInt32(1))
	}},
	{"rollout", "base", "Recreate", func(b *bundle, _ *repoFiles) {
		dep(b).Spec.Strategy = appsv1.DeploymentStrategy{Type: appsv1.RecreateDeploymentStrategyType}
	}},
	{"rollout", "dev", "maxSurge 25%", func(b *bundle, _ *repoFiles) {
		dep(b).Spec.Strategy.RollingUpdate.MaxSurge = ptr(intstr.FromString("25%"))
	}},
	{"resources", "base", "no memory limit", func(b *bundle, _ *repoFiles) { delete(ctr(b).Resources.Limits, corev1.ResourceMemory) }},
	{"resources", "base", "no cpu request", func(b *bundle, _ *repoFiles) { delete(ctr(b).Resources.Requests, corev1.ResourceCPU) }},
	{"resources", "production", "GOMEMLIMIT above the limit", func(b *bundle, _ *repoFiles) { envEntry(b, "GOMEMLIMIT").Value = "300MiB" }},
	{"resources", "dev", "cpu limit 500m", func(b *bundle, _ *repoFiles) {
		ctr(b).Resources.Limits[corev1.ResourceCPU] = resource.MustParse("500m")
	}},

	// replicas and autoscaling
	{"replicas", "production", "replicas set next to KEDA", func(b *bundle, _ *repoFiles) { dep(b).Spec.Replicas = ptr(int32(3)) }},
	{"replicas", "dev", "more replicas than partitions", func(b *bundle, _ *repoFiles) { dep(b).Spec.Replicas = ptr(int32(4)) }},
	{"replicas", "base", "no partition annotation", func(b *bundle, _ *repoFiles) { delete(dep(b).Annotations, partitionsKey) }},
	{"replicas", "production", "no ScaledObject", func(b *bundle, _ *repoFiles) { b.scaledObjects = nil }},
	{"replicas", "production", "docs state another partition count", func(_ *bundle, r *repoFiles) {
		replace(&r.deploying, "12 partitions in production", "16 partitions in production")
	}},
	{"scaledobject", "production", "maxReplicaCount above the partitions", func(b *bundle, _ *repoFiles) {
		b.scaledObjects[0].Spec.MaxReplicaCount = ptr(int32(16))
	}},
	{"scaledobject", "production", "KEDA watches another group", func(b *bundle, _ *repoFiles) {
		b.scaledObjects[0].Spec.Triggers[0].Metadata["consumerGroup"] = "produktly-segment-v2"
	}},
	{"scaledobject", "production", "pods read another topic", func(b *bundle, _ *repoFiles) { settingsMap(b)["KAFKA_TOPIC"] = "other" }},
	{"scaledobject", "production", "offsetResetPolicy latest", func(b *bundle, _ *repoFiles) {
		b.scaledObjects[0].Spec.Triggers[0].Metadata["offsetResetPolicy"] = "latest"
	}},
	{"scaledobject", "production", "short scale-down window", func(b *bundle, _ *repoFiles) {
		b.scaledObjects[0].Spec.Advanced.HorizontalPodAutoscalerConfig.Behavior.ScaleDown.StabilizationWindowSeconds = ptr(int32(60))
	}},
	{"scaledobject", "production", "KEDA without SASL", func(b *bundle, _ *repoFiles) {
		delete(b.scaledObjects[0].Spec.Triggers[0].Metadata, "sasl")
	}},
	{"scaledobject", "production", "pods without TLS", func(b *bundle, _ *repoFiles) { settingsMap(b)["KAFKA_TLS"] = "false" }},
	{"scaledobject", "production", "KEDA reads another password key", func(b *bundle, _ *repoFiles) {
		b.triggerAuthentications[0].Spec.SecretTargetRef[1].Key = "password"
	}},
	{"hpa", "hpa", "maxReplicas above the partitions", func(b *bundle, _ *repoFiles) { b.hpas[0].Spec.MaxReplicas = 20 }},
	{"hpa", "hpa", "no behavior", func(b *bundle, _ *repoFiles) { b.hpas[0].Spec.Behavior = nil }},

	// objects around the pods
	{"no-secret-data", "base", "a committed Secret", func(b *bundle, _ *repoFiles) {
		b.secrets = append(b.secrets, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "produktly-segment-credentials"},
			StringData: map[string]string{"segment-write-key": "abc"}})
	}},
	{"networkpolicy", "base", "egress to Postgres", func(b *bundle, _ *repoFiles) {
		netpol(b).Spec.Egress[0].Ports = append(netpol(b).Spec.Egress[0].Ports,
			networkingv1.NetworkPolicyPort{Port: ptr(intstr.FromInt32(5432))})
	}},
	{"networkpolicy", "production", "an egress rule without ports", func(b *bundle, _ *repoFiles) {
		netpol(b).Spec.Egress[1].Ports = nil
	}},
	{"networkpolicy", "dev", "ingress on another port", func(b *bundle, _ *repoFiles) {
		netpol(b).Spec.Ingress[0].Ports[0].Port = ptr(intstr.FromInt32(9999))
	}},
	{"networkpolicy", "dev", "no DNS", func(b *bundle, _ *repoFiles) { netpol(b).Spec.Egress = netpol(b).Spec.Egress[:2] }},
	{"networkpolicy", "production", "brokers on a port the policy closes", func(b *bundle, _ *repoFiles) {
		settingsMap(b)["KAFKA_BROKERS"] = "kafka.example:19092"
	}},
	{"networkpolicy", "base", "no egress policy type", func(b *bundle, _ *repoFiles) {
		netpol(b).Spec.PolicyTypes = []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}
	}},
	{"pdb", "base", "maxUnavailable 2", func(b *bundle, _ *repoFiles) { b.pdbs[0].Spec.MaxUnavailable = ptr(intstr.FromInt32(2)) }},
	{"pdb", "production", "selects other pods", func(b *bundle, _ *repoFiles) {
		b.pdbs[0].Spec.Selector.MatchLabels = map[string]string{"app": "other"}
	}},
	{"service", "base", "targetPort elsewhere", func(b *bundle, _ *repoFiles) { b.services[0].Spec.Ports[0].TargetPort = intstr.FromInt32(9090) }},
	{"service", "dev", "NodePort", func(b *bundle, _ *repoFiles) { b.services[0].Spec.Type = corev1.ServiceTypeNodePort }},
	{"monitoring", "production", "PodMonitor on another path", func(b *bundle, _ *repoFiles) {
		b.podMonitors[0].Spec.PodMetricsEndpoints[0].Path = "/stats"
	}},
	{"monitoring", "production", "PodMonitor on another port", func(b *bundle, _ *repoFiles) {
		b.podMonitors[0].Spec.PodMetricsEndpoints[0].Port = "http"
	}},
	{"monitoring", "production", "PrometheusRule drifted from rules.yaml", func(b *bundle, _ *repoFiles) {
		b.prometheusRules[0].Spec.Groups[0].Rules[0].For = "1h"
	}},
	{"monitoring", "production", "no PrometheusRule", func(b *bundle, _ *repoFiles) { b.prometheusRules = nil }},
	{"monitoring", "production", "dashboard ConfigMap stale", func(_ *bundle, r *repoFiles) {
		replaceBytes(&r.dashboard, `"title": "produktly-segment"`, `"title": "produktly-segment (edited)"`)
	}},
	{"smoke", "base", "readiness path the binary does not serve", func(b *bundle, _ *repoFiles) {
		ctr(b).ReadinessProbe.HTTPGet.Path = "/ready"
	}},
	{"smoke", "dev", "a value the binary rejects", func(b *bundle, _ *repoFiles) { settingsMap(b)["LOG_LEVEL"] = "verbose" }},
	{"smoke", "production", "SASL without a user name", func(b *bundle, _ *repoFiles) { dropEnv(b, "KAFKA_SASL_USERNAME") }},
	{"smoke", "production", "PodMonitor path the binary does not serve", func(b *bundle, _ *repoFiles) {
		b.podMonitors[0].Spec.PodMetricsEndpoints[0].Path = "/metricz"
	}},

	// repository files
	{"dockerfile", "", "cgo on", func(_ *bundle, r *repoFiles) { replace(&r.dockerfile, "CGO_ENABLED=0", "CGO_ENABLED=1") }},
	{"dockerfile", "", "no -trimpath", func(_ *bundle, r *repoFiles) { replace(&r.dockerfile, "go build -trimpath", "go build") }},
	{"dockerfile", "", "not stripped", func(_ *bundle, r *repoFiles) { replace(&r.dockerfile, `"-s -w `, `"`) }},
	{"dockerfile", "", "version not stamped", func(_ *bundle, r *repoFiles) {
		replace(&r.dockerfile, " -X main.version=${VERSION}", "")
	}},
	{"dockerfile", "", "runs as root", func(_ *bundle, r *repoFiles) { replace(&r.dockerfile, "USER 65532:65532", "USER root") }},
	{"dockerfile", "", "a full OS image", func(_ *bundle, r *repoFiles) {
		replace(&r.dockerfile, "RUNTIME_IMAGE=gcr.io/distroless/static-debian12:nonroot", "RUNTIME_IMAGE=debian:12")
	}},
	{"dockerfile", "", "another port", func(_ *bundle, r *repoFiles) { replace(&r.dockerfile, "EXPOSE 8080", "EXPOSE 9090") }},
	{"dockerfile", "", "runs demo", func(_ *bundle, r *repoFiles) { replace(&r.dockerfile, `CMD ["run"]`, `CMD ["demo"]`) }},
	{"rules-file", "", "a metric the binary does not have", func(_ *bundle, r *repoFiles) {
		replaceBytes(&r.rules, "produktly_segment_commit_errors_total", "produktly_segment_commit_failures_total")
	}},
	{"rules-file", "", "an alert without a runbook", func(_ *bundle, r *repoFiles) {
		replace(&r.operations, "### ProduktlySegmentRateLimited", "### Rate limits")
	}},
	{"rules-file", "", "an unknown severity", func(_ *bundle, r *repoFiles) {
		replaceBytes(&r.rules, "severity: warning", "severity: page")
	}},
	{"rules-file", "", "no alert on 429s", func(_ *bundle, r *repoFiles) {
		replaceBytes(&r.rules, `{status="429"}`, `{status="418"}`)
	}},
	{"rules-file", "", "an unknown field", func(_ *bundle, r *repoFiles) {
		replaceBytes(&r.rules, "        for: 15m\n", "        for: 15m\n        keep_firing: 5m\n")
	}},
	{"dashboard", "", "invalid JSON", func(_ *bundle, r *repoFiles) { r.dashboard = r.dashboard[:len(r.dashboard)/2] }},
	{"dashboard", "", "a metric the binary does not have", func(_ *bundle, r *repoFiles) {
		replaceBytes(&r.dashboard, "produktly_segment_records_consumed_total", "produktly_segment_records_consumed")
	}},
	{"dashboard", "", "a panel id twice", func(_ *bundle, r *repoFiles) {
		replaceBytes(&r.dashboard, `"id": 3,`, `"id": 2,`)
	}},
	{"docs", "", "no production apply command", func(_ *bundle, r *repoFiles) {
		r.deploying = strings.ReplaceAll(r.deploying, "kubectl apply -k deploy/overlays/production", "kubectl apply")
	}},
	{"docs", "", "no partition count", func(_ *bundle, r *repoFiles) {
		r.deploying = strings.ReplaceAll(r.deploying, "partitions in production", "partitions")
	}},
}

// TestChecksCatchBreakage breaks the manifests and files in the ways the
// checks exist to catch and expects each check to report it: a check that
// cannot fail would be worse than none.
func TestChecksCatchBreakage(t *testing.T) {
	w := getWorld(t)
	covered := map[string]bool{}
	for _, br := range breakages {
		covered[br.check] = true
		t.Run(br.check+"/"+br.what, func(t *testing.T) {
			repo := *w.repo
			w2 := &world{bin: w.bin, repo: &repo}
			var errs []error
			if br.render == "" {
				br.apply(nil, &repo)
				errs = runRepoCheck(t, br.check, w2)
			} else {
				b, err := load(renderByName(br.render))
				if err != nil {
					t.Fatal(err)
				}
				br.apply(b, &repo)
				errs = runBundleCheck(t, br.check, w2, b)
			}
			if len(errs) == 0 {
				t.Fatalf("check %s did not catch: %s", br.check, br.what)
			}
			t.Logf("caught: %v", errs[0])
		})
	}
	for _, c := range bundleChecks {
		if !covered[c.name] {
			t.Errorf("check %s has no breakage proving it can fail", c.name)
		}
	}
	for _, c := range repoChecks {
		if !covered[c.name] {
			t.Errorf("check %s has no breakage proving it can fail", c.name)
		}
	}
}

func runBundleCheck(t *testing.T, name string, w *world, b *bundle) []error {
	for _, c := range bundleChecks {
		if c.name == name {
			return c.run(w, b)
		}
	}
	t.Fatalf("no bundle check %q", name)
	return nil
}

func runRepoCheck(t *testing.T, name string, w *world) []error {
	for _, c := range repoChecks {
		if c.name == name {
			return c.run(w, w.repo)
		}
	}
	t.Fatalf("no repo check %q", name)
	return nil
}

// TestDecodingIsStrict adds an unknown field to rendered objects of a core
// kind and of each local custom-resource type and expects decoding to fail.
func TestDecodingIsStrict(t *testing.T) {
	docs, err := renderJSON(renderByName("production"))
	if err != nil {
		t.Fatal(err)
	}
	tried := map[string]bool{}
	for _, d := range docs {
		var obj map[string]any
		if err := json.Unmarshal(d, &obj); err != nil {
			t.Fatal(err)
		}
		kind, _ := obj["kind"].(string)
		spec, ok := obj["spec"].(map[string]any)
		if !ok || tried[kind] {
			continue
		}
		tried[kind] = true
		spec["maxReplicas"] = 3 // a field of another kind, or a typo
		bad, _ := json.Marshal(obj)
		if err := (&bundle{}).add(bad); err == nil {
			t.Errorf("%s with an unknown spec field decoded without error", kind)
		}
	}
	for _, k := range []string{"Deployment", "ScaledObject", "TriggerAuthentication", "PodMonitor", "PrometheusRule", "NetworkPolicy"} {
		if !tried[k] {
			t.Errorf("production has no %s to try", k)
		}
	}
}
