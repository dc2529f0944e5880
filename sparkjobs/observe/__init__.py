"""Watching the cluster: Prometheus metrics, failure alerts, Flower."""
