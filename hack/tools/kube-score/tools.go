//go:build tools

// Package tools records kube-score, so `go mod tidy` keeps its dependencies in go.sum.
package tools

import _ "github.com/zegl/kube-score/cmd/kube-score"
