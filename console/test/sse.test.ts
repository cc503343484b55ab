import { describe, expect, it } from "vitest";
import { dataOf, events } from "../src/sse";

function body(...parts: string[]): ReadableStream<Uint8Array> {
  const encoder = new TextEncoder();
  return new ReadableStream({
    start(controller) {
      for (const part of parts) controller.enqueue(encoder.encode(part));
      controller.close();
    },
  });
}

async function all(stream: ReadableStream<Uint8Array>): Promise<string[]> {
  const out: string[] = [];
  for await (const data of events(stream)) out.push(data);
  return out;
}

describe("events", () => {
  it("yields each event's data across chunk boundaries", async () => {
    expect(await all(body('data: {"a":', "1}\n\ndata: [DO", "NE]\n\n"))).toEqual(['{"a":1}', "[DONE]"]);
  });
  it("skips comments and keep-alives, and reads CRLF framing", async () => {
    expect(await all(body(": ping\r\n\r\ndata: x\r\n\r\n"))).toEqual(["x"]);
  });
  it("keeps multi-byte characters split between chunks whole", async () => {
    const bytes = new TextEncoder().encode("data: 東京\n\n");
    const stream = new ReadableStream<Uint8Array>({
      start(controller) {
        controller.enqueue(bytes.slice(0, 8));
        controller.enqueue(bytes.slice(8));
        controller.close();
      },
    });
    expect(await all(stream)).toEqual(["東京"]);
  });
  it("joins multi-line data with newlines", () => {
    expect(dataOf("data: one\ndata: two")).toBe("one\ntwo");
    expect(dataOf(": comment")).toBeNull();
  });
});
