"""Tests that start the bridge, the embedded upstream or child processes, over loopback sockets."""
