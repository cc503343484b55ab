// Embeddings from an aimi server with the Azure AI Inference JS SDK (@azure-rest/ai-inference).
//   AIMI_ENDPOINT=http://127.0.0.1:8000/models AIMI_API_KEY=... node embeddings.mjs
import ModelClient, { isUnexpected } from "@azure-rest/ai-inference";
import { AzureKeyCredential } from "@azure/core-auth";

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

const input = ["The quick brown fox jumps over the lazy dog.", "naïve café, 東京"];
const response = await client.path("/embeddings").post({ body: { input } });
if (isUnexpected(response)) fail("POST /embeddings", response.status, response.body.error);

console.log(JSON.stringify({
  info: info.body,
  input,
  model: response.body.model,
  data: response.body.data.map(({ index, embedding }) => ({ index, embedding })),
  usage: response.body.usage,
}));
