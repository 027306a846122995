package deploy_test

// Checks of the objects around the pods: Secrets, NetworkPolicy, PDB,
// Service and monitoring.

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

func checkNoSecretData(_ *world, b *bundle) []error {
	var errs []error
	for _, s := range b.secrets {
		if len(s.Data) > 0 || len(s.StringData) > 0 {
			errs = append(errs, fmt.Errorf("Secret %s carries literal data: secrets are created with kubectl, never committed", s.Name))
		}
	}
	return errs
}

func checkNetworkPolicy(w *world, b *bundle) []error {
	d, c, err := b.app()
	if err != nil {
		return []error{err}
	}
	if len(b.networkPolicies) != 1 {
		return []error{fmt.Errorf("want exactly one NetworkPolicy, have %d", len(b.networkPolicies))}
	}
	np := b.networkPolicies[0]
	var errs []error
	fail := func(format string, a ...any) {
		errs = append(errs, fmt.Errorf("NetworkPolicy %s: %s", np.Name, fmt.Sprintf(format, a...)))
	}
	if err := selects(&np.Spec.PodSelector, d); err != nil {
		fail("podSelector: %v", err)
	}
	types := map[string]bool{}
	for _, t := range np.Spec.PolicyTypes {
		types[string(t)] = true
	}
	if !types["Ingress"] || !types["Egress"] {
		fail("policyTypes %v must include Ingress and Egress", np.Spec.PolicyTypes)
	}
	admin, err := b.adminPort(w, c)
	if err != nil {
		return append(errs, err)
	}
	for i, r := range np.Spec.Ingress {
		if len(r.Ports) == 0 {
			fail("ingress rule %d allows every port", i)
		}
		for _, p := range r.Ports {
			if p.Port == nil || p.EndPort != nil {
				fail("ingress rule %d opens a port range", i)
				continue
			}
			if n, ok := resolvePort(c, *p.Port); !ok || n != admin {
				fail("ingress rule %d opens port %s; only the admin port %d may be open", i, p.Port.String(), admin)
			}
		}
	}
	open := map[string]bool{}
	for i, r := range np.Spec.Egress {
		if len(r.Ports) == 0 {
			fail("egress rule %d allows every port", i)
		}
		for _, p := range r.Ports {
			if p.Port == nil || p.Port.Type != intstr.Int || p.EndPort != nil {
				fail("egress rule %d: ports must be single numbers", i)
				continue
			}
			proto := "TCP"
			if p.Protocol != nil {
				proto = string(*p.Protocol)
			}
			k := proto + "/" + strconv.Itoa(int(p.Port.IntVal))
			if !allowedEgress[k] {
				fail("egress rule %d opens %s; allowed are Kafka (9092-9094), Segment (443) and DNS (53)", i, k)
			}
			open[k] = true
		}
	}
	// The policy must not cut the service off from what it needs.
	need := []string{"UDP/53"}
	for _, br := range strings.Split(b.setting(w, c, "KAFKA_BROKERS"), ",") {
		if _, p, err := net.SplitHostPort(strings.TrimSpace(br)); err == nil {
			need = append(need, "TCP/"+p)
		} else {
			fail("KAFKA_BROKERS entry %q: %v", br, err)
		}
	}
	if u, err := url.Parse(b.setting(w, c, "SEGMENT_ENDPOINT")); err == nil {
		p := u.Port()
		if p == "" {
			p = map[string]string{"https": "443", "http": "80"}[u.Scheme]
		}
		need = append(need, "TCP/"+p)
	}
	for _, k := range need {
		if !open[k] {
			fail("egress does not allow %s, which the settings need", k)
		}
	}
	return errs
}

func checkPDB(_ *world, b *bundle) []error {
	d, _, err := b.app()
	if err != nil {
		return []error{err}
	}
	if len(b.pdbs) != 1 {
		return []error{fmt.Errorf("want exactly one PodDisruptionBudget, have %d", len(b.pdbs))}
	}
	p := b.pdbs[0]
	var errs []error
	if p.Spec.MaxUnavailable == nil || *p.Spec.MaxUnavailable != intstr.FromInt32(1) || p.Spec.MinAvailable != nil {
		errs = append(errs, fmt.Errorf("PodDisruptionBudget %s: want maxUnavailable 1 and no minAvailable", p.Name))
	}
	if err := selects(p.Spec.Selector, d); err != nil {
		errs = append(errs, fmt.Errorf("PodDisruptionBudget %s: %v", p.Name, err))
	}
	return errs
}

