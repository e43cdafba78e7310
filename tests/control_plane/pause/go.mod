// The real node's sandbox image entry point (registry.k8s.io/pause), built locally because no
// registry is reachable here. Standard library only.
module script-operator.dev/control-plane/pause

go 1.25.0
