//go:build tools

// Package tools records the Kubeflow training operator, the peer that make bench compares Stratus
// against, so `go mod tidy` keeps its dependencies in go.sum.
package tools

import _ "github.com/kubeflow/training-operator/cmd/training-operator.v1"
