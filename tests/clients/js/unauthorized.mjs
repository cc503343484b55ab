// A wrong key: what the JS SDK hands back for /info and /chat/completions (one JSON line on stdout).
import ModelClient, { isUnexpected } from "@azure-rest/ai-inference";
import { AzureKeyCredential } from "@azure/core-auth";

const client = ModelClient(process.env.AIMI_ENDPOINT, new AzureKeyCredential(process.env.AIMI_API_KEY), {
  allowInsecureConnection: true,
});
const info = await client.path("/info").get();
const chat = await client.path("/chat/completions").post({
  body: { messages: [{ role: "user", content: "Hello" }], max_tokens: 4 },
});
console.log(JSON.stringify({
  info: { unexpected: isUnexpected(info), status: info.status, body: info.body },
  chat: { unexpected: isUnexpected(chat), status: chat.status, body: chat.body },
}));
