"""Converting Kubeflow, KServe, Argo Rollouts and Slurm workloads into Stratus resources."""
