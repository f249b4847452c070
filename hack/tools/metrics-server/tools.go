//go:build tools

// Package tools pins metrics-server, which the real node's HorizontalPodAutoscalers read
// pod CPU from, to the version in versions.env.
package tools

import _ "sigs.k8s.io/metrics-server/cmd/metrics-server"
