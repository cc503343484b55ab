"""The wire: pydantic models of both surfaces, the error envelope and the SSE encoder.

Nothing here imports the rest of aimi or any engine library.
"""
