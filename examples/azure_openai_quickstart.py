import os

from openai import AzureOpenAI

client = AzureOpenAI(
    azure_endpoint=os.environ.get("AIMI_URL", "http://127.0.0.1:8000"),  # the server, no path
    azure_deployment="smollm2-135m-instruct",  # an aimi deployment name
    api_version="2024-10-21",  # any value is accepted
    api_key=os.environ["AIMI_API_KEY"],
)

response = client.chat.completions.create(
    model="smollm2-135m-instruct",  # Azure OpenAI ignores it: the path names the deployment
    messages=[{"role": "user", "content": "What is the capital of France?"}],
    max_completion_tokens=32,
)
print(response.choices[0].message.content)
