//go:build tools

// Package tools pins the Prometheus Operator command, so that go mod tidy keeps it.
package tools

import _ "github.com/prometheus-operator/prometheus-operator/cmd/operator"
