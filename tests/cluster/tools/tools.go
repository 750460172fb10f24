//go:build tools

// Package tools pins the Kubernetes control-plane binaries the cluster tests build:
// kube-apiserver, kube-controller-manager and kubectl of one Kubernetes release, and etcd of
// the release that Kubernetes itself pins. `go build` of these import paths, inside this
// module, uses exactly the versions and checksums in go.mod/go.sum. Nothing here is product code.
package tools

import (
	_ "go.etcd.io/etcd/server/v3"
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-proxy"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
	_ "k8s.io/kubernetes/cmd/kubelet"
)
