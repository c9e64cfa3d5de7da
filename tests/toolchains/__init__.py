"""Tests that need external toolchains: wheel builds, Node, Ruby, buf, Kubernetes schemas."""
