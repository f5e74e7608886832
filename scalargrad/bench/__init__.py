"""The command line and the benchmark harness: ``scalargrad bench``, peers, workloads."""
