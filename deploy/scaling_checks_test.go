package deploy_test

// Checks of replicas and autoscalers against the partition count.

import (
	"fmt"
	"strconv"
	"strings"

	autoscalingv2 "k8s.io/api/autoscaling/v2"
)

func checkReplicas(w *world, b *bundle) []error {
	d, _, err := b.app()
	if err != nil {
		return []error{err}
	}
	parts, err := b.partitions()
	if err != nil {
		return []error{err}
	}
	var errs []error
	var scalers []string
	for _, so := range b.scaledObjects {
		if so.Spec.ScaleTargetRef.Name == d.Name {
			scalers = append(scalers, "ScaledObject")
		}
	}
	for _, h := range b.hpas {
		if h.Spec.ScaleTargetRef.Name == d.Name {
			scalers = append(scalers, "HorizontalPodAutoscaler")
		}
	}
	switch {
	case b.spec.autoscaler == "" && len(scalers) > 0:
		errs = append(errs, fmt.Errorf("unexpected autoscalers %v", scalers))
	case b.spec.autoscaler != "" && (len(scalers) != 1 || scalers[0] != b.spec.autoscaler):
		errs = append(errs, fmt.Errorf("want exactly one %s for the Deployment, have %v", b.spec.autoscaler, scalers))
	}
	if len(scalers) > 0 && d.Spec.Replicas != nil {
		errs = append(errs, fmt.Errorf("spec.replicas is %d while %v owns it: every apply would reset the autoscaler", *d.Spec.Replicas, scalers))
	}
	if d.Spec.Replicas != nil && (*d.Spec.Replicas < 1 || *d.Spec.Replicas > parts) {
		errs = append(errs, fmt.Errorf("replicas %d is not within 1..%d partitions: extra members sit idle", *d.Spec.Replicas, parts))
	}
	if b.spec.production {
		doc, err := documentedPartitions(w.repo)
		if err != nil {
			errs = append(errs, err)
		} else if doc != parts {
			errs = append(errs, fmt.Errorf("%s is %d, docs/deploying.md says %d partitions in production", partitionsKey, parts, doc))
		}
	}
	return errs
}

// checkScaleDown wants a scale-down stabilization window against rebalance churn.
func checkScaleDown(kind string, beh *autoscalingv2.HorizontalPodAutoscalerBehavior) error {
	if beh == nil || beh.ScaleDown == nil || beh.ScaleDown.StabilizationWindowSeconds == nil ||
		*beh.ScaleDown.StabilizationWindowSeconds < minScaleDownWindow {
		return fmt.Errorf("%s: scaleDown.stabilizationWindowSeconds must be at least %d: each scale-down is a rebalance", kind, minScaleDownWindow)
	}
	return nil
}

// keda's names for KAFKA_SASL_MECHANISM values.
var kedaSASL = map[string]string{"": "", "PLAIN": "plaintext", "SCRAM-SHA-256": "scram_sha256", "SCRAM-SHA-512": "scram_sha512"}

func normList(s string) string {
	parts := strings.Split(s, ",")
	for i := range parts {
		parts[i] = strings.TrimSpace(parts[i])
	}
	return strings.Join(parts, ",")
}

