"""The two public surfaces over one pipeline: the Azure AI Model Inference API and OpenAI v1.

A surface parses bodies into its wire schema and encodes canonical events into its JSON and SSE
shapes; everything between is the shared pipeline.
"""
