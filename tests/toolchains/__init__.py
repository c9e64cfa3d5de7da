"""Tests that need external toolchains: wheel builds, Node, Ruby, Go, Java, buf, Kubernetes
schemas."""