func checkScaledObject(w *world, b *bundle) []error {
	if len(b.scaledObjects) == 0 {
		return nil
	}
	d, c, err := b.app()
	if err != nil {
		return []error{err}
	}
	parts, err := b.partitions()
	if err != nil {
		return []error{err}
	}
	env, _ := b.containerEnv(c)
	var errs []error
	fail := func(so *ScaledObject, format string, a ...any) {
		errs = append(errs, fmt.Errorf("ScaledObject %s: %s", so.Name, fmt.Sprintf(format, a...)))
	}
	for _, so := range b.scaledObjects {
		s := so.Spec
		if t := s.ScaleTargetRef; t.Name != d.Name || (t.Kind != "" && t.Kind != "Deployment") {
			fail(so, "scaleTargetRef %s/%s is not Deployment %s", t.Kind, t.Name, d.Name)
		}
		if s.MaxReplicaCount == nil || *s.MaxReplicaCount != parts {
			fail(so, "maxReplicaCount %v must equal the partition count %d", ptrStr(s.MaxReplicaCount), parts)
		}
		if s.MinReplicaCount == nil || *s.MinReplicaCount < 1 {
			fail(so, "minReplicaCount %v must be at least 1", ptrStr(s.MinReplicaCount))
		}
		var beh *autoscalingv2.HorizontalPodAutoscalerBehavior
		if s.Advanced != nil && s.Advanced.HorizontalPodAutoscalerConfig != nil {
			beh = s.Advanced.HorizontalPodAutoscalerConfig.Behavior
		}
		if err := checkScaleDown("ScaledObject "+so.Name, beh); err != nil {
			errs = append(errs, err)
		}
		var kafka []ScaledObjectTrigger
		for _, t := range s.Triggers {
			if t.Type == "kafka" {
				kafka = append(kafka, t)
			}
		}
		if len(kafka) != 1 || len(s.Triggers) != 1 {
			fail(so, "want exactly one trigger, of type kafka")
			continue
		}
		md := kafka[0].Metadata
		for key, setting := range map[string]string{"bootstrapServers": "KAFKA_BROKERS", "topic": "KAFKA_TOPIC", "consumerGroup": "KAFKA_GROUP_ID"} {
			if got, want := normList(md[key]), normList(b.setting(w, c, setting)); got != want {
				fail(so, "trigger %s is %q, the pods' %s is %q", key, got, setting, want)
			}
		}
		if md["offsetResetPolicy"] != "earliest" {
			fail(so, "offsetResetPolicy is %q, want earliest (the consumer starts a new group at the first offset)", md["offsetResetPolicy"])
		}
		if n, err := strconv.Atoi(md["lagThreshold"]); err != nil || n < 1 {
			fail(so, "lagThreshold %q is not a positive integer", md["lagThreshold"])
		}
		if md["allowIdleConsumers"] == "true" {
			fail(so, "allowIdleConsumers lets KEDA run members that get no partition")
		}
		mech := strings.ToUpper(b.setting(w, c, "KAFKA_SASL_MECHANISM"))
		want, ok := kedaSASL[mech]
		if !ok {
			fail(so, "KAFKA_SASL_MECHANISM %q has no KEDA equivalent", mech)
		}
		if got := md["sasl"]; got != want && !(want == "" && got == "none") {
			fail(so, "sasl is %q, want %q for KAFKA_SASL_MECHANISM=%s", got, want, mech)
		}
		tls, _ := strconv.ParseBool(b.setting(w, c, "KAFKA_TLS"))
		if got := md["tls"] == "enable"; got != tls {
			fail(so, "tls is %q while KAFKA_TLS is %v", md["tls"], tls)
		}
		if mech == "" {
			continue
		}
		ref := kafka[0].AuthenticationRef
		if ref == nil {
			fail(so, "SASL is on but the trigger has no authenticationRef")
			continue
		}
		var ta *TriggerAuthentication
		for _, t := range b.triggerAuthentications {
			if t.Name == ref.Name {
				ta = t
			}
		}
		if ta == nil {
			fail(so, "authenticationRef %q names no TriggerAuthentication of the manifests", ref.Name)
			continue
		}
		for param, setting := range map[string]string{"username": "KAFKA_SASL_USERNAME", "password": "KAFKA_SASL_PASSWORD"} {
			v := env[setting]
			found := false
			for _, r := range ta.Spec.SecretTargetRef {
				if r.Parameter == param {
					found = true
					if v.secret == nil || r.Name != v.secret.Name || r.Key != v.secret.Key {
						fail(so, "TriggerAuthentication %s %s is %s/%s, the pods' %s comes from %s", ta.Name, param, r.Name, r.Key, setting, v.source)
					}
				}
			}
			if !found {
				fail(so, "TriggerAuthentication %s has no %s", ta.Name, param)
			}
		}
	}
	return errs
}

func ptrStr(p *int32) string {
	if p == nil {
		return "unset"
	}
	return strconv.Itoa(int(*p))
}

func checkHPA(_ *world, b *bundle) []error {
	if len(b.hpas) == 0 {
		return nil
	}
	d, _, err := b.app()
	if err != nil {
		return []error{err}
	}
	parts, err := b.partitions()
	if err != nil {
		return []error{err}
	}
	var errs []error
	for _, h := range b.hpas {
		if t := h.Spec.ScaleTargetRef; t.Name != d.Name || t.Kind != "Deployment" {
			errs = append(errs, fmt.Errorf("HPA %s: scaleTargetRef %s/%s is not Deployment %s", h.Name, t.Kind, t.Name, d.Name))
		}
		if h.Spec.MaxReplicas != parts {
			errs = append(errs, fmt.Errorf("HPA %s: maxReplicas %d must equal the partition count %d", h.Name, h.Spec.MaxReplicas, parts))
		}
		if h.Spec.MinReplicas == nil || *h.Spec.MinReplicas < 1 {
			errs = append(errs, fmt.Errorf("HPA %s: minReplicas must be at least 1", h.Name))
		}
		if err := checkScaleDown("HPA "+h.Name, h.Spec.Behavior); err != nil {
			errs = append(errs, err)
		}
	}
	return errs
}
