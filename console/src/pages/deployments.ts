// Deployments: what each serves and how busy it is, from GET /admin/status, refreshed while shown.

import { explain, json } from "../api";
import { clear, h } from "../dom";
import { manage } from "./manage";

export interface DeploymentStatus {
  name: string;
  model: string;
  engine: string;
  state: string;
  reason: string | null;
  slots: number;
  busy: number;
  queued: number;
  max_queue: number;
  context_length: number | null;
  quota: Record<string, number | null> | null;
}

const QUOTA_NAMES: Record<string, string> = {
  requests_per_minute: "req/min",
  tokens_per_minute: "tok/min",
  tokens_per_day: "tok/day",
  max_concurrent: "at once",
};

function quota(limits: DeploymentStatus["quota"]): string {
  const set = Object.entries(limits ?? {}).filter(([, v]) => v !== null && v !== undefined);
  return set.length ? set.map(([k, v]) => `${v} ${QUOTA_NAMES[k] ?? k}`).join(", ") : "unlimited";
}

export function deployments(root: HTMLElement): () => void {
  const body = h("tbody");
  const status = h("p", { class: "status", role: "status" });
  const table = h(
    "table",
    { class: "table", "aria-label": "Deployments" },
    h("thead", {}, h("tr", {}, ...["Name", "Model", "Engine", "State", "Slots busy", "Queue", "Context", "Quota"].map((c) => h("th", { scope: "col" }, c)))),
    body,
  );
  const holder = h("div", { class: "scroll" }, table);
  let timer = 0;
  const refresh = async () => {
    try {
      const answer = await json<{ data: DeploymentStatus[] }>("/admin/status");
      clear(
        body,
        ...answer.data.map((d) =>
          h(
            "tr",
            { "data-deployment": d.name },
            h("th", { scope: "row" }, d.name),
            h("td", {}, d.model),
            h("td", {}, d.engine),
            h("td", {}, h("span", { class: `state state-${d.state}` }, d.state), d.reason ? h("small", { class: "reason" }, d.reason) : null),
            h("td", {}, `${d.busy} / ${d.slots}`),
            h("td", {}, `${d.queued} / ${d.max_queue}`),
            h("td", {}, d.context_length === null ? "–" : String(d.context_length)),
            h("td", {}, quota(d.quota)),
          ),
        ),
      );
      clear(status, `${answer.data.length} deployment${answer.data.length === 1 ? "" : "s"}; updated ${new Date().toLocaleTimeString()}.`);
      status.classList.remove("error");
    } catch (error) {
      clear(status, explain(error));
      status.classList.add("error");
    }
  };
  clear(root, h("h1", {}, "Deployments"), status, holder, manage(() => void refresh()));
  void refresh();
  timer = window.setInterval(refresh, 3000);
  return () => window.clearInterval(timer);
}
