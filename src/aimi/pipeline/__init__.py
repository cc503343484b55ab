"""The admission pipeline: the same ordered steps for every surface and route.

1. request id and access log (server middleware)
2. authenticate (server middleware)
3. resolve the deployment
4. canonicalise the wire request; apply the extra-parameters policy
5. capabilities: what the deployment cannot do is a 422
6-7. content safety and quotas (later)
8. bounded concurrency per deployment: 429 + Retry-After past the queue
"""
