// Runtime deployments (admin): create, change and delete them through /admin/deployments; the
// deployments of the file are shown and left alone.

import { call, explain, json } from "../api";
import { clear, field, h } from "../dom";

interface Served {
  name: string;
  source: "file" | "runtime";
  state: string;
  engine: string | null;
  expires_at: string | null;
  config?: Record<string, unknown> | null;
}

const EXAMPLE = { model: "smollm2-135m-instruct", slots: 2, context_size: 2048 };

export function manage(changed: () => void): HTMLElement {
  const status = h("p", { class: "status", role: "status" });
  const list = h("ul", { class: "managed", "aria-label": "Deployments by source" });
  const name = h("input", { name: "deployment-name", required: true, autocomplete: "off", pattern: "[A-Za-z0-9][A-Za-z0-9._\\-]{0,63}" });
  const config = h("textarea", { name: "deployment-config", rows: 6, spellcheck: "false", class: "mono" });
  config.value = JSON.stringify(EXAMPLE, null, 2);
  const save = h("button", { type: "submit", class: "primary" }, "Create or change");

  const fail = (error: unknown) => {
    clear(status, explain(error));
    status.classList.add("error");
  };
  const say = (text: string) => {
    clear(status, text);
    status.classList.remove("error");
  };

  const refresh = async () => {
    try {
      const served = await json<{ data: Served[] }>("/admin/deployments");
      clear(
        list,
        ...served.data.map((d) => {
          const item = h("li", { "data-managed": d.name }, h("strong", {}, d.name), ` ${d.source}, ${d.state}`);
          if (d.source === "runtime") {
            const edit = h("button", { type: "button" }, "Edit");
            const remove = h("button", { type: "button", class: "danger" }, "Delete");
            edit.addEventListener("click", () => {
              name.value = d.name;
              config.value = JSON.stringify(d.config ?? {}, null, 2);
              config.focus();
            });
            remove.addEventListener("click", async () => {
              if (!confirm(`Delete the deployment ${d.name}? Its requests in flight finish first.`)) return;
              try {
                await call(`/admin/deployments/${encodeURIComponent(d.name)}`, { method: "DELETE" });
                say(`Deleted ${d.name}.`);
                await refresh();
                changed();
              } catch (error) {
                fail(error);
              }
            });
            item.append(" ", edit, " ", remove);
          }
          return item;
        }),
      );
    } catch (error) {
      fail(error);
    }
  };

  const form = h(
    "form",
    { class: "create", "aria-label": "Create or change a runtime deployment" },
    h("h2", {}, "Runtime deployments"),
    list,
    field("Name", name),
    field("Fields (JSON, as a [[deployments]] table of the deployments file)", config),
    save,
    status,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    let fields: unknown;
    try {
      fields = JSON.parse(config.value);
    } catch (error) {
      fail(new Error(`the fields are not JSON: ${(error as Error).message}`));
      return;
    }
    save.disabled = true;
    try {
      const response = await call(`/admin/deployments/${encodeURIComponent(name.value.trim())}`, {
        method: "PUT",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(fields),
      });
      say(`${response.status === 201 ? "Created" : "Changed"} ${name.value.trim()}.`);
      await refresh();
      changed();
    } catch (error) {
      fail(error);
    } finally {
      save.disabled = false;
    }
  });
  void refresh();
  return form;
}
