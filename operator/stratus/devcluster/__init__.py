"""The local control plane that `make dev` and the end-to-end tests run against."""
