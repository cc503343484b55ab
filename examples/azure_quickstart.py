import os

from azure.ai.inference import ChatCompletionsClient
from azure.ai.inference.models import SystemMessage, UserMessage
from azure.core.credentials import AzureKeyCredential

client = ChatCompletionsClient(
    endpoint=os.environ.get("AIMI_ENDPOINT", "http://127.0.0.1:8000/models"),
    credential=AzureKeyCredential(os.environ["AIMI_API_KEY"]),
)
print(client.get_model_info())

response = client.complete(
    messages=[SystemMessage("You are a helpful assistant."), UserMessage("What is the capital of France?")],
    max_tokens=32,
)
print(response.choices[0].message.content)

for update in client.complete(messages=[UserMessage("Tell me a joke.")], max_tokens=32, stream=True):
    if update.choices:
        print(update.choices[0].delta.content or "", end="", flush=True)
print()
