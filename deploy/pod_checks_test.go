package deploy_test

// Checks of the pod: probes, shutdown timing, security, rollout, resources.

import (
	"errors"
	"fmt"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"

	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/intstr"
)

func checkProbes(w *world, b *bundle) []error {
	_, c, err := b.app()
	if err != nil {
		return []error{err}
	}
	port, err := b.adminPort(w, c)
	if err != nil {
		return []error{err}
	}
	var errs []error
	named := false
	for _, cp := range c.Ports {
		if cp.Name == adminPortName {
			named = true
			if cp.ContainerPort != port {
				errs = append(errs, fmt.Errorf("container port %q is %d, ADMIN_ADDR listens on %d", adminPortName, cp.ContainerPort, port))
			}
		}
	}
	if !named {
		errs = append(errs, fmt.Errorf("container has no port named %q", adminPortName))
	}
	for _, p := range []struct {
		kind  string
		probe *corev1.Probe
		path  string
	}{{"liveness", c.LivenessProbe, livenessPath}, {"readiness", c.ReadinessProbe, readinessPath}} {
		if p.probe == nil || p.probe.HTTPGet == nil {
			errs = append(errs, fmt.Errorf("no %s probe with httpGet", p.kind))
			continue
		}
		g := p.probe.HTTPGet
		if g.Path != p.path {
			errs = append(errs, fmt.Errorf("%s probe path is %q, the admin server serves %q", p.kind, g.Path, p.path))
		}
		if n, ok := resolvePort(c, g.Port); !ok || n != port {
			errs = append(errs, fmt.Errorf("%s probe port %s is not the admin port %d", p.kind, g.Port.String(), port))
		}
		if g.Scheme != "" && g.Scheme != corev1.URISchemeHTTP {
			errs = append(errs, fmt.Errorf("%s probe scheme is %s; the admin server speaks HTTP", p.kind, g.Scheme))
		}
	}
	return errs
}

func checkGrace(w *world, b *bundle) []error {
	d, c, err := b.app()
	if err != nil {
		return []error{err}
	}
	v := b.setting(w, c, "SHUTDOWN_TIMEOUT")
	st, err := time.ParseDuration(v)
	if err != nil {
		return []error{fmt.Errorf("SHUTDOWN_TIMEOUT %q: %v", v, err)}
	}
	g := d.Spec.Template.Spec.TerminationGracePeriodSeconds
	if g == nil {
		return []error{errors.New("terminationGracePeriodSeconds is unset (the 30s default)")}
	}
	if grace := time.Duration(*g) * time.Second; grace <= st+leaveMargin {
		return []error{fmt.Errorf("terminationGracePeriodSeconds %v must exceed SHUTDOWN_TIMEOUT %v plus %v to commit and leave the group", grace, st, leaveMargin)}
	}
	return nil
}

