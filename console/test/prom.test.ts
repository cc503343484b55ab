import { describe, expect, it } from "vitest";
import { rates, scrape } from "../src/prom";

const before = `# HELP aimi_requests_total Requests
aimi_requests_total{route="chat",deployment="a",status="200"} 10.0
aimi_requests_total{route="chat",deployment="b",status="200"} 5.0
aimi_tokens_total{deployment="a",kind="prompt"} 100.0
aimi_tokens_total{deployment="a",kind="completion"} 200.0
aimi_time_to_first_token_seconds_sum{deployment="a"} 1.0
aimi_time_to_first_token_seconds_count{deployment="a"} 10.0
`;
const after = before
  .replace("} 10.0", "} 20.0")
  .replace('kind="completion"} 200.0', 'kind="completion"} 700.0')
  .replace("_sum{deployment=\"a\"} 1.0", "_sum{deployment=\"a\"} 3.0")
  .replace("_count{deployment=\"a\"} 10.0", "_count{deployment=\"a\"} 20.0");

describe("rates", () => {
  it("turns two scrapes into requests/s, completion tokens/s and the mean TTFT between them", () => {
    const point = rates(scrape(before), scrape(after), 5, 42);
    expect(point).toEqual({ at: 42, requestsPerSecond: 2, tokensPerSecond: 100, ttftSeconds: 0.2 });
  });
  it("has no TTFT when no request got a first token", () => {
    expect(rates(scrape(before), scrape(before), 5, 0).ttftSeconds).toBeNull();
  });
});
