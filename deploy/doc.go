// Package deploy holds the Kubernetes manifests of produktly-segment (a
// kustomize base, the dev and production overlays, an HPA component, the
// Prometheus rules and the Grafana dashboard) and no code.
//
// Its tests render every overlay with kustomize's Go API, decode each object
// strictly, and check the manifests against the binary they deploy: the
// settings the binary reads (`produktly-segment run --help`), the paths its
// admin server serves, its shutdown timing and its metric names. They also
// build the binary with the Dockerfile's own flags and prove it static. See
// docs/deploying.md.
package deploy