func checkSecurity(w *world, b *bundle) []error {
	d, c, err := b.app()
	if err != nil {
		return []error{err}
	}
	ps := d.Spec.Template.Spec
	var errs []error
	fail := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	psc := ps.SecurityContext
	if psc == nil {
		psc = &corev1.PodSecurityContext{}
	}
	csc := c.SecurityContext
	if csc == nil {
		csc = &corev1.SecurityContext{}
	}
	// Container settings win over the pod's.
	runAsNonRoot, runAsUser, seccomp := psc.RunAsNonRoot, psc.RunAsUser, psc.SeccompProfile
	if csc.RunAsNonRoot != nil {
		runAsNonRoot = csc.RunAsNonRoot
	}
	if csc.RunAsUser != nil {
		runAsUser = csc.RunAsUser
	}
	if csc.SeccompProfile != nil {
		seccomp = csc.SeccompProfile
	}
	if runAsNonRoot == nil || !*runAsNonRoot {
		fail("runAsNonRoot is not true")
	}
	if runAsUser == nil || *runAsUser != nonRootUID {
		fail("runAsUser is not %d (distroless nonroot)", nonRootUID)
	}
	if seccomp == nil || seccomp.Type != corev1.SeccompProfileTypeRuntimeDefault {
		fail("seccompProfile is not RuntimeDefault")
	}
	if csc.AllowPrivilegeEscalation == nil || *csc.AllowPrivilegeEscalation {
		fail("allowPrivilegeEscalation is not false")
	}
	if csc.Privileged != nil && *csc.Privileged {
		fail("container is privileged")
	}
	if csc.ReadOnlyRootFilesystem == nil || !*csc.ReadOnlyRootFilesystem {
		fail("readOnlyRootFilesystem is not true")
	}
	dropsAll := false
	if caps := csc.Capabilities; caps != nil {
		for _, c := range caps.Drop {
			dropsAll = dropsAll || c == "ALL"
		}
		if len(caps.Add) > 0 {
			fail("capabilities added: %v", caps.Add)
		}
	}
	if !dropsAll {
		fail("capabilities do not drop ALL")
	}
	if ps.HostNetwork || ps.HostPID || ps.HostIPC {
		fail("pod shares a host namespace")
	}
	// No Kubernetes API token in the pod.
	if ps.AutomountServiceAccountToken == nil || *ps.AutomountServiceAccountToken {
		fail("pod automountServiceAccountToken is not false")
	}
	found := false
	for _, sa := range b.serviceAccounts {
		if sa.Name == ps.ServiceAccountName {
			found = true
			if sa.AutomountServiceAccountToken == nil || *sa.AutomountServiceAccountToken {
				fail("ServiceAccount %s: automountServiceAccountToken is not false", sa.Name)
			}
		}
	}
	if !found {
		fail("serviceAccountName %q is not a ServiceAccount of the manifests", ps.ServiceAccountName)
	}
	return errs
}

func checkRollout(_ *world, b *bundle) []error {
	d, _, err := b.app()
	if err != nil {
		return []error{err}
	}
	s := d.Spec.Strategy
	if s.Type != appsv1.RollingUpdateDeploymentStrategyType || s.RollingUpdate == nil {
		return []error{fmt.Errorf("strategy is %q, want RollingUpdate", s.Type)}
	}
	var errs []error
	if mu := s.RollingUpdate.MaxUnavailable; mu == nil || intstr.FromInt32(0) != *mu && intstr.FromString("0%") != *mu {
		errs = append(errs, fmt.Errorf("maxUnavailable is %v, want 0: a new member must be ready before an old one leaves", mu))
	}
	if ms := s.RollingUpdate.MaxSurge; ms == nil || intstr.FromInt32(1) != *ms {
		errs = append(errs, fmt.Errorf("maxSurge is %v, want 1: one extra member, one rebalance at a time", ms))
	}
	return errs
}

func checkResources(_ *world, b *bundle) []error {
	_, c, err := b.app()
	if err != nil {
		return []error{err}
	}
	var errs []error
	req, lim := c.Resources.Requests, c.Resources.Limits
	for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		if q, ok := req[r]; !ok || q.IsZero() {
			errs = append(errs, fmt.Errorf("no %s request", r))
		}
	}
	memLim, ok := lim[corev1.ResourceMemory]
	if !ok {
		errs = append(errs, errors.New("no memory limit"))
	} else if memReq := req[corev1.ResourceMemory]; memLim.Cmp(memReq) < 0 {
		errs = append(errs, fmt.Errorf("memory limit %s is below the request %s", memLim.String(), memReq.String()))
	}
	// A CPU limit under one core would throttle a draining replica and
	// delay its heartbeats.
	if cpu, ok := lim[corev1.ResourceCPU]; ok && cpu.Cmp(resource.MustParse("1")) < 0 {
		errs = append(errs, fmt.Errorf("cpu limit %s is under one core", cpu.String()))
	}
	for _, e := range c.Env {
		if e.Name != "GOMEMLIMIT" || !ok {
			continue
		}
		// The runtime's syntax is bytes with an optional KiB/MiB/GiB/TiB
		// suffix; without the B it is a Kubernetes quantity.
		q, err := resource.ParseQuantity(strings.TrimSuffix(e.Value, "B"))
		if err != nil {
			errs = append(errs, fmt.Errorf("GOMEMLIMIT %q: %v", e.Value, err))
			continue
		}
		if q.Cmp(memLim) >= 0 {
			errs = append(errs, fmt.Errorf("GOMEMLIMIT %s is not below the memory limit %s", e.Value, memLim.String()))
		}
	}
	return errs
}
