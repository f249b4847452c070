module stratus.dev/hack/tools/pause

go 1.22
