import os

from openai import OpenAI

client = OpenAI(
    base_url=os.environ.get("AIMI_OPENAI_BASE_URL", "http://127.0.0.1:8000/v1"),
    api_key=os.environ["AIMI_API_KEY"],
)
model = client.models.list().data[0].id

response = client.chat.completions.create(
    model=model,
    messages=[{"role": "user", "content": "What is the capital of France?"}],
    max_tokens=32,
)
print(response.choices[0].message.content)

stream = client.chat.completions.create(
    model=model,
    messages=[{"role": "user", "content": "Tell me a joke."}],
    max_tokens=32,
    stream=True,
    stream_options={"include_usage": True},
)
for chunk in stream:
    if chunk.choices:
        print(chunk.choices[0].delta.content or "", end="", flush=True)
    elif chunk.usage:
        print(f"\n[{chunk.usage.total_tokens} tokens]")
