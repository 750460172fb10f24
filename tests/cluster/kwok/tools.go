//go:build tools

// Package tools pins kwok, which acts as the kubelet of the scheduler's virtual Fargate nodes in
// the cluster tests. Its own module keeps kwok's Kubernetes client versions apart from the
// control plane's pins in ../tools.
package tools

import _ "sigs.k8s.io/kwok/cmd/kwok"
