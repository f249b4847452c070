//go:build tools

// Package tools pins Kueue, the job queueing controller the local cluster runs for TrainingJobs
// with a queueName, to the version in versions.env.
package tools

import _ "sigs.k8s.io/kueue/cmd/kueue"
