// The Playground: chat with a deployment over the OpenAI surface, streamed, with the same request
// shown as code for curl, azure-ai-inference, openai and JS.

import { ApiFailure, explain, failure, headers, json } from "../api";
import { clear, field, h } from "../dom";
import { events } from "../sse";
import { type ChatMessage, type PlaygroundRequest, SAMPLES, body } from "../samples";

interface Models {
  data: { id: string }[];
}

interface Chunk {
  choices?: { delta?: { content?: string | null; tool_calls?: { function?: { name?: string; arguments?: string } }[] }; finish_reason?: string | null }[];
  usage?: { prompt_tokens: number; completion_tokens: number; total_tokens: number } | null;
}

export function playground(root: HTMLElement): () => void {
  const history: ChatMessage[] = [];
  let running: AbortController | null = null;

  const deployment = h("select", { name: "deployment" });
  const system = h("textarea", { name: "system", rows: 2, placeholder: "You are a helpful assistant." });
  const temperature = h("input", { type: "number", name: "temperature", min: 0, max: 2, step: 0.1, value: 0.7 });
  const topP = h("input", { type: "number", name: "top_p", min: 0, max: 1, step: 0.05, value: 1 });
  const maxTokens = h("input", { type: "number", name: "max_tokens", min: 1, max: 4096, step: 1, value: 128 });
  const jsonOut = h("input", { type: "checkbox", name: "json" });
  const tools = h("input", { type: "checkbox", name: "tools" });
  const prompt = h("textarea", { name: "prompt", rows: 3, placeholder: "Ask something…", required: true });
  const send = h("button", { type: "submit", class: "primary" }, "Send");
  const stop = h("button", { type: "button", disabled: true }, "Stop");
  const reset = h("button", { type: "button" }, "New chat");
  const transcript = h("ol", { class: "transcript", "aria-live": "polite", "aria-label": "Conversation" });
  const status = h("p", { class: "status", role: "status" });
  const stats = h("dl", { class: "stats", "aria-label": "Last answer" });
  const sampleTabs = h("div", { role: "tablist", class: "tabs", "aria-label": "Code" });
  const code = h("pre", { class: "code", tabindex: 0 }, h("code", {}));
  let sample: (typeof SAMPLES)[number] = SAMPLES[0];

  const request = (): PlaygroundRequest => {
    const messages: ChatMessage[] = [];
    if (system.value.trim()) messages.push({ role: "system", content: system.value });
    messages.push(...history);
    if (prompt.value.trim()) messages.push({ role: "user", content: prompt.value });
    return {
      deployment: deployment.value,
      messages,
      temperature: Number(temperature.value),
      top_p: Number(topP.value),
      max_tokens: Number(maxTokens.value),
      json: jsonOut.checked,
      tools: tools.checked,
    };
  };

  const showCode = () => {
    clear(code.firstElementChild as HTMLElement, sample.render(location.origin, request()));
    for (const tab of sampleTabs.children) tab.setAttribute("aria-selected", String(tab.getAttribute("data-sample") === sample.id));
  };
  for (const s of SAMPLES) {
    sampleTabs.appendChild(
      h("button", { type: "button", role: "tab", "data-sample": s.id, onclick: () => ((sample = s), showCode()) }, s.label),
    );
  }

  const setStats = (items: [string, string][]) =>
    clear(stats, ...items.flatMap(([term, value]) => [h("dt", {}, term), h("dd", { "data-stat": term }, value)]));

  const bubble = (role: string, text: string) => {
    const content = h("div", { class: "content" }, text);
    transcript.appendChild(h("li", { class: `turn ${role}` }, h("span", { class: "role" }, role), content));
    return content;
  };

  async function chat(event: Event) {
    event.preventDefault();
    if (running || !prompt.value.trim() || !deployment.value) return;
    const asked = request();
    history.push({ role: "user", content: prompt.value });
    bubble("user", prompt.value);
    prompt.value = "";
    const answer = bubble("assistant", "");
    answer.parentElement?.setAttribute("aria-busy", "true");
    running = new AbortController();
    send.disabled = true;
    stop.disabled = false;
    clear(status, "Waiting for the first token…");
    setStats([]);
    const began = performance.now();
    let firstToken: number | null = null;
    let usage: Chunk["usage"] = null;
    let finish = "";
    let text = "";
    let toolCalls = "";
    let remaining: string | null = null;
    try {
      const response = await fetch("/v1/chat/completions", {
        method: "POST",
        headers: headers(undefined, { "content-type": "application/json" }),
        body: JSON.stringify(body(asked, true)),
        signal: running.signal,
        credentials: "omit",
        cache: "no-store",
      });
      if (!response.ok) throw await failure(response);
      remaining = response.headers.get("x-ratelimit-remaining-tokens");
      if (!response.body) throw new Error("the answer has no body");
      for await (const data of events(response.body)) {
        if (data === "[DONE]") break;
        const chunk = JSON.parse(data) as Chunk & { error?: { message: string } };
        if (chunk.error) throw new ApiFailure(500, "stream_error", chunk.error.message);
        usage = chunk.usage ?? usage;
        for (const choice of chunk.choices ?? []) {
          const delta = choice.delta ?? {};
          const piece = delta.content ?? "";
          for (const call of delta.tool_calls ?? []) toolCalls += `${call.function?.name ?? ""}${call.function?.arguments ?? ""}`;
          if ((piece || delta.tool_calls) && firstToken === null) {
            firstToken = performance.now() - began;
            clear(status, "Streaming…");
          }
          text += piece;
          answer.append(piece);
          finish = choice.finish_reason ?? finish;
        }
      }
      if (toolCalls) answer.appendChild(h("code", { class: "tool-call" }, `tool call: ${toolCalls}`));
      history.push({ role: "assistant", content: text });
      clear(status, `Done (${finish || "stop"}).`);
    } catch (error) {
      const stopped = error instanceof DOMException && error.name === "AbortError";
      if (text) history.push({ role: "assistant", content: text });
      else history.pop();
      clear(status, stopped ? "Stopped: the request was cancelled." : explain(error));
      status.classList.toggle("error", !stopped);
      answer.parentElement?.classList.add(stopped ? "stopped" : "failed");
    } finally {
      answer.parentElement?.removeAttribute("aria-busy");
      const seconds = (performance.now() - began) / 1000;
      setStats([
        ["Time to first token", firstToken === null ? "–" : `${Math.round(firstToken)} ms`],
        ["Prompt tokens", usage ? String(usage.prompt_tokens) : "–"],
        ["Completion tokens", usage ? String(usage.completion_tokens) : "–"],
        ["Tokens/s", usage && seconds > 0 ? (usage.completion_tokens / seconds).toFixed(1) : "–"],
        ...(remaining !== null ? ([["Quota left (tokens)", remaining]] as [string, string][]) : []),
      ]);
      running = null;
      send.disabled = false;
      stop.disabled = true;
      showCode();
    }
  }

  stop.addEventListener("click", () => running?.abort());
  reset.addEventListener("click", () => {
    running?.abort();
    history.length = 0;
    clear(transcript);
    clear(status);
    setStats([]);
    showCode();
  });
  prompt.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) form.requestSubmit();
  });
  const form = h(
    "form",
    { class: "playground", onsubmit: chat, "aria-label": "Chat" },
    h(
      "fieldset",
      { class: "controls" },
      h("legend", {}, "Request"),
      field("Deployment", deployment),
      field("System message", system),
      h(
        "div",
        { class: "row" },
        field("Temperature", temperature),
        field("Top p", topP),
        field("Max tokens", maxTokens),
      ),
      h(
        "div",
        { class: "row checks" },
        h("label", {}, jsonOut, " JSON output"),
        h("label", {}, tools, " Tools (get_weather)"),
      ),
    ),
    h(
      "section",
      { class: "chat" },
      transcript,
      field("Message", prompt, "Ctrl+Enter sends"),
      h("div", { class: "buttons" }, send, stop, reset),
      status,
      stats,
    ),
  );
  form.addEventListener("input", showCode);
  clear(root, h("h1", {}, "Playground"), form, h("section", { class: "consume" }, h("h2", {}, "The same request as code"), sampleTabs, code));

  json<Models>("/v1/models")
    .then((models) => {
      clear(deployment, ...models.data.map((m) => h("option", { value: m.id }, m.id)));
      showCode();
    })
    .catch((error) => {
      clear(status, explain(error));
      status.classList.add("error");
    });
  showCode();
  return () => running?.abort();
}
