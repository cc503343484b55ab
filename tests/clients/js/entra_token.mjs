// Call aimi with a Microsoft Entra ID style token, as DefaultAzureCredential would hand it over:
// any TokenCredential works. Here the token comes from AIMI_TOKEN (the tests' local issuer signs it).
//   AIMI_ENDPOINT=https://127.0.0.1:8000/models AIMI_TOKEN=eyJ... NODE_EXTRA_CA_CERTS=cert.pem node entra_token.mjs
import ModelClient, { isUnexpected } from "@azure-rest/ai-inference";

const scopes = [];
const credential = {
  // The SDK asks for https://ml.azure.com/.default and sends "Authorization: Bearer <token>" (https only).
  async getToken(requested) {
    scopes.push(...[requested].flat());
    return { token: process.env.AIMI_TOKEN, expiresOnTimestamp: Date.now() + 3600 * 1000 };
  },
};
const client = ModelClient(process.env.AIMI_ENDPOINT, credential);

const info = await client.path("/info").get();
const chat = await client.path("/chat/completions").post({
  body: { messages: [{ role: "user", content: "What is the capital of France?" }], max_tokens: 8, temperature: 0 },
});
console.log(JSON.stringify({
  scopes: [...new Set(scopes)],
  info: { unexpected: isUnexpected(info), status: info.status, body: info.body },
  chat: { unexpected: isUnexpected(chat), status: chat.status, body: chat.body },
}));
