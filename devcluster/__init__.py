"""The local test bed: a real Kubernetes control plane, a process node and embedded Postgres."""