func checkService(w *world, b *bundle) []error {
	d, c, err := b.app()
	if err != nil {
		return []error{err}
	}
	if len(b.services) != 1 {
		return []error{fmt.Errorf("want exactly one Service, have %d", len(b.services))}
	}
	s := b.services[0]
	admin, err := b.adminPort(w, c)
	if err != nil {
		return []error{err}
	}
	var errs []error
	if s.Spec.Type != "" && s.Spec.Type != corev1.ServiceTypeClusterIP {
		errs = append(errs, fmt.Errorf("Service %s is %s, want ClusterIP", s.Name, s.Spec.Type))
	}
	if err := selects(&metav1.LabelSelector{MatchLabels: s.Spec.Selector}, d); err != nil {
		errs = append(errs, fmt.Errorf("Service %s: %v", s.Name, err))
	}
	if len(s.Spec.Ports) != 1 || s.Spec.Ports[0].Name != adminPortName {
		errs = append(errs, fmt.Errorf("Service %s: want only the port %q", s.Name, adminPortName))
	}
	for _, p := range s.Spec.Ports {
		if n, ok := resolvePort(c, p.TargetPort); !ok || n != admin {
			errs = append(errs, fmt.Errorf("Service %s: targetPort %s is not the admin port %d", s.Name, p.TargetPort.String(), admin))
		}
	}
	return errs
}

// checkMonitoring: production ships a PodMonitor on the admin port, the
// alert rules equal to deploy/prometheus/rules.yaml and the dashboard.
func checkMonitoring(w *world, b *bundle) []error {
	d, c, err := b.app()
	if err != nil {
		return []error{err}
	}
	var errs []error
	if b.spec.production && (len(b.podMonitors) != 1 || len(b.prometheusRules) != 1) {
		errs = append(errs, fmt.Errorf("production wants one PodMonitor and one PrometheusRule, has %d and %d", len(b.podMonitors), len(b.prometheusRules)))
	}
	admin, err := b.adminPort(w, c)
	if err != nil {
		return append(errs, err)
	}
	for _, pm := range b.podMonitors {
		if err := selects(&pm.Spec.Selector, d); err != nil {
			errs = append(errs, fmt.Errorf("PodMonitor %s: %v", pm.Name, err))
		}
		if len(pm.Spec.PodMetricsEndpoints) == 0 {
			errs = append(errs, fmt.Errorf("PodMonitor %s: no endpoints", pm.Name))
		}
		for _, e := range pm.Spec.PodMetricsEndpoints {
			if n, ok := resolvePort(c, intstr.FromString(e.Port)); !ok || n != admin {
				errs = append(errs, fmt.Errorf("PodMonitor %s: port %q is not the admin port", pm.Name, e.Port))
			}
			if e.Path != "" && e.Path != metricsPath {
				errs = append(errs, fmt.Errorf("PodMonitor %s: path %q, the admin server serves %s", pm.Name, e.Path, metricsPath))
			}
		}
	}
	var file RuleFile
	if err := strictYAML(w.repo.rules, &file); err != nil {
		return append(errs, fmt.Errorf("deploy/prometheus/rules.yaml: %v", err))
	}
	for _, pr := range b.prometheusRules {
		if !equalJSON(pr.Spec, file) {
			errs = append(errs, fmt.Errorf("PrometheusRule %s differs from deploy/prometheus/rules.yaml: keep them equal", pr.Name))
		}
	}
	if b.spec.production {
		found := false
		for _, cm := range b.configMaps {
			if cm.Labels["grafana_dashboard"] == "" {
				continue
			}
			found = true
			if cm.Data["produktly-segment.json"] != string(w.repo.dashboard) {
				errs = append(errs, fmt.Errorf("dashboard ConfigMap %s does not carry deploy/grafana/produktly-segment.json", cm.Name))
			}
		}
		if !found {
			errs = append(errs, errors.New("production has no dashboard ConfigMap (label grafana_dashboard)"))
		}
	}
	return errs
}
