// Command etcd is etcd's own entry point, built from its published server module: etcd's root
// module cannot be installed directly because its go.mod replaces its sibling modules locally.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
