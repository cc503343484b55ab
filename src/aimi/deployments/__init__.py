"""Deployments: what is served under which name, from which model file, with which abilities."""
