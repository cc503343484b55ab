// Talk to an aimi server with the Azure AI Inference JS SDK (@azure-rest/ai-inference).
//   AIMI_ENDPOINT=http://127.0.0.1:8000/models AIMI_API_KEY=... node quickstart.mjs
import ModelClient, { isUnexpected } from "@azure-rest/ai-inference";
import { AzureKeyCredential } from "@azure/core-auth";
import { createSseStream } from "@azure/core-sse";

const endpoint = process.env.AIMI_ENDPOINT ?? "http://127.0.0.1:8000/models";
const client = ModelClient(endpoint, new AzureKeyCredential(process.env.AIMI_API_KEY ?? ""), {
  allowInsecureConnection: true, // aimi serves plain http on localhost
});

function fail(what, status, error = "") {
  console.error(`${what} failed: HTTP ${status} ${JSON.stringify(error)}`);
  process.exit(1);
}

// Which model is behind the endpoint?
const info = await client.path("/info").get();
if (isUnexpected(info)) fail("GET /info", info.status, info.body.error);

const request = {
  messages: [
    { role: "system", content: "You are a helpful assistant." },
    { role: "user", content: "What is the capital of France?" },
  ],
  max_tokens: 16,
  temperature: 0,
};

// One complete answer.
const chat = await client.path("/chat/completions").post({ body: request });
if (isUnexpected(chat)) fail("POST /chat/completions", chat.status, chat.body.error);
const [choice] = chat.body.choices;

// The same request, streamed as server-sent events.
const streamed = await client.path("/chat/completions").post({ body: { ...request, stream: true } }).asNodeStream();
if (isUnexpected(streamed)) fail("POST /chat/completions (stream)", streamed.status);
const stream = { content: "", finish_reason: null, usage: null, first_role: null, events: 0 };
for await (const event of createSseStream(streamed.body)) {
  if (event.data === "[DONE]") break;
  const chunk = JSON.parse(event.data);
  stream.events += 1;
  stream.usage = chunk.usage ?? stream.usage;
  for (const { delta, finish_reason } of chunk.choices) {
    if (stream.events === 1) stream.first_role = delta?.role ?? null;
    stream.content += delta?.content ?? "";
    stream.finish_reason = finish_reason ?? stream.finish_reason;
  }
}

console.log(JSON.stringify({
  info: info.body,
  chat: { content: choice.message.content, finish_reason: choice.finish_reason, usage: chat.body.usage },
  stream,
}));
