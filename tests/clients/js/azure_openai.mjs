// The openai npm package's AzureOpenAI against an aimi server (one JSON line on stdout).
//   AIMI_ENDPOINT=http://127.0.0.1:8000 AIMI_API_KEY=... AIMI_DEPLOYMENT=smollm2-135m-instruct node azure_openai.mjs
import { AzureOpenAI, AuthenticationError } from "openai";

const options = {
  endpoint: process.env.AIMI_ENDPOINT,
  apiVersion: "2024-10-21",
  deployment: process.env.AIMI_DEPLOYMENT,
  maxRetries: 0,
};
const client = new AzureOpenAI({ ...options, apiKey: process.env.AIMI_API_KEY });
const messages = [{ role: "user", content: "Name three colors." }];

const chat = await client.chat.completions.create({ model: "", messages, max_tokens: 16, temperature: 0 });
let streamed = "";
for await (const chunk of await client.chat.completions.create({
  model: "", messages, max_tokens: 16, temperature: 0, stream: true,
})) {
  streamed += chunk.choices[0]?.delta?.content ?? "";
}
const tool = await client.chat.completions.create({
  model: "",
  messages: [{ role: "user", content: "What is the weather in Paris?" }],
  max_tokens: 60,
  temperature: 0,
  tools: [{ type: "function", function: { name: "get_weather", parameters: {
    type: "object", properties: { city: { type: "string" } }, required: ["city"], additionalProperties: false,
  } } }],
  tool_choice: { type: "function", function: { name: "get_weather" } },
});
const json = await client.chat.completions.create({
  model: "",
  messages: [{ role: "user", content: "Pick a color." }],
  max_tokens: 40,
  temperature: 0,
  response_format: { type: "json_schema", json_schema: { name: "color", strict: true, schema: {
    type: "object", properties: { color: { type: "string", enum: ["red", "green", "blue"] } },
    required: ["color"], additionalProperties: false,
  } } },
});
let wrongKey = null;
try {
  await new AzureOpenAI({ ...options, apiKey: "wrong" }).chat.completions.create({ model: "", messages, max_tokens: 4 });
} catch (error) {
  wrongKey = { authentication_error: error instanceof AuthenticationError, status: error.status };
}
console.log(JSON.stringify({
  content: chat.choices[0].message.content,
  streamed,
  tool_calls: tool.choices[0].message.tool_calls,
  json: json.choices[0].message.content,
  wrong_key: wrongKey,
}));
