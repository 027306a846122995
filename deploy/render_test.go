package deploy_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"path/filepath"
	"sync"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

// repoRoot is the repository root; tests run in deploy/.
var repoRoot = func() string {
	p, err := filepath.Abs("..")
	if err != nil {
		panic(err)
	}
	return p
}()

// renderSpec is one kustomization the tests render, and what it must hold.
type renderSpec struct {
	name       string
	dir        string // relative to deploy/
	autoscaler string // the kind that must own spec.replicas, or "" for none
	production bool   // monitoring objects required, partition count documented
}

var renders = []renderSpec{
	{name: "base", dir: "base"},
	{name: "dev", dir: "overlays/dev"},
	{name: "production", dir: "overlays/production", autoscaler: "ScaledObject", production: true},
	{name: "hpa", dir: "testdata/hpa", autoscaler: "HorizontalPodAutoscaler"},
	{name: "accounts", dir: "testdata/accounts"},
}

func renderByName(name string) renderSpec {
	for _, r := range renders {
		if r.name == name {
			return r
		}
	}
	panic("no render " + name)
}

// Local types for the custom resources: only the fields these manifests
// may use. Decoding rejects any other field, so a typo (or a field from a
// newer CRD version nobody checked) fails the test instead of being dropped
// by the cluster's schema validation at apply time — or not at all.

type ScaledObject struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		ScaleTargetRef struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
			Name       string `json:"name"`
		} `json:"scaleTargetRef"`
		PollingInterval *int32 `json:"pollingInterval,omitempty"`
		CooldownPeriod  *int32 `json:"cooldownPeriod,omitempty"`
		MinReplicaCount *int32 `json:"minReplicaCount,omitempty"`
		MaxReplicaCount *int32 `json:"maxReplicaCount,omitempty"`
		Advanced        *struct {
			RestoreToOriginalReplicaCount bool `json:"restoreToOriginalReplicaCount,omitempty"`
			HorizontalPodAutoscalerConfig *struct {
				Name     string                                         `json:"name,omitempty"`
				Behavior *autoscalingv2.HorizontalPodAutoscalerBehavior `json:"behavior,omitempty"`
			} `json:"horizontalPodAutoscalerConfig,omitempty"`
		} `json:"advanced,omitempty"`
		Triggers []ScaledObjectTrigger `json:"triggers"`
	} `json:"spec"`
}

type ScaledObjectTrigger struct {
	Type              string            `json:"type"`
	Name              string            `json:"name,omitempty"`
	Metadata          map[string]string `json:"metadata"`
	AuthenticationRef *struct {
		Name string `json:"name"`
		Kind string `json:"kind,omitempty"`
	} `json:"authenticationRef,omitempty"`
}

type TriggerAuthentication struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		SecretTargetRef []struct {
			Parameter string `json:"parameter"`
			Name      string `json:"name"`
			Key       string `json:"key"`
		} `json:"secretTargetRef"`
	} `json:"spec"`
}

type PodMonitor struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		Selector            metav1.LabelSelector `json:"selector"`
		PodMetricsEndpoints []struct {
			Port          string `json:"port"`
			Path          string `json:"path,omitempty"`
			Scheme        string `json:"scheme,omitempty"`
			Interval      string `json:"interval,omitempty"`
			ScrapeTimeout string `json:"scrapeTimeout,omitempty"`
		} `json:"podMetricsEndpoints"`
	} `json:"spec"`
}

type PrometheusRule struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              RuleFile `json:"spec"`
}

// RuleFile is a Prometheus rule file, and the spec of a PrometheusRule.
type RuleFile struct {
	Groups []RuleGroup `json:"groups"`
}

type RuleGroup struct {
	Name     string `json:"name"`
	Interval string `json:"interval,omitempty"`
	Rules    []Rule `json:"rules"`
}

