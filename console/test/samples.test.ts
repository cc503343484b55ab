import { describe, expect, it } from "vitest";
import { body, curl, openaiPython } from "../src/samples";

const request = {
  deployment: "chat",
  messages: [{ role: "user" as const, content: "It's \"quoted\"" }],
  temperature: 0.5,
  top_p: 1,
  max_tokens: 16,
  json: true,
  tools: false,
};

describe("samples", () => {
  it("sends JSON output as response_format and streams with usage", () => {
    expect(body(request, true)).toMatchObject({ response_format: { type: "json_object" }, stream: true, stream_options: { include_usage: true } });
    expect(body({ ...request, json: false }, false)).not.toHaveProperty("response_format");
  });
  it("quotes the body for a POSIX shell", () => {
    expect(curl("http://h", request)).toContain(`"content": "It'\\''s \\"quoted\\""`);
  });
  it("reads the key from the environment, never inlines it", () => {
    expect(openaiPython("http://h", request)).toContain('api_key=os.environ["AIMI_API_KEY"]');
  });
});
