"""The API: pydantic models of each resource's spec and status, the single source of truth from
which the CRDs are generated."""
