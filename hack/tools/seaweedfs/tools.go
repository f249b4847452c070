//go:build tools

// Package tools pins SeaweedFS, whose `weed` binary is the S3-compatible object store of the local
// cluster and of the object-storage tests, to the version in versions.env.
package tools

import _ "github.com/seaweedfs/seaweedfs/weed"
