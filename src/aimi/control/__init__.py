"""The control plane: managed keys, deployments created at runtime and the audit log, kept in
the usage ledger's database so that every replica sharing it agrees (see docs/control-plane.md)."""
