// Server-sent events from a fetch body: yields each event's data, as aimi's streams send them.

const BOUNDARY = /\r\n\r\n|\n\n|\r\r/;

export async function* events(body: ReadableStream<Uint8Array>): AsyncGenerator<string> {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      for (let match = BOUNDARY.exec(buffer); match; match = BOUNDARY.exec(buffer)) {
        const data = dataOf(buffer.slice(0, match.index));
        buffer = buffer.slice(match.index + match[0].length);
        if (data !== null) yield data;
      }
    }
    const data = dataOf(buffer);
    if (data !== null) yield data;
  } finally {
    reader.releaseLock();
  }
}

/** The data of one event block; null when it has none (a comment or a keep-alive). */
export function dataOf(block: string): string | null {
  const lines = block.split(/\r\n|\r|\n/).filter((line) => line.startsWith("data:"));
  if (lines.length === 0) return null;
  return lines.map((line) => line.slice(5).replace(/^ /, "")).join("\n");
}
