//go:build tools

// Package tools pins the kustomize command the Argo CD repo-server runs, so that go mod tidy keeps it.
package tools

import _ "sigs.k8s.io/kustomize/kustomize/v5"
