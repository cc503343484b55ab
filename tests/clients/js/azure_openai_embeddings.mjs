// Embeddings with the openai npm package's AzureOpenAI against an aimi server (one JSON line on stdout).
//   AIMI_ENDPOINT=http://127.0.0.1:8000 AIMI_API_KEY=... AIMI_DEPLOYMENT=all-minilm-l6-v2 node azure_openai_embeddings.mjs
import { AzureOpenAI, AuthenticationError } from "openai";

const options = {
  endpoint: process.env.AIMI_ENDPOINT,
  apiVersion: "2024-10-21",
  deployment: process.env.AIMI_DEPLOYMENT,
  maxRetries: 0,
};
const input = ["hello world", "The quick brown fox."];
const client = new AzureOpenAI({ ...options, apiKey: process.env.AIMI_API_KEY });
const result = await client.embeddings.create({ model: "text-embedding-3-small", input });
let wrongKey = null;
try {
  await new AzureOpenAI({ ...options, apiKey: "wrong" }).embeddings.create({ model: "", input });
} catch (error) {
  wrongKey = { authentication_error: error instanceof AuthenticationError, status: error.status };
}
console.log(JSON.stringify({
  model: result.model,
  data: result.data.map(({ index, embedding }) => ({ index, dims: embedding.length })),
  wrong_key: wrongKey,
}));
