package deploy_test

// Checks of the container's environment against the binary's settings.

import (
	"fmt"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

func checkEnvKnown(w *world, b *bundle) []error {
	_, c, err := b.app()
	if err != nil {
		return []error{err}
	}
	env, errs := b.containerEnv(c)
	for name, v := range env {
		if _, ok := w.bin.settings[name]; !ok && !goRuntimeEnv[name] {
			errs = append(errs, fmt.Errorf("%s (from %s) is not a setting of the binary (run --help lists %v)", name, v.source, w.bin.names()))
		}
	}
	return errs
}

func checkEnvRequired(w *world, b *bundle) []error {
	_, c, err := b.app()
	if err != nil {
		return []error{err}
	}
	env, _ := b.containerEnv(c)
	var errs []error
	var modes []string
	for _, s := range w.bin.settings {
		v, ok := env[s.env]
		set := ok && !(v.known && v.value == "")
		if s.required && !set {
			errs = append(errs, fmt.Errorf("%s is required by the binary and not set", s.env))
		}
		if s.mode && set {
			modes = append(modes, s.env)
		}
	}
	if len(modes) != 1 {
		errs = append(errs, fmt.Errorf("the binary wants %s set, the manifests set %v", modeRule, modes))
	}
	return errs
}

// checkEnvSecrets: secret settings (and the SASL user name) come from a
// Secret, never a literal or the ConfigMap, and docs/deploying.md's
// `kubectl create secret` command creates every key they reference.
func checkEnvSecrets(w *world, b *bundle) []error {
	_, c, err := b.app()
	if err != nil {
		return []error{err}
	}
	env, _ := b.containerEnv(c)
	var errs []error
	mustSecret := map[string]bool{"KAFKA_SASL_USERNAME": true}
	for _, s := range w.bin.settings {
		if s.secret {
			mustSecret[s.env] = true
		}
	}
	refs := map[string]corev1.SecretKeySelector{}
	for name := range mustSecret {
		v, ok := env[name]
		switch {
		case !ok:
		case v.secret == nil:
			errs = append(errs, fmt.Errorf("%s comes from %s; it must come from a Secret (secretKeyRef)", name, v.source))
		default:
			refs[name] = *v.secret
		}
	}
	for _, v := range env {
		if v.secret != nil {
			refs[v.name] = *v.secret
		}
	}
	for _, ta := range b.triggerAuthentications {
		for _, r := range ta.Spec.SecretTargetRef {
			refs["TriggerAuthentication "+ta.Name+" "+r.Parameter] = corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: r.Name}, Key: r.Key}
		}
	}
	names := make([]string, 0, len(refs))
	for n := range refs {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		r := refs[n]
		if !strings.Contains(w.repo.deploying, "create secret generic "+r.Name) {
			errs = append(errs, fmt.Errorf("%s uses Secret %q, which docs/deploying.md never creates (kubectl create secret generic %s)", n, r.Name, r.Name))
		}
		if !strings.Contains(w.repo.deploying, "--from-literal="+r.Key+"=") {
			errs = append(errs, fmt.Errorf("%s uses key %q of Secret %s, which docs/deploying.md's kubectl create secret command does not create (--from-literal=%s=...)", n, r.Key, r.Name, r.Key))
		}
	}
	return errs
}
