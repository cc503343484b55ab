// The few Prometheus text-format samples the live metrics need, summed over their labels.

export type Samples = Map<string, number>;

/** Sums of every sample by metric name (labels dropped), e.g. "aimi_requests_total". */
export function parse(text: string, filter: (name: string, labels: string) => boolean = () => true): Samples {
  const sums: Samples = new Map();
  for (const line of text.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)/.exec(line);
    if (!match) continue;
    const [, name, labels = "", raw] = match;
    const value = Number(raw);
    if (!Number.isFinite(value) || !filter(name, labels)) continue;
    sums.set(name, (sums.get(name) ?? 0) + value);
  }
  return sums;
}

export interface Point {
  at: number; // seconds
  requestsPerSecond: number;
  tokensPerSecond: number;
  ttftSeconds: number | null;
}

/** The rates between two scrapes ``seconds`` apart. */
export function rates(before: Samples, after: Samples, seconds: number, at: number): Point {
  const delta = (name: string) => Math.max(0, (after.get(name) ?? 0) - (before.get(name) ?? 0));
  const count = delta("aimi_time_to_first_token_seconds_count");
  return {
    at,
    requestsPerSecond: delta("aimi_requests_total") / seconds,
    tokensPerSecond: delta("completion_tokens") / seconds,
    ttftSeconds: count > 0 ? delta("aimi_time_to_first_token_seconds_sum") / count : null,
  };
}

/** The samples the console tracks from one scrape. */
export function scrape(text: string): Samples {
  const all = parse(text, (name) => name !== "aimi_tokens_total");
  const completion = parse(text, (name, labels) => name === "aimi_tokens_total" && labels.includes('kind="completion"'));
  all.set("completion_tokens", completion.get("aimi_tokens_total") ?? 0);
  return all;
}