type Rule struct {
	Alert       string            `json:"alert,omitempty"`
	Record      string            `json:"record,omitempty"`
	Expr        string            `json:"expr"`
	For         string            `json:"for,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

// bundle is one rendered kustomization, every object decoded into its type.
type bundle struct {
	spec                   renderSpec
	deployments            []*appsv1.Deployment
	configMaps             []*corev1.ConfigMap
	secrets                []*corev1.Secret
	services               []*corev1.Service
	serviceAccounts        []*corev1.ServiceAccount
	pdbs                   []*policyv1.PodDisruptionBudget
	networkPolicies        []*networkingv1.NetworkPolicy
	hpas                   []*autoscalingv2.HorizontalPodAutoscaler
	scaledObjects          []*ScaledObject
	triggerAuthentications []*TriggerAuthentication
	podMonitors            []*PodMonitor
	prometheusRules        []*PrometheusRule
}

// strictJSON decodes exactly one JSON value into v, rejecting unknown fields.
func strictJSON(data []byte, v any) error {
	d := json.NewDecoder(bytes.NewReader(data))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		return err
	}
	if d.More() {
		return fmt.Errorf("trailing data after the JSON value")
	}
	return nil
}

// strictYAML decodes YAML strictly: YAML → JSON → strictJSON.
func strictYAML(data []byte, v any) error {
	j, err := yaml.YAMLToJSON(data)
	if err != nil {
		return err
	}
	return strictJSON(j, v)
}

// add decodes one object and appends it to the bundle's list for its kind.
func (b *bundle) add(data []byte) error {
	var tm metav1.TypeMeta
	if err := json.Unmarshal(data, &tm); err != nil {
		return err
	}
	dec := func(v any) error {
		if err := strictJSON(data, v); err != nil {
			return fmt.Errorf("%s/%s: %w", tm.APIVersion, tm.Kind, err)
		}
		return nil
	}
	switch tm.APIVersion + "/" + tm.Kind {
	case "apps/v1/Deployment":
		v := &appsv1.Deployment{}
		b.deployments = append(b.deployments, v)
		return dec(v)
	case "v1/ConfigMap":
		v := &corev1.ConfigMap{}
		b.configMaps = append(b.configMaps, v)
		return dec(v)
	case "v1/Secret":
		v := &corev1.Secret{}
		b.secrets = append(b.secrets, v)
		return dec(v)
	case "v1/Service":
		v := &corev1.Service{}
		b.services = append(b.services, v)
		return dec(v)
	case "v1/ServiceAccount":
		v := &corev1.ServiceAccount{}
		b.serviceAccounts = append(b.serviceAccounts, v)
		return dec(v)
	case "policy/v1/PodDisruptionBudget":
		v := &policyv1.PodDisruptionBudget{}
		b.pdbs = append(b.pdbs, v)
		return dec(v)
	case "networking.k8s.io/v1/NetworkPolicy":
		v := &networkingv1.NetworkPolicy{}
		b.networkPolicies = append(b.networkPolicies, v)
		return dec(v)
	case "autoscaling/v2/HorizontalPodAutoscaler":
		v := &autoscalingv2.HorizontalPodAutoscaler{}
		b.hpas = append(b.hpas, v)
		return dec(v)
	case "keda.sh/v1alpha1/ScaledObject":
		v := &ScaledObject{}
		b.scaledObjects = append(b.scaledObjects, v)
		return dec(v)
	case "keda.sh/v1alpha1/TriggerAuthentication":
		v := &TriggerAuthentication{}
		b.triggerAuthentications = append(b.triggerAuthentications, v)
		return dec(v)
	case "monitoring.coreos.com/v1/PodMonitor":
		v := &PodMonitor{}
		b.podMonitors = append(b.podMonitors, v)
		return dec(v)
	case "monitoring.coreos.com/v1/PrometheusRule":
		v := &PrometheusRule{}
		b.prometheusRules = append(b.prometheusRules, v)
		return dec(v)
	}
	return fmt.Errorf("unexpected kind %s %s: add a type for it to render_test.go and checks for it", tm.APIVersion, tm.Kind)
}

var (
	renderMu    sync.Mutex
	renderCache = map[string][][]byte{}
)

// renderJSON runs kustomize on spec.dir and returns each object as JSON.
// Results are cached; callers decode their own copies.
func renderJSON(spec renderSpec) ([][]byte, error) {
	renderMu.Lock()
	defer renderMu.Unlock()
	if docs, ok := renderCache[spec.dir]; ok {
		return docs, nil
	}
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	m, err := k.Run(filesys.MakeFsOnDisk(), filepath.Join(repoRoot, "deploy", spec.dir))
	if err != nil {
		return nil, fmt.Errorf("kustomize build deploy/%s: %w", spec.dir, err)
	}
	var docs [][]byte
	for _, r := range m.Resources() {
		j, err := r.MarshalJSON()
		if err != nil {
			return nil, fmt.Errorf("deploy/%s: %s: %w", spec.dir, r.CurId(), err)
		}
		docs = append(docs, j)
	}
	renderCache[spec.dir] = docs
	return docs, nil
}

// load renders spec and decodes a fresh bundle from it.
func load(spec renderSpec) (*bundle, error) {
	docs, err := renderJSON(spec)
	if err != nil {
		return nil, err
	}
	b := &bundle{spec: spec}
	for _, d := range docs {
		if err := b.add(d); err != nil {
			return nil, fmt.Errorf("deploy/%s: %w", spec.dir, err)
		}
	}
	return b, nil
}
