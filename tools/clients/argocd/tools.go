//go:build tools

// Package tools pins Argo CD's single main package (it dispatches on the binary's name), so that
// go mod tidy keeps it.
package tools

import _ "github.com/argoproj/argo-cd/v3/cmd"
