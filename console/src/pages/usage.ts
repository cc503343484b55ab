// Usage: the ledger's totals by day, key and deployment (GET /admin/usage), as charts and a
// table, with the CSV the same route gives; and live rates from /metrics.

import { call, explain, json } from "../api";
import { bars, line } from "../chart";
import { clear, field, h } from "../dom";
import { type Point, type Samples, rates, scrape } from "../prom";

interface Row {
  day?: string;
  key?: string;
  deployment?: string;
  requests: number;
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
  cost: number | null;
}

const SERIES = ["prompt tokens", "completion tokens"];

function days(back: number): string {
  const since = new Date(Date.now() - back * 86400_000);
  return since.toISOString().slice(0, 10);
}

export function usage(root: HTMLElement): () => void {
  const range = h(
    "select",
    { name: "range" },
    h("option", { value: "7" }, "last 7 days"),
    h("option", { value: "30", selected: true }, "last 30 days"),
    h("option", { value: "365" }, "last year"),
  );
  const exportButton = h("button", { type: "button" }, "Export CSV");
  const status = h("p", { class: "status", role: "status" });
  const charts = h("div", { class: "charts" });
  const tableBody = h("tbody");
  const table = h(
    "table",
    { class: "table", "aria-label": "Usage by day, key and deployment" },
    h("thead", {}, h("tr", {}, ...["Day", "Key", "Deployment", "Requests", "Prompt", "Completion", "Cost"].map((c) => h("th", { scope: "col" }, c)))),
    tableBody,
  );
  const live = h("div", { class: "charts live" });
  clear(
    root,
    h("h1", {}, "Usage"),
    h("div", { class: "row toolbar" }, field("Period", range), exportButton),
    status,
    charts,
    h("h2", {}, "By day, key and deployment"),
    h("div", { class: "scroll" }, table),
    h("h2", {}, "Live (last 5 minutes)"),
    live,
  );

  const since = () => days(Number(range.value));
  const load = async () => {
    try {
      const query = (by: string) => json<{ data: Row[] }>(`/admin/usage?by=${by}&since=${since()}`);
      const [byDay, byKey, byDeployment, all] = await Promise.all([query("day"), query("key"), query("deployment"), query("day,key,deployment")]);
      const stack = (rows: Row[], name: keyof Row) =>
        rows.map((r) => {
          const label = String(r[name] ?? "–");
          return { label, short: name === "day" ? label.slice(5) : label, values: [r.prompt_tokens, r.completion_tokens] };
        });
      clear(
        charts,
        bars("Tokens by day", SERIES, stack(byDay.data, "day")),
        bars("Tokens by key", SERIES, stack(byKey.data, "key")),
        bars("Tokens by deployment", SERIES, stack(byDeployment.data, "deployment")),
      );
      clear(
        tableBody,
        ...all.data.map((r) =>
          h(
            "tr",
            {},
            h("td", {}, r.day ?? "–"),
            h("td", {}, r.key ?? "–"),
            h("td", {}, r.deployment ?? "–"),
            h("td", { class: "num" }, r.requests),
            h("td", { class: "num" }, r.prompt_tokens),
            h("td", { class: "num" }, r.completion_tokens),
            h("td", { class: "num" }, r.cost === null ? "–" : r.cost.toFixed(4)),
          ),
        ),
      );
      const total = all.data.reduce((sum, r) => sum + r.requests, 0);
      clear(status, total ? `${total} requests since ${since()}.` : `No usage recorded since ${since()}.`);
      status.classList.remove("error");
    } catch (error) {
      clear(status, explain(error));
      status.classList.add("error");
    }
  };
  range.addEventListener("change", load);
  exportButton.addEventListener("click", async () => {
    try {
      const response = await call(`/admin/usage?by=day,key,deployment&since=${since()}&format=csv`);
      const url = URL.createObjectURL(await response.blob());
      const link = h("a", { href: url, download: `aimi-usage-since-${since()}.csv` });
      document.body.appendChild(link);
      link.click();
      link.remove();
      URL.revokeObjectURL(url);
    } catch (error) {
      clear(status, explain(error));
      status.classList.add("error");
    }
  });
  void load();

  // Live: scrape /metrics every 5 s and keep 5 minutes of rates.
  const points: Point[] = [];
  let last: { samples: Samples; at: number } | null = null;
  const draw = () =>
    clear(
      live,
      line("Requests/s", points.map((p) => p.requestsPerSecond), "req/s"),
      line("Time to first token", points.map((p) => (p.ttftSeconds === null ? null : p.ttftSeconds * 1000)), "ms"),
      line("Tokens/s", points.map((p) => p.tokensPerSecond), "tok/s"),
    );
  const tick = async () => {
    try {
      const text = await (await call("/metrics")).text();
      const now = performance.now() / 1000;
      const samples = scrape(text);
      if (last) points.push(rates(last.samples, samples, now - last.at, now));
      while (points.length > 60) points.shift();
      last = { samples, at: now };
      draw();
    } catch (error) {
      clear(live, h("p", { class: "status error" }, explain(error)));
    }
  };
  draw();
  void tick();
  const timer = window.setInterval(tick, 5000);
  return () => window.clearInterval(timer);
}
