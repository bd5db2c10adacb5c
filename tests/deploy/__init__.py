"""The deploy files held against the code, by target: Dockerfile, compose, Kubernetes, Strimzi."""
