#!/bin/sh
set -eu
ENDPOINT=${AIMI_ENDPOINT:-http://127.0.0.1:8000/models}

curl -sS "$ENDPOINT/info?api-version=2024-05-01-preview" -H "api-key: $AIMI_API_KEY"
echo
curl -sS "$ENDPOINT/chat/completions?api-version=2024-05-01-preview" \
  -H "api-key: $AIMI_API_KEY" -H "Content-Type: application/json" \
  -d '{"messages": [{"role": "user", "content": "What is the capital of France?"}], "max_tokens": 32}'
echo
curl -sSN "$ENDPOINT/chat/completions?api-version=2024-05-01-preview" \
  -H "api-key: $AIMI_API_KEY" -H "Content-Type: application/json" \
  -d '{"messages": [{"role": "user", "content": "Tell me a joke."}], "max_tokens": 32, "stream": true}'
